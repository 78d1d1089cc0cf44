"""The synthetic market generator and the CSV / Parquet price-file reader."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from benchmarks.planted_edge import daily_ic, summarize, universe
from schemas import InvalidSymbolError
from stores.base import PRICE_SCHEMA
from tasks.data.ingest import (
    DEMO_PULL,
    DEMO_REVERSAL,
    DEMO_REVERSAL_IC,
    PLANTED_EDGES,
    planted_effect,
    read_price_file,
    synthetic_market,
)

END = date(2024, 6, 28)  # a Friday


@pytest.fixture(scope="module")
def market() -> dict[str, pl.DataFrame]:
    return synthetic_market(["VCB", "VIC", "VHM", "ZZZ9"], days=300, seed=7, end=END)


def test_same_seed_same_frames(market: dict[str, pl.DataFrame]) -> None:
    again = synthetic_market(["VCB", "VIC", "VHM", "ZZZ9"], days=300, seed=7, end=END)
    for symbol, frame in market.items():
        assert_frame_equal(frame, again[symbol])
    other = synthetic_market(["VCB"], days=300, seed=8, end=END)
    assert not other["VCB"].equals(market["VCB"])


def test_a_symbol_does_not_depend_on_the_others_requested(market: dict[str, pl.DataFrame]) -> None:
    assert_frame_equal(synthetic_market(["VIC"], days=300, seed=7, end=END)["VIC"], market["VIC"])


def test_business_days_ending_at_end(market: dict[str, pl.DataFrame]) -> None:
    frame = market["VCB"]
    assert frame.schema == pl.Schema(PRICE_SCHEMA)
    assert frame.height == 300
    assert frame["date"][-1] == END
    assert frame["date"].is_sorted() and frame["date"].n_unique() == 300
    assert (frame["date"].dt.weekday() <= 5).all()  # polars: Monday=1 .. Sunday=7
    # A weekend end rolls back to the Friday before it.
    weekend = synthetic_market(["VCB"], days=5, seed=7, end=date(2024, 6, 30))["VCB"]
    assert weekend["date"][-1] == END


def _assert_valid_hose_bars(frame: pl.DataFrame) -> None:
    o, h, lo, c, v = (frame[name].to_numpy() for name in ("open", "high", "low", "close", "volume"))
    assert (lo > 0).all()
    assert (lo <= np.minimum(o, c)).all() and (h >= np.maximum(o, c)).all()
    prev = c[:-1]
    for prices in (o[1:], h[1:], lo[1:], c[1:]):
        assert (np.abs(prices / prev - 1) <= 0.07 + 1e-9).all()
    for prices in (o, h, lo, c):
        ticks = np.where(prices < 50, 0.05, 0.1)
        assert np.allclose(prices / ticks, np.round(prices / ticks), atol=1e-6)
    assert (v >= 100).all() and (v % 100 == 0).all()


@pytest.mark.parametrize("symbol", ["VCB", "VIC", "VHM", "ZZZ9"])
def test_bars_are_consistent_and_on_the_hose_grid(market: dict[str, pl.DataFrame], symbol: str) -> None:
    _assert_valid_hose_bars(market[symbol])


def test_price_levels_are_realistic(market: dict[str, pl.DataFrame]) -> None:
    first = {symbol: frame["close"][0] for symbol, frame in market.items()}
    assert 60 < first["VCB"] < 120
    assert 30 < first["VIC"] < 60
    assert 25 < first["VHM"] < 55
    assert 5 < first["ZZZ9"] < 150


def test_volatility_clusters_and_volume_follows_big_moves() -> None:
    market = synthetic_market(["VCB", "VIC", "VHM"], days=1000, seed=7, end=END)
    clustering, volume_link = [], []
    for frame in market.values():
        returns = np.diff(np.log(frame["close"].to_numpy()))
        assert 0.008 < returns.std() < 0.03  # daily volatility of a large-cap Vietnamese stock
        size = np.abs(returns)
        # GARCH-style clustering: |returns| stay autocorrelated over days (iid returns give ~0).
        clustering += [np.corrcoef(size[:-lag], size[lag:])[0, 1] for lag in range(1, 11)]
        volume_link.append(np.corrcoef(size, np.log(frame["volume"].to_numpy()[1:]))[0, 1])
    assert np.mean(clustering) > 0.05
    assert min(volume_link) > 0.2


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(InvalidSymbolError):
        synthetic_market(["../x"], days=10, seed=1, end=END)
    with pytest.raises(ValueError, match=r"days"):
        synthetic_market(["VCB"], days=0, seed=1, end=END)
    for reversal in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"reversal"):
            synthetic_market(["VCB"], days=10, seed=1, end=END, reversal=reversal)


def _digest(frames: dict[str, pl.DataFrame]) -> str:
    digest = hashlib.sha256()
    for symbol, frame in sorted(frames.items()):
        digest.update(symbol.encode())
        digest.update(frame["date"].cast(pl.Int64).to_numpy().astype("<i8").tobytes())
        for name in ("open", "high", "low", "close", "volume"):
            digest.update(frame[name].to_numpy().astype("<f8").tobytes())
    return digest.hexdigest()


def test_without_a_planted_effect_the_market_is_the_one_generated_before_it_existed() -> None:
    # Digests of the bars generated before the `reversal` option was added.
    first = ["VCB", "VIC", "VHM", "ZZZ9"], 300, 7, END
    second = ["FPT", "A1"], 40, 3, date(2025, 1, 15)
    assert _digest(synthetic_market(*first)) == "41ce090497e2d98821f49e8684dcee6bf393e191cf5f844d46d5afc00c5061ea"
    assert _digest(synthetic_market(*first, reversal=0.0)) == _digest(synthetic_market(*first))
    assert _digest(synthetic_market(*second)) == "92ce023d635ce6cd7c492f4c6f61eb2cf7f5481e59eebf499507fb4ca2187f7c"


def test_with_the_planted_reversal_a_symbol_still_depends_only_on_itself() -> None:
    alone = synthetic_market(["VIC"], days=300, seed=7, end=END, reversal=DEMO_REVERSAL)["VIC"]
    among = synthetic_market(["VCB", "VIC", "ZZZ9"], days=300, seed=7, end=END, reversal=DEMO_REVERSAL)
    assert_frame_equal(alone, among["VIC"])
    assert not alone.equals(synthetic_market(["VIC"], days=300, seed=7, end=END)["VIC"])
    for frame in among.values():
        _assert_valid_hose_bars(frame)


@pytest.fixture(scope="module")
def daily_ics() -> dict[str, np.ndarray]:
    """Per-date rank ICs of -r[t] against r[t+1] on 50 symbols x 800 days, by --edge choice."""
    symbols = universe(50)
    return {name: daily_ic(synthetic_market(symbols, days=800, seed=7, end=END, reversal=edge.reversal,
                                            structure=edge.structure))
            for name, edge in PLANTED_EDGES.items() if not edge.pull}


def _slow_ic(frames: dict[str, pl.DataFrame]) -> float:
    """Mean daily rank IC of -ln(close / its 60-day mean) against the next 20 days' log return: a slow signal."""
    rows = pl.concat([f.with_columns(symbol=pl.lit(s)) for s, f in frames.items()]).sort("symbol", "date")
    scored = rows.with_columns(
        signal=-(pl.col("close") / pl.col("close").rolling_mean(60).over("symbol")).log(),
        ahead=(pl.col("close").shift(-20).over("symbol") / pl.col("close")).log()).drop_nulls()
    return float(scored.group_by("date").agg(pl.corr("signal", "ahead", method="spearman"))["signal"].mean())


