"""Contract tests of the polars feature engine: parity with the pandas reference, no look-ahead, purity."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from benchmarks.features import compare, synthetic_market
from benchmarks.reference_features import reference_features
from settings import FeatureSettings
from tasks.data.features import (
    KBAR_FEATURES,
    LABEL,
    PRICE_FEATURES,
    ROLLING_FAMILIES,
    SYMBOL,
    compute_features,
    feature_names,
)

CFG = FeatureSettings()


@pytest.fixture(scope="module")
def market() -> pl.DataFrame:
    return synthetic_market(symbols=3, days=140, seed=11)


def _gappy(market: pl.DataFrame) -> pl.DataFrame:
    """Tick-rounded prices (ties, flat runs), a missing close, a NaN high and a zero volume."""
    row = pl.int_range(pl.len())
    rounded = market.with_columns(pl.col("open", "high", "low", "close").round(0))
    return rounded.with_columns(
        pl.max_horizontal("high", "open", "close").alias("high"),
        pl.min_horizontal("low", "open", "close").alias("low"),
    ).with_columns(
        pl.when(row == 90).then(None).otherwise(pl.col("close")).alias("close"),
        pl.when(row == 200).then(float("nan")).otherwise(pl.col("high")).alias("high"),
        pl.when(row == 300).then(0.0).otherwise(pl.col("volume")).alias("volume"),
    )


@pytest.mark.parametrize("gappy", [False, True], ids=["clean", "gappy"])
def test_matches_pandas_reference(market: pl.DataFrame, gappy: bool) -> None:
    prices = _gappy(market) if gappy else market
    engine = compute_features(prices, CFG)
    reference = pl.from_pandas(reference_features(prices.to_pandas(), CFG))
    assert engine.select(SYMBOL, "date").equals(reference.select(SYMBOL, pl.col("date").cast(pl.Date)))
    assert compare(engine, reference, [*feature_names(CFG), LABEL], rtol=1e-6, atol=1e-9) == []


def test_a_day_without_volume_leaves_every_feature_finite_and_moderate(market: pl.DataFrame) -> None:
    """Zero volume on a trading day (a halt, a holiday bar) must not blow up volume ratios (was ~1e19)."""
    one = market.filter(pl.col(SYMBOL) == market[SYMBOL][0]).drop(SYMBOL)
    quiet = one.with_columns(pl.when(pl.int_range(pl.len()) == 100).then(0.0).otherwise(pl.col("volume"))
                             .alias("volume"))
    values = compute_features(quiet, CFG).select(feature_names(CFG)).slice(CFG.warmup).to_numpy()
    present = values[~np.isnan(values)]
    assert present.size > 0.95 * values.size  # a zero volume does not blank the volume features either
    assert np.isfinite(present).all() and np.abs(present).max() < 1e6


@pytest.mark.parametrize("horizon", [1, 3])
def test_no_look_ahead(market: pl.DataFrame, horizon: int) -> None:
    cfg = FeatureSettings(horizon=horizon)
    names = feature_names(cfg)
    full = compute_features(market, cfg)
    days = market["date"].unique().sort()
    for cut in (3, 20, 59, 60, 61, 100, len(days) - 1):
        seen = compute_features(market.filter(pl.col("date") <= days[cut]), cfg)
        past = full.filter(pl.col("date") <= days[cut])
        assert seen.select(names).equals(past.select(names)), f"features changed for cut {cut}"
        settled = pl.col("date") <= days[max(cut - horizon, 0)] if cut >= horizon else pl.lit(False)
        assert seen.filter(settled)[LABEL].equals(past.filter(settled)[LABEL]), f"labels changed, cut {cut}"
        # The last `horizon` labels before the cut need closes after it: unknown, so null.
        assert seen.filter(~settled)[LABEL].null_count() == seen.filter(~settled).height


def test_no_look_ahead_on_a_real_series() -> None:
    """backtesting.py's real GOOG bars (2004-2013): truncating the history changes nothing already computed."""
    from backtesting.test import GOOG

    bars = pl.from_pandas(GOOG.reset_index().rename(columns={"index": "date"})).select(
        pl.col("date").cast(pl.Date), *(pl.col(c.capitalize()).cast(pl.Float64).alias(c)
                                        for c in ("open", "high", "low", "close", "volume")))
    names = feature_names(CFG)
    full = compute_features(bars, CFG)
    for cut in (61, 500, 1500, bars.height - 2):
        seen = compute_features(bars.head(cut + 1), CFG)
        assert seen.select(names).equals(full.head(cut + 1).select(names)), f"features changed for cut {cut}"
        assert seen[LABEL].head(cut).equals(full[LABEL].head(cut)) and seen[LABEL][cut] is None


def test_input_not_mutated_and_rows_sorted(market: pl.DataFrame) -> None:
    shuffled = market.sample(fraction=1.0, shuffle=True, seed=3)
    before = shuffled.clone()
    out = compute_features(shuffled, CFG)
    assert shuffled.equals(before)
    assert shuffled.schema == before.schema
    assert out.select(SYMBOL, "date").equals(market.select(SYMBOL, "date"))


def test_symbols_do_not_bleed(market: pl.DataFrame) -> None:
    together = compute_features(market.sample(fraction=1.0, shuffle=True, seed=5), CFG)
    for symbol in market[SYMBOL].unique().sort():
        alone = compute_features(market.filter(pl.col(SYMBOL) == symbol).drop(SYMBOL), CFG)
        assert together.filter(pl.col(SYMBOL) == symbol).drop(SYMBOL).equals(alone), symbol


