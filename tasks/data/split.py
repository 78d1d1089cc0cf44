"""split: chronological train / val / test with an embargo of `horizon` rows between parts.

Rows whose label is not known yet (the last `horizon` days) go to a separate `latest` part for inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
from prefect import task

from settings import FeatureSettings, SplitSettings
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
    "bounds_or_raise",
    "check_history",
    "required_rows",
    "split",
    "split_bounds",
    "walk_forward_folds",
]


PART = "part"


class InsufficientHistoryError(ValueError):
    """A symbol has too few rows for the feature warm-up, the label horizon and the splits."""


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


def bounds_or_raise(labelled: int, symbol: str, features: FeatureSettings, cfg: SplitSettings) -> SplitBounds:
    """split_bounds, or InsufficientHistoryError naming the symbol and the rows needed."""
    bounds = split_bounds(labelled, cfg, features.horizon)
    if bounds is None:
        needed = required_rows(features, cfg) - features.warmup - features.horizon
        raise InsufficientHistoryError(
            f"{symbol} has {labelled} labelled rows after the warm-up; the splits need at least {needed}"
        )
    return bounds


@task(
    name="split",
    task_run_name="split-{symbol}",
    cache_policy=ContentInputs() + ModuleSources(modules=("tasks.data.split",)),
)
@resource_logged
def split(selected: Selected, symbol: str, features: FeatureSettings, cfg: SplitSettings) -> Splits:
    """Cut the selected feature rows (warm-up already dropped) into chronological parts."""
    frame = selected.frame
    labelled = int(frame[LABEL].is_not_null().sum())
    if frame.head(labelled)[LABEL].null_count():
        raise ValueError(f"{symbol}: labels are missing before the last {features.horizon} rows")
    bounds = bounds_or_raise(labelled, symbol, features, cfg)
    row = pl.int_range(pl.len())
    tagged = frame.with_columns(
        pl.when(pl.col(LABEL).is_null()).then(pl.lit("latest"))
        .when(row < bounds.train[1]).then(pl.lit("train"))
        .when(row < bounds.val[0]).then(pl.lit("embargo"))
        .when(row < bounds.val[1]).then(pl.lit("val"))
        .when(row < bounds.test[0]).then(pl.lit("embargo"))
        .otherwise(pl.lit("test")).alias(PART)
    )
    body = tagged.drop(PART)  # the parts are contiguous row ranges: slices, not filters
    return Splits(train=body.slice(0, bounds.train[1]), val=body.slice(bounds.val[0], bounds.val[1] - bounds.val[0]),
                  test=body.slice(bounds.test[0], bounds.test[1] - bounds.test[0]), latest=body.slice(labelled),
                  all=tagged)


def walk_forward_folds(rows: int, folds: int, embargo: int) -> list[tuple[range, range]]:
    """Expanding-window folds over `rows` chronological rows: (fit rows, score rows) per fold.

    The rows are cut into `folds + 1` equal blocks; fold i fits on blocks 0..i and scores block i+1,
    minus `embargo` rows at its start so no label window crosses from fit into score.
    """
    block = rows // (folds + 1)
    if block <= embargo + 1:
        raise InsufficientHistoryError(
            f"{rows} rows are too few for {folds} walk-forward folds with an embargo of {embargo}")
    out = []
    for i in range(1, folds + 1):
        end = rows if i == folds else (i + 1) * block
        out.append((range(0, i * block), range(i * block + embargo, end)))
    return out