def test_the_planted_pull_is_a_slow_effect_the_reversal_alone_lacks() -> None:
    symbols = universe(30)
    reversion = _slow_ic(synthetic_market(symbols, days=800, seed=7, end=END, reversal=DEMO_REVERSAL,
                                          structure=False, pull=DEMO_PULL))
    reversal = _slow_ic(synthetic_market(symbols, days=800, seed=7, end=END, reversal=DEMO_REVERSAL,
                                         structure=False))
    assert reversion > 0.1 and abs(reversal) < 0.05
    with pytest.raises(ValueError, match="pull must be in"):
        synthetic_market(symbols[:1], days=10, seed=7, end=END, pull=1.5)


def test_the_planted_reversal_has_the_documented_ic(daily_ics: dict[str, np.ndarray]) -> None:
    on = summarize(daily_ics["reversal"])
    error = on.mean / on.t_stat  # about 0.14 / sqrt(799 dates) for 50 symbols
    assert error < 0.006
    assert abs(on.mean - DEMO_REVERSAL_IC) < 3 * error
    # The reversal market and the null one share every shock but the planted one, so their difference by date is
    # the effect alone, with a much smaller standard error than either market's IC.
    assert len(daily_ics["reversal"]) == len(daily_ics["null"])
    effect = summarize(daily_ics["reversal"] - daily_ics["null"])
    assert 0.07 < effect.mean < 0.09 and effect.t_stat > 20


