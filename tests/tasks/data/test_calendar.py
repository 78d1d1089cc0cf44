"""One calendar per run: boundaries are dates every symbol shares, whatever the length of its history."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from settings import ConfigError, FeatureSettings, SplitSettings, load_settings
from tasks.data.calendar import InsufficientHistoryError, assign_parts, labelled_dates, run_calendar

FEATURES = FeatureSettings(windows=(5, 10), horizon=2)  # warm-up 35 rows
SPLIT = SplitSettings(train=0.6, val=0.2, test=0.2, min_rows=10)


def days(start: date, count: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(count)]


def rows(dates: list[date], horizon: int = 2) -> pl.DataFrame:
    """Warm-up-free rows with a label, the last `horizon` unlabelled."""
    return pl.DataFrame({"date": dates, "label": [1.0 if i < len(dates) - horizon else None
                                                   for i in range(len(dates))]})


def test_boundaries_come_from_the_union_of_dates_and_bind_every_symbol() -> None:
    long, short = days(date(2020, 1, 1), 400), days(date(2020, 1, 1) + timedelta(days=150), 250)
    calendar = run_calendar({"LONG": long, "SHORT": short}, FEATURES, SPLIT)
    union = sorted(set(labelled_dates(long, FEATURES)) | set(labelled_dates(short, FEATURES)))
    assert union == labelled_dates(long, FEATURES)  # SHORT's dates all lie within LONG's here
    available = len(union) - 2 * 2
    n_train, n_val = int(available * 0.6), int(available * 0.2)
    assert (calendar.train_end, calendar.val_start, calendar.val_end, calendar.test_start) == (
        union[n_train - 1], union[n_train + 2], union[n_train + 2 + n_val - 1], union[n_train + 2 + n_val + 2])
    assert (calendar.sessions, calendar.symbols, calendar.embargo, calendar.source) == (len(union), 2, 2, "fractions")

    # Each symbol's rows are cut at those dates: no train or val row of either lies on or after the test start,
    # and both are scored from the same first date.
    for dates in (long, short):
        parts = assign_parts(rows(dates[FEATURES.warmup:]), calendar, FEATURES.horizon)
        fitted = parts.filter(pl.col("part").is_in(["train", "val"]))
        assert fitted["date"].max() < calendar.test_start
        assert parts.filter(pl.col("part") == "train")["date"].max() <= calendar.train_end
        assert parts.filter(pl.col("part") == "test")["date"].min() == calendar.test_start


def test_a_symbol_cut_on_its_own_is_cut_as_before() -> None:
    # One symbol: the calendar is its own labelled dates, cut by the fractions with `horizon` rows of embargo.
    dates = days(date(2021, 3, 1), 35 + 109)
    parts = assign_parts(rows(dates[35:], 3), run_calendar({"X": dates}, FeatureSettings(windows=(5, 10), horizon=3),
                                                            SPLIT), 3)
    counts = dict(parts["part"].value_counts().iter_rows())
    assert counts == {"train": 60, "embargo": 6, "val": 20, "test": 20, "latest": 3}


def test_a_row_whose_label_window_reaches_the_next_part_is_embargo() -> None:
    dates = days(date(2022, 1, 3), 200)
    calendar = run_calendar({"X": dates}, FEATURES, SPLIT)
    # A symbol with a hole right after train_end: its last row before the hole has its label two rows later,
    # past val_start, so it may not train; the same row of a symbol without the hole trains.
    end = dates.index(calendar.train_end)
    holed = [d for d in dates[FEATURES.warmup:] if not dates[end + 1] <= d <= dates[end + 2]]
    parts = assign_parts(rows(holed), calendar, FEATURES.horizon)
    last_train = parts.filter(pl.col("part") == "train")["date"].max()
    assert last_train < calendar.train_end
    assert parts.filter(pl.col("date") == calendar.train_end)["part"].item() == "embargo"
    full = assign_parts(rows(dates[FEATURES.warmup:]), calendar, FEATURES.horizon)
    assert full.filter(pl.col("date") == calendar.train_end)["part"].item() == "train"


def test_dates_from_the_configuration_and_a_wider_embargo() -> None:
    dates = days(date(2022, 1, 3), 300)
    split = SplitSettings(min_rows=10, embargo=5, val_start=date(2022, 6, 1), test_start=date(2022, 8, 1))
    calendar = run_calendar({"X": dates}, FEATURES, split)
    assert (calendar.val_start, calendar.test_start, calendar.source) == (date(2022, 6, 1), date(2022, 8, 1),
                                                                          "configured")
    assert calendar.train_end == date(2022, 6, 1) - timedelta(days=6)  # 5 sessions of embargo before val
    assert calendar.val_end == date(2022, 8, 1) - timedelta(days=6)
    parts = assign_parts(rows(dates[FEATURES.warmup:]), calendar, FEATURES.horizon)
    assert parts.filter(pl.col("part") == "test")["date"].min() == date(2022, 8, 1)
    too_late = SplitSettings(min_rows=10, val_start=date(2030, 1, 1), test_start=date(2030, 6, 1))
    with pytest.raises(InsufficientHistoryError, match="val_start 2030-01-01 and test_start 2030-06-01 leave a part"):
        run_calendar({"X": dates}, FEATURES, too_late)


def test_too_few_dates_in_all_say_how_many_are_needed() -> None:
    with pytest.raises(InsufficientHistoryError, match=r"2 symbol\(s\) have 20 labelled trading dates in all"):
        run_calendar({"A": days(date(2022, 1, 3), 57), "B": days(date(2022, 1, 3), 50)}, FEATURES, SPLIT)


def test_the_split_settings_refuse_what_would_leak_or_is_half_given() -> None:
    with pytest.raises(ConfigError, match=r"split.embargo \(1\) is shorter than features.horizon \(3\)"):
        load_settings(overrides={"data": {"features": {"horizon": 3}, "split": {"embargo": 1}}})
    with pytest.raises(ConfigError, match="give val_start and test_start together"):
        load_settings(overrides={"data": {"split": {"val_start": "2024-01-02"}}})
    with pytest.raises(ConfigError, match=r"val_start \(2024-05-02\) must be before test_start"):
        load_settings(overrides={"data": {"split": {"val_start": "2024-05-02", "test_start": "2024-01-02"}}})


def test_the_universe_settings_name_their_symbols_and_refuse_unknown_names() -> None:
    data = load_settings().data
    assert len(data.universe_symbols("VN30") or ()) == 30 and data.universe_symbols(None) is None
    with pytest.raises(ValueError, match=r"unknown universe 'VN31': data\.universes has VN30"):
        data.universe_symbols("VN31")
    with pytest.raises(ConfigError, match="unknown universe 'X'"):
        load_settings(overrides={"data": {"universe": "X"}})
    with pytest.raises(ConfigError, match="universe ONE lists 1 symbol"):
        load_settings(overrides={"data": {"universes": {"ONE": ["VCB", "VCB"]}}})
    with pytest.raises(ConfigError, match=r"invalid symbol '\.\./x'"):
        load_settings(overrides={"data": {"universes": {"BAD": ["VCB", "../x"]}}})
    assert np.all(np.array(data.universes["VN30"]) == np.array(sorted(data.universes["VN30"])))
