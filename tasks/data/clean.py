"""clean: sort, de-duplicate, repair or drop impossible bars, fill short gaps, flag extreme jumps, days without
volume and holes in the market's calendar.

Pure: returns a new frame and a CleaningReport listing every change, counted per rule, and every flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from prefect import task

from schemas import CleaningReport
from settings import CleaningSettings, Market
from stores.base import PRICE_COLUMNS, PRICE_SCHEMA
from tasks.data.sessions import gaps
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

__all__ = ["Cleaned", "clean"]

PRICES = ("open", "high", "low", "close")
FIELDS = (*PRICES, "volume")


@dataclass(frozen=True)
class Cleaned:
    """The cleaned bars and what was done to them."""

    frame: pl.DataFrame
    report: CleaningReport


def _count(frame: pl.DataFrame, condition: pl.Expr) -> int:
    return int(frame.select(condition.sum()).item() or 0)


@task(
    name="clean",
    task_run_name="clean-{symbol}",
    cache_policy=ContentInputs() + ModuleSources(modules=("tasks.data.clean", "tasks.data.sessions")),
)
@resource_logged
def clean(prices: pl.DataFrame, symbol: str, cfg: CleaningSettings, market: Market) -> Cleaned:
    """Return repaired bars plus a report of every repair, per rule. The input is not modified.

    `market` decides the trading sessions against which holes in the history are measured.
    """
    missing = [c for c in PRICE_COLUMNS if c not in prices.columns]
    if missing:
        raise ValueError(f"{symbol}: price frame lacks column(s) {', '.join(missing)}")
    fixes: dict[str, int] = {}

    def note(rule: str, count: int) -> None:
        if count:
            fixes[rule] = fixes.get(rule, 0) + count

    frame = prices.select(PRICE_COLUMNS).cast(PRICE_SCHEMA)  # type: ignore[arg-type]
    rows_in = frame.height
    frame = frame.filter(pl.col("date").is_not_null())
    note("missing_date_dropped", rows_in - frame.height)

    unsorted = _count(frame, pl.col("date").diff() < pl.duration(days=0))
    note("unsorted_rows_reordered", unsorted)
    frame = frame.sort("date", maintain_order=True)
    before = frame.height
    frame = frame.unique(subset="date", keep="last", maintain_order=True)
    note("duplicate_dates_dropped", before - frame.height)

    # NaN, infinite and non-positive values are as good as missing: turn them into nulls, then fill short gaps.
    counts = frame.select(  # one pass for the four counts
        pl.sum_horizontal(pl.col(FIELDS).is_nan()).sum().alias("nan_values_nulled"),
        pl.sum_horizontal(pl.col(FIELDS).is_infinite()).sum().alias("infinite_values_nulled"),
        pl.sum_horizontal(pl.col(PRICES) <= 0).sum().alias("non_positive_prices_nulled"),
        (pl.col("volume") < 0).sum().alias("negative_volume_nulled"),
    ).row(0, named=True)
    for rule, count in counts.items():
        note(rule, int(count or 0))
    finite = {c: pl.col(c).is_finite() for c in FIELDS}  # null for null, false for NaN and +-inf
    frame = frame.with_columns(
        [pl.when(~finite[c] | (pl.col(c) <= 0)).then(None).otherwise(pl.col(c)).alias(c) for c in PRICES]
        + [pl.when(~finite["volume"] | (pl.col("volume") < 0)).then(None).otherwise(pl.col("volume")).alias("volume")]
    )
    nulls_before = _count(frame, pl.sum_horizontal(pl.col(FIELDS).is_null()))
    if cfg.max_fill_days:
        frame = frame.with_columns(pl.col(FIELDS).fill_null(strategy="forward", limit=cfg.max_fill_days))
    nulls_after = _count(frame, pl.sum_horizontal(pl.col(FIELDS).is_null()))
    note("gap_values_forward_filled", nulls_before - nulls_after)
    before = frame.height
    frame = frame.drop_nulls(FIELDS)
    note("unfillable_rows_dropped", before - frame.height)

    swapped = pl.col("high") < pl.col("low")
    note("high_low_swapped", _count(frame, swapped))
    frame = frame.with_columns(
        pl.when(swapped).then(pl.col("low")).otherwise(pl.col("high")).alias("high"),
        pl.when(swapped).then(pl.col("high")).otherwise(pl.col("low")).alias("low"),
    )
    body_hi, body_lo = pl.max_horizontal("open", "close"), pl.min_horizontal("open", "close")
    note("range_widened_to_open_close", _count(frame, (pl.col("high") < body_hi) | (pl.col("low") > body_lo)))
    frame = frame.with_columns(pl.max_horizontal("high", body_hi).alias("high"),
                               pl.min_horizontal("low", body_lo).alias("low"))

    jumps = frame.filter(pl.col("close").log().diff().abs() > cfg.jump_threshold)["date"].to_list()
    report = CleaningReport(symbol=symbol, rows_in=rows_in, rows_out=frame.height, fixes=fixes,
                            flagged_jumps=tuple(jumps),
                            zero_volume_days=tuple(frame.filter(pl.col("volume") == 0)["date"].to_list()),
                            gaps=gaps(frame["date"].to_numpy(), market, cfg.max_gap_sessions))
    return Cleaned(frame=frame, report=report)