@pytest.mark.parametrize("edge", ["null", "none"])
def test_without_the_planted_effect_the_ic_is_noise(daily_ics: dict[str, np.ndarray], edge: str) -> None:
    off = summarize(daily_ics[edge])
    assert abs(off.t_stat) < 3  # |mean| within 3 standard errors of zero, about +/-0.015 here


def test_the_null_market_has_one_beta_no_drift_and_no_pull() -> None:
    # Without structure every symbol moves with the market one for one: the cross-sectional spread of returns is
    # the idiosyncratic part alone, the same for every symbol, and the log price wanders freely.
    frames = synthetic_market(universe(20), days=1500, seed=3, end=END, structure=False)
    returns = np.stack([np.diff(np.log(f["close"].to_numpy())) for f in frames.values()])  # (symbols, days - 1)
    market = returns.mean(axis=0)
    betas = [np.cov(r, market)[0, 1] / market.var(ddof=1) for r in returns]
    assert max(abs(b - 1) for b in betas) < 0.1
    with_structure = synthetic_market(universe(20), days=1500, seed=3, end=END)
    spread = np.stack([np.diff(np.log(f["close"].to_numpy())) for f in with_structure.values()])
    assert np.ptp([np.cov(r, spread.mean(axis=0))[0, 1] / spread.mean(axis=0).var(ddof=1) for r in spread]) > 0.3


def test_the_planted_effect_and_the_structure_are_named() -> None:
    assert planted_effect(0.0).startswith("planted effect: none; the market's own structure kept")
    assert planted_effect(0.0, structure=False) == (
        "planted effect: none; nothing else to predict (one beta, no drift, i.i.d. idiosyncratic returns, "
        "no level pull)")
    text = planted_effect(DEMO_REVERSAL, structure=False)
    assert "1-day reversal" in text and str(DEMO_REVERSAL) in text and f"mean daily IC about {DEMO_REVERSAL_IC}" in text
    assert "reversal 0.1" in planted_effect(0.1) and "IC" not in planted_effect(0.1)
    assert planted_effect(DEMO_REVERSAL, structure=False, pull=DEMO_PULL) == (
        "planted effect: 1-day reversal of idiosyncratic returns (reversal 0.08) and a pull of each price toward its "
        "level (0.02 a day, half-life 35 sessions); nothing else to predict (one beta, no drift, i.i.d. "
        "idiosyncratic returns)")


