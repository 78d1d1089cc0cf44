"""One calendar per run: split boundaries as dates shared by every symbol, and walk-forward folds cut by date.

The boundaries come from the union of the run's symbols' labelled trading dates (cut by the split fractions,
with an embargo of `embargo` sessions between parts) or from dates in the configuration. Every symbol's rows
are then tagged by date, so no symbol trains or stops early on a date on or after another symbol's test start,
and every model of the run is scored on the same test dates. A row also stays out of a part when its label
window reaches the next part's first date (`label_end`), which matters for a symbol with holes in its history.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from settings import FeatureSettings, SplitSettings

__all__ = ["LABEL_END", "DateFold", "InsufficientHistoryError", "RunCalendar", "assign_parts", "date_folds",
           "labelled_dates", "run_calendar", "with_label_end"]

LABEL_END = "__label_end"
"""the date of the close a row's label reads (its symbol's row `horizon` rows later); null when unlabelled."""


class InsufficientHistoryError(ValueError):
    """A symbol, or the run's calendar, has too few rows for the feature warm-up, the label horizon and the splits."""


@dataclass(frozen=True)
class RunCalendar:
    """The split boundaries every symbol of a run shares; all dates are inclusive."""

    train_end: date
    val_start: date
    val_end: date
    test_start: date
    embargo: int
    """sessions of the calendar left out between train and val, and between val and test."""
    first: date
    """the first labelled date of any symbol."""
    last: date
    """the last labelled date of any symbol."""
    sessions: int
    """labelled dates in the union of the symbols' dates."""
    symbols: int
    source: str
    """"fractions" (data.split.train/val/test of the union of dates) or "configured" (data.split.val_start and
    test_start)."""

    @property
    def boundaries(self) -> tuple[date, date, date, date, int]:
        """What cutting a symbol's rows depends on: train end, val start and end, test start, the embargo."""
        return self.train_end, self.val_start, self.val_end, self.test_start, self.embargo

    def describe(self) -> str:
        return (f"train {self.first}..{self.train_end}, val {self.val_start}..{self.val_end}, test from "
                f"{self.test_start} (embargo {self.embargo} session{'s' if self.embargo != 1 else ''}; "
                f"{self.sessions} labelled sessions of {self.symbols} symbol{'s' if self.symbols != 1 else ''}, "
                f"{self.source})")

    def to_json(self) -> dict[str, Any]:
        return {"train_end": str(self.train_end), "val_start": str(self.val_start), "val_end": str(self.val_end),
                "test_start": str(self.test_start), "embargo": self.embargo, "first": str(self.first),
                "last": str(self.last), "sessions": self.sessions, "symbols": self.symbols, "source": self.source}


def labelled_dates(dates: Sequence[date], features: FeatureSettings) -> Sequence[date]:
    """The dates of a symbol's bars (sorted) that will carry features and a label: after the warm-up rows, before
    the last `horizon` rows."""
    return dates[features.warmup:max(len(dates) - features.horizon, features.warmup)]


def run_calendar(dates: Mapping[str, Sequence[date]], features: FeatureSettings, split: SplitSettings) -> RunCalendar:
    """The run's boundaries from each symbol's bar dates (sorted, one entry per bar).

    Raises:
        InsufficientHistoryError: the union of dates is too short for three parts of `split.min_rows` sessions,
            or configured dates leave a part without sessions.
    """
    embargo = split.embargo if split.embargo is not None else features.horizon
    union = sorted(set().union(*(labelled_dates(d, features) for d in dates.values()))) if dates else []
    symbols = sum(bool(labelled_dates(d, features)) for d in dates.values())
    if split.val_start is not None and split.test_start is not None:
        return _configured(union, split.val_start, split.test_start, embargo, symbols, split)
    available = len(union) - 2 * embargo
    n_train, n_val = int(available * split.train), int(available * split.val)
    n_test = available - n_train - n_val
    if min(n_train, n_val, n_test) < split.min_rows:
        raise InsufficientHistoryError(
            f"the run's {symbols} symbol(s) have {len(union)} labelled trading dates in all; splitting them "
            f"{split.train}/{split.val}/{split.test} with an embargo of {embargo} needs at least "
            f"{3 * split.min_rows + 2 * embargo} (data.split.min_rows {split.min_rows} per part)")
    val_start = n_train + embargo
    test_start = val_start + n_val + embargo
    return RunCalendar(union[n_train - 1], union[val_start], union[val_start + n_val - 1], union[test_start],
                       embargo, union[0], union[-1], len(union), symbols, "fractions")


