"""split: tag one symbol's rows train / embargo / val / test / latest by the run's calendar (tasks/data/calendar.py).

The boundaries are dates shared by every symbol of the run; rows whose label is not known yet (the last
`horizon` days) go to a separate `latest` part for inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, cast

import polars as pl
from prefect import task

from settings import FeatureSettings, SplitSettings
from stores.features import PART  # the store filters its one file on this column
from tasks.data.calendar import InsufficientHistoryError, RunCalendar, assign_parts
from tasks.data.features import LABEL
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

if TYPE_CHECKING:
    from tasks.data.select import Selected

__all__ = [
    "PART",
    "InsufficientHistoryError",
    "SplitBounds",
    "Splits",
    "check_history",
    "required_rows",
    "split",
    "split_bounds",
]


_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitBounds:
    """Row offsets into the labelled rows: parts are [start, end), embargo rows lie between them."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]


@dataclass(frozen=True)
class Splits:
    """One symbol's feature rows cut into parts; `latest` holds the unlabelled newest rows."""

    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    latest: pl.DataFrame
    all: pl.DataFrame
    """every row in date order with a `part` column (train/embargo/val/test/latest): the context that
    sequence models read before the first row they predict."""

    def parts(self) -> dict[str, pl.DataFrame]:
        return {"train": self.train, "val": self.val, "test": self.test, "latest": self.latest, "all": self.all}


def split_bounds(labelled: int, cfg: SplitSettings, embargo: int) -> SplitBounds | None:
    """Cut `labelled` rows into train/val/test by fraction, leaving `embargo` rows between parts.

    Returns None when any part would be shorter than cfg.min_rows.
    """
    available = labelled - 2 * embargo
    n_train, n_val = int(available * cfg.train), int(available * cfg.val)
    n_test = available - n_train - n_val
    if min(n_train, n_val, n_test) < cfg.min_rows:
        return None
    val_start = n_train + embargo
    test_start = val_start + n_val + embargo
    return SplitBounds(train=(0, n_train), val=(val_start, val_start + n_val), test=(test_start, labelled))


def required_rows(features: FeatureSettings, cfg: SplitSettings) -> int:
    """Fewest cleaned rows a symbol needs: feature warm-up + label horizon + embargoes + minimal splits."""
    labelled = 3 * cfg.min_rows
    while split_bounds(labelled, cfg, features.horizon) is None:
        labelled += 1
    return features.warmup + features.horizon + labelled


def check_history(rows: int, symbol: str, features: FeatureSettings, cfg: SplitSettings,
                  where: str = "after cleaning") -> None:
    """Raise InsufficientHistoryError, saying how many rows are needed, when `rows` is too few."""
    needed = required_rows(features, cfg)
    if rows < needed:
        raise InsufficientHistoryError(
            f"{symbol} has {rows} rows of history {where}; at least {needed} are needed "
            f"({features.warmup} warm-up rows for the longest indicator window, {features.horizon} label horizon, "
            f"2x{features.horizon} embargo and {needed - features.warmup - 3 * features.horizon} rows for "
            f"train/val/test at fractions {cfg.train}/{cfg.val}/{cfg.test} with >= {cfg.min_rows} rows each)"
        )


@task(
    name="split",
    task_run_name="split-{symbol}",
    cache_policy=ContentInputs() + ModuleSources(modules=("tasks.data.split", "tasks.data.calendar")),
)
@resource_logged
def split(selected: Selected, symbol: str, features: FeatureSettings, cfg: SplitSettings,
          calendar: RunCalendar) -> Splits:
    """Cut the selected feature rows (warm-up already dropped) into parts by the run's calendar.

    Raises:
        InsufficientHistoryError: a part of this symbol has fewer than cfg.min_rows rows (named, with its dates).
    """
    frame = selected.frame
    labelled = int(frame[LABEL].is_not_null().sum())
    if frame.head(labelled)[LABEL].null_count():
        raise ValueError(f"{symbol}: labels are missing before the last {features.horizon} rows")
    tagged = assign_parts(frame, calendar, features.horizon, label=LABEL, part=PART)
    counts = dict(tagged.group_by(PART).len().iter_rows())
    short = [name for name in _PARTS if counts.get(name, 0) < cfg.min_rows]
    if short:
        first, last = cast(date, frame["date"].min()), cast(date, frame["date"].max())
        why = (f"its rows end on {last}, before the run's last date {calendar.last} (a stale feed or a delisting?)"
               if last < calendar.last else f"its rows {first}..{last} start too late for this run's dates")
        raise InsufficientHistoryError(
            f"{symbol} has {', '.join(f'{counts.get(n, 0)} {n}' for n in short)} row(s) on the run's calendar "
            f"({calendar.describe()}); each part needs data.split.min_rows {cfg.min_rows}: {why}")
    body = tagged.drop(PART)
    part = tagged[PART]
    return Splits(train=body.filter(part == "train"), val=body.filter(part == "val"),
                  test=body.filter(part == "test"), latest=body.filter(part == "latest"), all=tagged)
