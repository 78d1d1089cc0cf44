from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from schemas import SelectionReport
from settings import FeatureSettings, SplitSettings
from tasks.data.select import Selected
from tasks.data.split import InsufficientHistoryError, check_history, required_rows, split, split_bounds

FEATURES = FeatureSettings(windows=(5, 10), horizon=3)
SPLIT = SplitSettings(train=0.6, val=0.2, test=0.2, min_rows=10)


def selected_frame(rows: int, horizon: int) -> Selected:
    frame = pl.DataFrame({
        "date": [date(2024, 1, 1) + timedelta(days=i) for i in range(rows)],
        "x": [float(i) for i in range(rows)],
        "label": [float(i) if i < rows - horizon else None for i in range(rows)],
    })
    return Selected(frame=frame, report=SelectionReport(kept=("x",)), engineered=1)


def test_bounds_are_chronological_with_embargo() -> None:
    bounds = split_bounds(106, SPLIT, embargo=3)
    assert bounds is not None
    assert bounds.train == (0, 60)
    assert bounds.val == (63, 83)
    assert bounds.test == (86, 106)


def test_split_parts_embargo_and_latest() -> None:
    parts = split.fn(selected_frame(109, 3), "VCB", FEATURES, SPLIT)
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
    with pytest.raises(InsufficientHistoryError, match="VHM has 20 labelled rows"):
        split.fn(selected_frame(23, 3), "VHM", FEATURES, SPLIT)


def test_required_rows_is_the_exact_minimum() -> None:
    needed = required_rows(FEATURES, SPLIT)
    labelled = needed - FEATURES.warmup - FEATURES.horizon
    assert split_bounds(labelled, SPLIT, FEATURES.horizon) is not None
    assert split_bounds(labelled - 1, SPLIT, FEATURES.horizon) is None


def test_walk_forward_folds_expand_and_respect_the_embargo() -> None:
    from tasks.data.split import walk_forward_folds

    folds = walk_forward_folds(100, folds=3, embargo=2)
    assert [(f.start, f.stop, s.start, s.stop) for f, s in folds] == [
        (0, 25, 27, 50), (0, 50, 52, 75), (0, 75, 77, 100)]
    with pytest.raises(InsufficientHistoryError, match="too few for 3 walk-forward folds"):
        walk_forward_folds(10, folds=3, embargo=2)
