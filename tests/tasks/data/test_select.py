from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from backtesting.test import GOOG

from benchmarks.select import reference_select_features
from settings import DEFAULT_CONFIG_FILE, SelectionSettings, load_settings
from stores.base import PRICE_COLUMNS
from tasks.data.calendar import RunCalendar, run_calendar
from tasks.data.clean import clean
from tasks.data.engineer import engineer
from tasks.data.features import LABEL, feature_names
from tasks.data.ingest import synthetic_market
from tasks.data.select import MAX_NULL_FRACTION, fit_rows, select, select_features


def frame(rows: int = 300, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    label = 0.5 * signal + rng.normal(size=rows)
    return pl.DataFrame({
        "strong": signal,
        "copy": signal * 2.0 + 1e-6 * rng.normal(size=rows),   # near duplicate of strong
        "weak": 0.1 * label + rng.normal(size=rows),
        "noise": rng.normal(size=rows),
        "flat": np.full(rows, 3.0),
        "holes": np.where(np.arange(rows) % 3 == 0, np.nan, 1.0),
        "label": label,
    }).with_columns(pl.col("holes").fill_nan(None))


def test_drops_constant_mostly_null_and_duplicates_with_reasons() -> None:
    report = select_features(frame(), ["strong", "copy", "weak", "noise", "flat", "holes"],
                             SelectionSettings(max_features=10, max_correlation=0.95))
    assert report.kept[0] == "strong"
    assert set(report.kept) == {"strong", "weak", "noise"}
    assert report.dropped["flat"] == "constant on train"
    assert report.dropped["holes"].startswith("null in 100/300")
    assert report.dropped["copy"].startswith("|corr| 1.000 with strong")


def test_always_keep_goes_ahead_of_the_ranking_unless_constant_and_wins_against_its_twin() -> None:
    cfg = SelectionSettings(max_features=2, always_keep=("copy", "noise", "flat"))
    report = select_features(frame(), ["strong", "copy", "weak", "noise", "flat"], cfg)
    assert report.kept == ("copy", "noise")  # ahead of the ranking, in always_keep's order, within max_features
    assert report.dropped["strong"].startswith("|corr| 1.000 with copy")
    assert report.dropped["flat"] == "constant on train"  # kept only when usable
    assert "beyond max_features=2" in report.dropped["weak"]
    assert report == reference_select_features(frame(), ["strong", "copy", "weak", "noise", "flat"], cfg)


def test_always_keep_naming_a_feature_that_is_not_engineered_is_an_error() -> None:
    data = load_settings(DEFAULT_CONFIG_FILE).data
    engineered = _engineered(synthetic_market(["VCB"], 300, seed=5, end=date(2026, 10, 30))["VCB"], "VCB")
    with pytest.raises(ValueError, match="not engineered: RET2"):
        select.fn(engineered, "VCB", data.features, own_calendar(engineered),
                  SelectionSettings(always_keep=("RET1", "RET2")))


def test_max_features_keeps_the_highest_ic() -> None:
    report = select_features(frame(), ["noise", "weak", "strong"], SelectionSettings(max_features=2))
    assert report.kept == ("strong", "weak")
    assert "beyond max_features=2" in report.dropped["noise"]


def test_select_fits_on_the_train_rows_only_and_keeps_the_choice_on_every_row() -> None:
    data = load_settings(DEFAULT_CONFIG_FILE).data
    engineered = _engineered(synthetic_market(["VCB"], 600, seed=5, end=date(2026, 10, 30))["VCB"], "VCB")
    names = feature_names(data.features)
    calendar = own_calendar(engineered)
    train_end = fit_rows(engineered, data.features, calendar)[1]["date"].max()
    assert train_end == calendar.train_end
    in_train = pl.col("date") <= train_end
    # `leader` is the label itself on train rows and null after them; `latecomer` is flat on train rows and the
    # label after them. Fitted on train rows only, leader ranks first and latecomer is constant; fitted on more
    # rows (train + val, or all), leader would be mostly null and latecomer informative.
    leader, latecomer = names[0], names[1]
    crafted = engineered.with_columns(pl.when(in_train).then(pl.col(LABEL)).otherwise(None).alias(leader),
                                      pl.when(in_train).then(1.0).otherwise(pl.col(LABEL)).alias(latecomer))
    before = crafted.clone()

    selected = select.fn(crafted, "VCB", data.features, calendar, data.selection)

    assert selected.report.kept[:2] == (*data.selection.always_keep, leader)  # always_keep first, then the ranking
    assert selected.report.dropped[latecomer] == "constant on train"
    assert selected.report == select_features(crafted.slice(data.features.warmup).filter(in_train & pl.col(LABEL)
                                              .is_not_null()), names, data.selection)
    assert selected.engineered == len(names)
    # Every feature stays on every warm-up-free row, train or not (universe models select their own); nulls after
    # train are filled causally.
    out = selected.frame
    assert out.columns == [*PRICE_COLUMNS, *names, LABEL]
    assert out["date"].to_list() == engineered["date"].to_list()[data.features.warmup:]
    assert out.filter(pl.col("date") > train_end).height > 0
    assert out.select(pl.col(names).null_count()).sum_horizontal().item() == 0
    last_train_label = crafted.filter(in_train)[LABEL][-1]
    assert out.filter(~in_train)[leader].to_list() == [last_train_label] * out.filter(~in_train).height
    assert crafted.equals(before)  # input untouched


# Equality with the per-column implementation this module replaced (benchmarks.select keeps it verbatim):
# the same kept features in the same order and the same dropped reasons, in the same order.

CONFIGS = [
    SelectionSettings(),
    SelectionSettings(max_features=5),
    SelectionSettings(max_features=200, max_correlation=0.5),
    SelectionSettings(max_features=40, max_correlation=1.0, min_std=0.0),
    SelectionSettings(max_features=3, max_correlation=0.9, min_std=0.5),
]


def assert_same_selection(train: pl.DataFrame, names: list[str], cfg: SelectionSettings) -> None:
    expected = reference_select_features(train, names, cfg)
    actual = select_features(train, names, cfg)
    assert actual.kept == expected.kept
    assert actual.dropped == expected.dropped
    assert list(actual.dropped.items()) == list(expected.dropped.items())


def own_calendar(engineered: pl.DataFrame) -> RunCalendar:
    """The calendar of a run of this one symbol."""
    data = load_settings(DEFAULT_CONFIG_FILE).data
    return run_calendar({"X": engineered["date"].to_list()}, data.features, data.split)


def _engineered(prices: pl.DataFrame, symbol: str) -> pl.DataFrame:
    """`prices` cleaned and engineered with the default settings."""
    settings = load_settings(DEFAULT_CONFIG_FILE)
    cleaned = clean.fn(prices, symbol, settings.data.cleaning, settings.markets.of(symbol))
    return engineer.fn(cleaned, symbol, settings.data.features, settings.data.split)


def _engineered_train(prices: pl.DataFrame, symbol: str) -> pl.DataFrame:
    data = load_settings(DEFAULT_CONFIG_FILE).data
    engineered = _engineered(prices, symbol)
    return fit_rows(engineered, data.features, own_calendar(engineered))[1]


@pytest.fixture(scope="module")
def engineered_trains() -> dict[str, pl.DataFrame]:
    """Train rows of engineered features: two synthetic symbols of 2,500 days and backtesting.py's GOOG."""
    market = synthetic_market(["VCB", "FPT"], 2500, seed=11, end=date(2026, 10, 30))
    trains = {symbol: _engineered_train(prices, symbol) for symbol, prices in market.items()}
    goog = pl.from_pandas(GOOG.rename(columns=str.lower).rename_axis("date").reset_index())
    trains["GOOG"] = _engineered_train(goog.with_columns(pl.col("date").cast(pl.Date)), "GOOG")
    return trains


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("symbol", ["VCB", "FPT", "GOOG"])
def test_same_selection_as_reference_on_engineered_features(engineered_trains: dict[str, pl.DataFrame],
                                                            symbol: str) -> None:
    names = feature_names(load_settings(DEFAULT_CONFIG_FILE).data.features)
    for cfg in CONFIGS:
        assert_same_selection(engineered_trains[symbol], names, cfg)


def crafted(rows: int = 200, seed: int = 0, label_nulls: bool = False) -> pl.DataFrame:
    """Exact copies and sign flips, monotone transforms (equal ranks, so tied |IC|), constants, nulls at and
    over the 5% limit, NaN and inf values, an integer column with many ties."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=rows)
    label = base + rng.normal(size=rows)
    nan_some, with_inf = base.copy(), base.copy()
    nan_some[[3, rows - 3]] = np.nan
    with_inf[7] = np.inf
    at_limit = int(MAX_NULL_FRACTION * rows)
    frame = pl.DataFrame({
        "noise": rng.normal(size=rows),
        "a": base,
        "a_copy": base,
        "a_neg": -base,
        "a_scaled": 3.0 * base + 1.0,
        "a_exp": np.exp(base),
        "steps": np.round(base * 2) / 2,
        "ints": rng.integers(0, 3, size=rows),
        "flat": np.full(rows, 3.0),
        "flat_tenth": np.full(rows, 0.1),
        "almost_flat": 1.0 + 1e-12 * rng.normal(size=rows),
        "nan_some": nan_some,
        "with_inf": with_inf,
        "nulls_at_limit": rng.normal(size=rows),
        "nulls_over_limit": rng.normal(size=rows),
        "leading_nulls": label + rng.normal(size=rows),
        "all_null": np.full(rows, np.nan),
        "weak": 0.2 * label + rng.normal(size=rows),
        "label": label,
    }).with_columns(
        pl.when(pl.int_range(pl.len()) % (rows // at_limit) == 1).then(None)
        .otherwise(pl.col("nulls_at_limit")).alias("nulls_at_limit"),
        pl.when(pl.int_range(pl.len()) <= at_limit).then(None)
        .otherwise(pl.col("nulls_over_limit")).alias("nulls_over_limit"),
        pl.when(pl.int_range(pl.len()) < 4).then(None).otherwise(pl.col("leading_nulls")).alias("leading_nulls"),
        pl.col("all_null").fill_nan(None),
    )
    if label_nulls:
        frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("label"))
                                   .alias("label"))
    return frame


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("label_nulls", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_selection_as_reference_on_crafted_frames(seed: int, label_nulls: bool) -> None:
    train = crafted(seed=seed, label_nulls=label_nulls)
    assert train["nulls_at_limit"].null_count() == MAX_NULL_FRACTION * train.height  # kept: not over
    names = [c for c in train.columns if c != LABEL]
    shuffled = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    for cfg in [*CONFIGS, SelectionSettings(max_features=1), SelectionSettings(max_correlation=0.7)]:
        assert_same_selection(train, names, cfg)
        assert_same_selection(train, shuffled, cfg)
        assert_same_selection(train, [*names, "flat"], cfg)  # a repeated (dropped) name


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_crafted_ties_and_twins_follow_the_reference_rules() -> None:
    report = select_features(crafted(), ["a_exp", "a", "a_copy", "a_neg", "a_scaled"], SelectionSettings())
    # Equal ranks tie on |IC|: the earliest name wins, the others are its exact (or near) copies.
    assert report.kept == ("a_exp", "a")
    assert report.dropped["a_copy"] == "|corr| 1.000 with a"
    assert report.dropped["a_neg"] == "|corr| 1.000 with a"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("rows", [0, 1, 2, 3])
def test_same_selection_as_reference_on_tiny_frames(rows: int) -> None:
    train = crafted(rows=40).head(rows)
    names = [c for c in train.columns if c != LABEL]
    for cfg in CONFIGS:
        assert_same_selection(train, names, cfg)
        assert_same_selection(train, names[:1], cfg)
    assert select_features(train, [], SelectionSettings()) == reference_select_features(train, [], SelectionSettings())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_same_selection_as_reference_on_random_discrete_frames() -> None:
    """Few rows of few distinct values: many rank ties, exactly tied |IC|, |corr| of exactly 1 and NaN."""
    rng = np.random.default_rng(2026)
    for _ in range(150):
        rows, width = int(rng.integers(2, 40)), int(rng.integers(1, 9))
        columns = {f"f{i}": rng.integers(0, int(rng.integers(1, 4)), size=rows).astype(np.float64)
                   for i in range(width)}
        for i in range(width):  # some exact copies and sign flips of an earlier column
            if i and rng.random() < 0.3:
                columns[f"f{i}"] = columns[f"f{rng.integers(0, i)}"] * rng.choice([-1.0, 1.0, 2.0])
        for values in columns.values():
            values[rng.random(rows) < 0.1] = rng.choice([np.nan, np.inf])
        frame = pl.DataFrame({**columns, LABEL: rng.integers(0, 3, size=rows).astype(np.float64)})
        frame = frame.with_columns(pl.when(pl.lit(rng.random(rows) < 0.05)).then(None).otherwise(pl.all())
                                   .name.keep())
        cfg = SelectionSettings(max_features=int(rng.integers(1, 6)),
                                max_correlation=float(rng.choice([0.3, 0.5, 0.95, 1.0])),
                                min_std=float(rng.choice([0.0, 1e-10, 0.5])))
        assert_same_selection(frame, list(columns), cfg)