def _first_valid_row(name: str, cfg: FeatureSettings) -> int:
    """The warm-up rule of docs/features.md: rows before this index are null."""
    if name in (*KBAR_FEATURES, *PRICE_FEATURES):
        return 0
    if name.startswith("RSI"):
        return cfg.rsi_period
    if name.startswith("ATR"):
        return cfg.atr_period
    if name.startswith("BBP"):
        return cfg.bollinger_window - 1
    if name == "MACD":
        return cfg.macd_slow - 1
    if name in ("MACDSIG", "MACDHIST"):
        return cfg.macd_slow + cfg.macd_signal - 2
    if name == "RET1":
        return 1
    family = name.rstrip("0123456789")
    assert family in ROLLING_FAMILIES, name
    d = int(name[len(family):])
    # Families that read close_{t-1} or volume_{t-1} (or close_{t-d}) need one row more.
    one_more = {"ROC", "CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD", "WVMA", "VSUMP", "VSUMN", "VSUMD"}
    return d if family in one_more else d - 1


def test_warm_up_rows_null_then_finite(market: pl.DataFrame) -> None:
    one = market.filter(pl.col(SYMBOL) == "S0000").drop(SYMBOL)
    out = compute_features(one, CFG)
    for name in feature_names(CFG):
        first = _first_valid_row(name, CFG)
        column = out[name]
        assert first <= CFG.warmup, name
        assert column[:first].null_count() == first, f"{name} is not null before row {first}"
        assert column[first:].null_count() == 0, f"{name} has nulls from row {first} on"
        assert column[first:].is_finite().all(), name
    assert out[LABEL][: -CFG.horizon].null_count() == 0
    assert out[LABEL][-CFG.horizon:].null_count() == CFG.horizon


def test_feature_names_match_output(market: pl.DataFrame) -> None:
    names = feature_names(CFG)
    out = compute_features(market, CFG)
    assert len(names) == len(set(names)) == 12 + 29 * len(CFG.windows) + 7
    assert out.columns == [*market.columns, *names, LABEL]
    assert all(out.schema[name] == pl.Float64 for name in [*names, LABEL])
    assert {"ROC5", "MA20", "IMAX60", "CORD30", "VSUMD10", "RSI14", "ATR14"} <= set(names)


def test_hand_computed_values() -> None:
    close = [10.0, 11.0, 12.0, 11.0, 13.0, 12.0, 14.0, 15.0]
    # Rows 0-4 hold their high 13.5 three times: IMAX takes the first occurrence (row 1).
    high = [10.5, 13.5, 13.5, 12.0, 13.5, 12.5, 14.5, 15.5]
    low = [c - 1 for c in close]
    prices = pl.DataFrame({
        "date": [date(2024, 1, 1) + timedelta(days=i) for i in range(8)],
        "open": close, "high": high, "low": low, "close": close, "volume": [100.0 * (i + 1) for i in range(8)],
    })
    out = compute_features(prices, FeatureSettings(windows=(5,), horizon=1))
    assert out["ROC5"][:5].null_count() == 5
    assert out["ROC5"][5] == pytest.approx(10.0 / 12.0)
    assert out["RSV5"][4] == pytest.approx((13.0 - 9.0) / (13.5 - 9.0 + 1e-12))
    assert out["IMAX5"][4] == pytest.approx(2 / 5)
    assert out["IMAX5"][5] == pytest.approx(1 / 5)  # rows 1-5: the first 13.5 is the oldest row
    assert out["IMIN5"][4] == pytest.approx(1 / 5)
    assert out["RANK5"][4] == pytest.approx(1.0)
    assert out["RANK5"][5] == pytest.approx(0.7)  # 12 among 11, 12, 11, 13, 12: average rank 3.5 of 5
    assert out["MA5"][4] == pytest.approx(57.0 / 5 / 13.0)
    assert out["CNTP5"][5] == pytest.approx(3 / 5)
    assert out[LABEL][0] == pytest.approx(math.log(11.0 / 10.0))
    assert out[LABEL][7] is None


def test_non_finite_values_become_null(market: pl.DataFrame) -> None:
    broken = market.with_columns(
        pl.when(pl.int_range(pl.len()) == 100).then(0.0).otherwise(pl.col("close")).alias("close"),
        pl.when(pl.int_range(pl.len()) == 120).then(float("inf")).otherwise(pl.col("open")).alias("open"),
    )
    out = compute_features(broken, CFG)
    names = [*feature_names(CFG), LABEL]
    values = out.select(names).to_numpy()
    assert not np.isinf(values).any()
    assert out.select(pl.col(names).is_nan().any()).row(0) == tuple(False for _ in names)
    assert out["ROC5"][100] is None and out[LABEL][99] is None and out["KMID"][120] is None


def test_rejects_bad_frames(market: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="lack column"):
        compute_features(market.drop("volume"), CFG)
    with pytest.raises(ValueError, match="same day"):
        compute_features(pl.concat([market.head(3), market.head(1)]), CFG)
    with pytest.raises(ValueError, match="already hold"):
        compute_features(market.with_columns(pl.lit(0.0).alias(LABEL)), CFG)


def test_short_and_empty_frames(market: pl.DataFrame) -> None:
    assert compute_features(market.head(0), CFG).height == 0
    short = compute_features(market.head(4), CFG)
    assert short.height == 4
    assert short["MA5"].null_count() == 4 and short["KMID"].null_count() == 0