def _pandas_prices() -> pd.DataFrame:
    index = pd.DatetimeIndex(["2024-01-03", "2024-01-02", "2024-01-04"], name="Date")
    return pd.DataFrame({"OPEN": [2.0, 1.0, 3.0], "High": [2.5, 1.5, 3.5], "low": [1.5, 0.5, 2.5],
                         "Close": [2.2, 1.2, 3.2], "Volume": [200, 100, 300]}, index=index)


def _expected() -> pl.DataFrame:
    return pl.DataFrame({"date": [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)],
                         "open": [1.0, 2.0, 3.0], "high": [1.5, 2.5, 3.5], "low": [0.5, 1.5, 2.5],
                         "close": [1.2, 2.2, 3.2], "volume": [100.0, 200.0, 300.0]}, schema=PRICE_SCHEMA)


def test_csv_with_odd_column_case(tmp_path: Path) -> None:
    path = tmp_path / "prices.CSV"
    _pandas_prices().to_csv(path)
    assert_frame_equal(read_price_file(path), _expected())


def test_parquet_with_a_pandas_date_index(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    _pandas_prices().to_parquet(path)
    assert_frame_equal(read_price_file(path), _expected())


def test_parquet_with_an_unnamed_pandas_index(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    _pandas_prices().rename_axis(None).to_parquet(path)
    assert_frame_equal(read_price_file(path), _expected())


def test_csv_with_the_unnamed_index_column_pandas_writes(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    _pandas_prices().rename_axis(None).to_csv(path)
    assert_frame_equal(read_price_file(path), _expected())


def test_a_real_daily_series_as_pandas_writes_it(tmp_path: Path) -> None:
    """backtesting.py's GOOG bars (2004-2013), saved with DataFrame.to_csv() as most users would."""
    from backtesting.test import GOOG

    path = tmp_path / "goog.csv"
    GOOG.to_csv(path)
    bars = read_price_file(path)
    assert bars.height == len(GOOG) == 2148
    assert (bars["date"][0], bars["date"][-1]) == (date(2004, 8, 19), date(2013, 3, 1))
    assert bars["close"].to_list() == GOOG["Close"].tolist()


def test_csv_date_strings_and_a_symbol_column(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("Ticker,Time,Open,High,Low,Close,Volume\n"
                    "VCB,2024-01-02 00:00:00,1,1.5,0.5,1.2,100\n"
                    "VIC,2024-01-02 00:00:00,9,9,9,9,9\n"
                    "VCB,2024-01-03 00:00:00, 2 ,2.5,1.5,2.2,200\n")
    frame = read_price_file(path, symbol="VCB")
    assert frame["date"].to_list() == [date(2024, 1, 2), date(2024, 1, 3)]
    assert frame["open"].to_list() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"several symbols"):
        read_price_file(path)
    with pytest.raises(ValueError, match=r"no rows for symbol 'FPT'"):
        read_price_file(path, symbol="FPT")


def test_missing_close_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "no_close.csv"
    _pandas_prices().drop(columns="Close").to_csv(path)
    with pytest.raises(ValueError, match=r"no_close\.csv has no close column \(columns found: Date, OPEN"):
        read_price_file(path)


def test_bad_values_and_files_are_clear_errors(tmp_path: Path) -> None:
    bad_date = tmp_path / "bad_date.csv"
    bad_date.write_text("date,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\nyesterday,1,1,1,1,1\n")
    with pytest.raises(ValueError, match=r"'yesterday'"):
        read_price_file(bad_date)
    bad_number = tmp_path / "bad_number.csv"
    bad_number.write_text("date,open,high,low,close,volume\n2024-01-02,1,1,1,n/a,1\n")
    with pytest.raises(ValueError, match=r"'close' has non-numeric"):
        read_price_file(bad_number)
    with pytest.raises(ValueError, match=r"unsupported price file .*prices\.xlsx"):
        read_price_file(tmp_path / "prices.xlsx")
    with pytest.raises(FileNotFoundError, match=r"missing.csv"):
        read_price_file(tmp_path / "missing.csv")
