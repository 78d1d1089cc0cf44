from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from schemas import SelectionReport
from settings import FeatureSettings, SplitSettings
from tasks.data.calendar import RunCalendar, run_calendar
from tasks.data.select import Selected
from tasks.data.split import InsufficientHistoryError, check_history, required_rows, split, split_bounds

FEATURES = FeatureSettings(windows=(5, 10), horizon=3)
SPLIT = SplitSettings(train=0.6, val=0.2, test=0.2, min_rows=10)
START = date(2024, 1, 1)


def selected_frame(rows: int, horizon: int, start: date = START) -> Selected:
    frame = pl.DataFrame({
        "date": [start + timedelta(days=i) for i in range(rows)],
        "x": [float(i) for i in range(rows)],
        "label": [float(i) if i < rows - horizon else None for i in range(rows)],
    })
    return Selected(frame=frame, report=SelectionReport(kept=("x",)), engineered=1)


def calendar_of(*frames: Selected) -> RunCalendar:
    """The run calendar of symbols whose warm-up-free rows are `frames` (their bars start `warmup` days earlier)."""
    bars = {str(i): [f.frame["date"].min() - timedelta(days=FEATURES.warmup - k) for k in range(FEATURES.warmup)]
            + f.frame["date"].to_list() for i, f in enumerate(frames)}
    return run_calendar(bars, FEATURES, SPLIT)


def test_bounds_are_chronological_with_embargo() -> None:
    bounds = split_bounds(106, SPLIT, embargo=3)
    assert bounds is not None
    assert bounds.train == (0, 60)
    assert bounds.val == (63, 83)
    assert bounds.test == (86, 106)


def test_split_parts_embargo_and_latest() -> None:
    # One symbol alone: the calendar's fractions of its own dates are the row fractions of split_bounds.
    parts = split.fn(selected_frame(109, 3), "VCB", FEATURES, SPLIT, calendar_of(selected_frame(109, 3)))
    assert (parts.train.height, parts.val.height, parts.test.height, parts.latest.height) == (60, 20, 20, 3)
    # The embargo keeps every train label window (t .. t+horizon) before the first val day.
    assert parts.val["x"][0] - parts.train["x"][-1] == 3 + 1
    assert parts.test["x"][0] - parts.val["x"][-1] == 3 + 1
    assert parts.train["date"].max() < parts.val["date"].min() < parts.test["date"].min()
    assert parts.latest["label"].null_count() == 3
    counts = dict(parts.all["part"].value_counts().iter_rows())
    assert counts == {"train": 60, "embargo": 6, "val": 20, "test": 20, "latest": 3}
    assert parts.all.drop("part").equals(selected_frame(109, 3).frame)
    assert parts.all.filter(pl.col("part") == "test").drop("part").equals(parts.test)


def test_too_short_history_says_how_many_rows_are_needed() -> None:
    needed = required_rows(FEATURES, SPLIT)
    check_history(needed, "VHM", FEATURES, SPLIT)
    with pytest.raises(InsufficientHistoryError, match=f"VHM has {needed - 1} rows.*at least {needed}"):
        check_history(needed - 1, "VHM", FEATURES, SPLIT)
    # A symbol whose history ends early has too few rows on a calendar set by a longer one.
    short, long = selected_frame(60, 3), selected_frame(109, 3)
    with pytest.raises(InsufficientHistoryError, match=r"VHM has 0 val, 0 test row\(s\) on the run's calendar"):
        split.fn(short, "VHM", FEATURES, SPLIT, calendar_of(short, long))


def test_required_rows_is_the_exact_minimum() -> None:
    needed = required_rows(FEATURES, SPLIT)
    labelled = needed - FEATURES.warmup - FEATURES.horizon
    assert split_bounds(labelled, SPLIT, FEATURES.horizon) is not None
    assert split_bounds(labelled - 1, SPLIT, FEATURES.horizon) is None


def test_walk_forward_folds_by_date_expand_and_respect_the_embargo() -> None:
    from tasks.data.calendar import date_folds

    days = [START + timedelta(days=i) for i in range(100)]
    folds = date_folds(days, folds=3, embargo=2, stop_fraction=0.2)
    assert [(f.fit_end, f.score_start, f.score_end, f.stop_start) for f in folds] == [
        (days[25], days[27], days[50], days[20]), (days[50], days[52], days[75], days[40]),
        (days[75], days[77], None, days[60])]
    assert date_folds(days + days[::-1], folds=3, embargo=2, stop_fraction=0.2) == folds  # distinct dates, any order
    with pytest.raises(InsufficientHistoryError, match="too few for 3 walk-forward folds"):
        date_folds(days[:10], folds=3, embargo=2, stop_fraction=0.2)