def _configured(union: list[date], val_start: date, test_start: date, embargo: int, symbols: int,
                split: SplitSettings) -> RunCalendar:
    v, t = bisect.bisect_left(union, val_start), bisect.bisect_left(union, test_start)
    train_end, val_end = v - embargo - 1, t - embargo - 1
    if train_end < 0 or val_end < v or t >= len(union):
        span = f"{union[0]}..{union[-1]}" if union else "no dates"
        raise InsufficientHistoryError(
            f"data.split.val_start {val_start} and test_start {test_start} leave a part without sessions: the run's "
            f"labelled dates are {span} ({len(union)}), and {embargo} session(s) of embargo precede val and test")
    return RunCalendar(union[train_end], union[v], union[val_end], union[t], embargo, union[0], union[-1],
                       len(union), symbols, "configured")


def with_label_end(frame: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """`frame` (one symbol's rows in date order) with LABEL_END: the date `horizon` rows later."""
    return frame.with_columns(pl.col("date").shift(-horizon).alias(LABEL_END))


def assign_parts(frame: pl.DataFrame, calendar: RunCalendar, horizon: int, *, label: str = "label",
                 part: str = "part") -> pl.DataFrame:
    """One symbol's warm-up-free rows in date order, with a `part` column: train / embargo / val / test / latest.

    A row is in train when its date is at most train_end and its label window ends before val_start; in val when
    its date lies in val_start..val_end and its label window ends before test_start; in test from test_start; in
    latest when it has no label yet; else in embargo.
    """
    ends = with_label_end(frame, horizon)[LABEL_END]
    dated = frame.with_columns(ends.alias(LABEL_END))
    day, end = pl.col("date"), pl.col(LABEL_END)
    tagged = dated.with_columns(
        pl.when(pl.col(label).is_null()).then(pl.lit("latest"))
        .when(day >= calendar.test_start).then(pl.lit("test"))
        .when((day <= calendar.train_end) & (end < calendar.val_start)).then(pl.lit("train"))
        .when((day >= calendar.val_start) & (day <= calendar.val_end) & (end < calendar.test_start))
        .then(pl.lit("val"))
        .otherwise(pl.lit("embargo")).alias(part))
    return tagged.drop(LABEL_END)


@dataclass(frozen=True)
class DateFold:
    """One expanding walk-forward fold, as dates: fit on rows dated before `fit_end` whose label window ends before
    `score_start`; score rows dated `score_start` up to (not including) `score_end` (None: to the last row)."""

    fit_end: date
    score_start: date
    score_end: date | None
    stop_start: date
    """the fit rows from this date on are the early-stopping set; the rows before it whose label window ends
    before it are fitted."""


def date_folds(dates: Iterable[date], folds: int, embargo: int, stop_fraction: float) -> list[DateFold]:
    """Expanding-window folds over the sorted distinct `dates`, cut into `folds + 1` equal blocks: fold i fits on
    blocks 0..i and scores block i + 1 less its first `embargo` dates; the last `stop_fraction` of each fit
    window stops the fit early.

    For the dates of one symbol without holes these are the row folds of `tasks.data.split.walk_forward_folds`.

    Raises:
        InsufficientHistoryError: too few dates for the folds and the embargo.
    """
    days = sorted(set(dates))
    block = len(days) // (folds + 1)
    if block <= embargo + 1:
        raise InsufficientHistoryError(
            f"{len(days)} dates are too few for {folds} walk-forward folds with an embargo of {embargo}")
    out = []
    for i in range(1, folds + 1):
        fit = i * block
        cut = int(fit * (1 - stop_fraction))
        out.append(DateFold(days[fit], days[fit + embargo], None if i == folds else days[(i + 1) * block],
                            days[cut]))
    return out
