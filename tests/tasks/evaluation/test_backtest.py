"""Backtest: hand-computed ledgers, next-open fills without look-ahead, cash, and many == one."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from settings import BacktestSettings
from tasks.evaluation.backtest import BacktestResult, Window, backtest, backtest_each, backtest_many, signals, sizing

DEFAULT = BacktestSettings()


def _days(n: int) -> np.ndarray:
    return np.datetime64("2024-01-01") + np.arange(n)


def _market(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    open_ = close * np.exp(rng.normal(0, 0.01, n))
    return open_, close, rng.normal(0, 0.01, n)


def test_long_flat_ledger_by_hand() -> None:
    open_ = np.array([10, 10.5, 11, 12, 11.5, 12, 13, 12.5])
    close = np.array([10.2, 10.8, 11.5, 11.8, 11.9, 12.4, 12.8, 13.0])
    pred = np.array([1, 1, -1, -1, 1, 0, 1, 1]) * 0.01  # signals 1 1 0 0 1 0 1 1: held 0 1 1 0 0 1 0 1
    result = backtest(_days(8), open_, close, pred, DEFAULT)

    # Trade 1: fill at open[1] = 10.5, floor(100000 / (10.5 * 1.001) / 100) = 95 lots.
    cash1 = 100_000 - 9500 * 10.5 - 9500 * 10.5 * 0.001  # 150.25
    cash1_out = cash1 + 9500 * 12 - 9500 * 12 * 0.001  # sold at open[3]: 114036.25
    # Trade 2: open[5] = 12, floor(114036.25 / 12.012 / 100) = 94 lots; sold at open[6] = 13.
    cash2 = cash1_out - 9400 * 12 - 9400 * 12 * 0.001  # 1123.45
    cash2_out = cash2 + 9400 * 13 - 9400 * 13 * 0.001  # 123201.25
    # Trade 3: open[7] = 12.5, floor(123201.25 / 12.5125 / 100) = 98 lots; still open, marked at close[7].
    cash3 = cash2_out - 9800 * 12.5 - 9800 * 12.5 * 0.001  # 578.75
    equity = [100_000, cash1 + 9500 * 10.8, cash1 + 9500 * 11.5, cash1_out, cash1_out, cash2 + 9400 * 12.4,
              cash2_out, cash3 + 9800 * 13.0]
    np.testing.assert_allclose(result.equity, equity, rtol=0, atol=1e-8)
    np.testing.assert_allclose(result.equity, [100000, 102750.25, 109400.25, 114036.25, 114036.25,
                                               117683.45, 123201.25, 127978.75], rtol=0, atol=1e-8)
    assert result.position.tolist() == [0, 9500, 9500, 0, 0, 9400, 0, 9800]
    np.testing.assert_allclose(result.returns, [0.0, *(np.array(equity[1:]) / equity[:-1] - 1)], rtol=1e-12)

    trades = result.trades
    assert trades["side"].to_list() == ["long"] * 3
    assert trades["shares"].to_list() == [9500, 9400, 9800]
    assert trades["entry_date"].to_list() == list(_days(8)[[1, 5, 7]].astype(object))
    assert trades["exit_date"].to_list() == [*_days(8)[[3, 6]].astype(object), None]
    assert trades["entry_price"].to_list() == [10.5, 12.0, 12.5]
    assert trades["exit_price"].to_list() == [12.0, 13.0, None]
    np.testing.assert_allclose(trades["pnl"].to_numpy()[:2], [14036.25, 9165.0], atol=1e-8)
    assert trades["pnl"][2] is None
    np.testing.assert_allclose(trades["commission"].to_numpy(), [213.75, 235.0, 122.5], atol=1e-9)
    assert result.total_commission == pytest.approx(571.25, abs=1e-9)
    assert result.exposure == 0.5
    traded = 9500 * 10.5 + 9500 * 12 + 9400 * 12 + 9400 * 13 + 9800 * 12.5
    assert result.turnover == pytest.approx(traded / np.mean(equity) * 252 / 8, rel=1e-12)

    # Buy and hold: 95 lots at open[1], never sold.
    np.testing.assert_allclose(result.benchmark_equity, [100_000, *(cash1 + 9500 * close[1:])], atol=1e-8)
    assert result.benchmark_returns[0] == 0.0
    np.testing.assert_allclose(result.benchmark_returns[1:],
                               result.benchmark_equity[1:] / result.benchmark_equity[:-1] - 1, rtol=1e-12)


def test_long_short_ledger_by_hand() -> None:
    cfg = BacktestSettings(initial_capital=10_000, commission=0.002, lot_size=10, threshold=0.005,
                           allow_short=True)
    open_ = np.array([20, 20, 22, 21, 19, 18, 18.5])
    close = np.array([20, 21, 21.5, 20, 18.5, 18.2, 19])
    pred = np.array([0.01, 0.003, -0.01, -0.02, 0.02, -0.004, 0.01])  # signals 1 0 -1 -1 1 0 1
    result = backtest(_days(7), open_, close, pred, cfg)

    cash = 10_000 - 490 * 20 * 1.002  # long 49 lots at open[1]: floor(10000 / 20.04 / 10) = 49
    after_long = cash + 490 * 22 * 0.998  # sold at open[2]: 10938.84
    short = after_long + 510 * 21 * 0.998  # short floor(10938.84 / 21.042 / 10) = 51 lots at open[3]
    covered = short - 510 * 18 * 1.002  # covered at open[5] ...
    relong = covered - 680 * 18 * 1.002  # ... and long floor(12429.06 / 18.036 / 10) = 68 lots at the same open
    final = relong + 680 * 18.5 * 0.998  # sold at open[6]
    expected = [10_000, cash + 490 * 21, after_long, short - 510 * 20, short - 510 * 18.5, relong + 680 * 18.2,
                final]
    np.testing.assert_allclose(result.equity, expected, rtol=0, atol=1e-8)
    np.testing.assert_allclose(result.equity, [10000, 10470.4, 10938.84, 11427.42, 12192.42, 12540.58,
                                               12719.42], rtol=0, atol=1e-8)
    assert result.position.tolist() == [0, 490, 0, -510, -510, 680, 0]
    trades = result.trades
    assert trades["side"].to_list() == ["long", "short", "long"]
    assert trades["shares"].to_list() == [490, 510, 680]
    assert trades["entry_price"].to_list() == [20.0, 21.0, 18.0]
    assert trades["exit_price"].to_list() == [22.0, 18.0, 18.5]
    np.testing.assert_allclose(trades["pnl"].to_numpy(), [938.84, 1490.22, 290.36], atol=1e-8)
    assert trades["pnl"].sum() == pytest.approx(result.equity[-1] - 10_000, abs=1e-8)
    assert result.exposure == pytest.approx(4 / 7)


def test_short_ruin_closes_at_that_close_and_stops() -> None:
    cfg = BacktestSettings(allow_short=True)
    open_ = np.array([10, 10, 12, 20, 30, 25, 26, 27.0])
    close = np.array([10, 11, 15, 25, 28, 26, 26, 27.0])
    pred = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * 0.01
    result = backtest(_days(8), open_, close, pred, cfg)
    short = 100_000 + 9900 * 10 * 0.999  # 99 lots short at open[1]
    np.testing.assert_allclose(result.equity, [100_000, short - 9900 * 11, short - 9900 * 15, 0, 0, 0, 0, 0],
                               atol=1e-8)  # short - 9900 * 25 < 0 at row 3
    assert result.position.tolist() == [0, -9900, -9900, 0, 0, 0, 0, 0]
    assert result.returns[3] == -1.0 and (result.returns[4:] == 0).all()
    assert result.trades.height == 1
    assert result.trades["exit_date"][0] == _days(8)[3].astype(object)
    assert result.trades["exit_price"][0] == 25.0
    assert result.trades["pnl"][0] == pytest.approx(-9900 * 15 - 99 - 247.5, abs=1e-8)


def test_row_zero_is_flat_and_the_last_signal_never_fills() -> None:
    open_, close, _ = _market(6, seed=1)
    pred = np.array([-1, -1, -1, -1, -1, 1.0])
    result = backtest(_days(6), open_, close, pred, DEFAULT)
    assert result.trades.height == 0
    assert (result.equity == DEFAULT.initial_capital).all() and (result.returns == 0).all()
    one = backtest(_days(1), open_[:1], close[:1], np.array([1.0]), DEFAULT)
    assert one.equity.tolist() == [DEFAULT.initial_capital] and one.benchmark_equity.tolist() == [100_000]
    assert one.returns.tolist() == [0.0] and one.turnover == 0.0 and one.exposure == 0.0


def test_unaffordable_lot_never_trades() -> None:
    cfg = BacktestSettings(initial_capital=1_000, lot_size=100)
    open_, close, _ = _market(10, seed=2)
    result = backtest(_days(10), open_, close, np.full(10, 0.01), cfg)
    assert result.trades.height == 0 and result.trades.columns[0] == "entry_date"
    assert (result.equity == 1_000).all() and (result.position == 0).all() and result.total_commission == 0


def test_sizing_says_when_lots_do_not_fit_the_capital() -> None:
    index = np.array([2_000.0, 2_010.0, 1_990.0, 2_050.0])  # an index level: one lot of 100 is 200,000
    never = sizing(index, DEFAULT)
    assert (never.meaningful, never.unaffordable_days, never.fill_days) == (False, 3, 3)
    assert never.max_lot_cost == pytest.approx(100 * 2_050 * 1.001)
    assert "costs more than the capital of 100,000 on every day (up to 205,205)" in never.note
    some = sizing(np.array([900.0, 950.0, 1_000.0, 1_100.0]), DEFAULT)  # 100 x 1,000.0 x 1.001 > 100,000
    assert some.meaningful and some.unaffordable_days == 2 and "on 2 of 3 days" in some.note
    # One lot fits once: buy-and-hold holds 59 % of the capital, the rest stays cash, and that is said.
    once = sizing(np.array([590.0, 590.0, 600.0]), DEFAULT)
    assert once.buy_and_hold_invested == pytest.approx(59_000 / 100_000) and "41% of the capital in cash" in once.note
    assert sizing(index, BacktestSettings(lot_size=1)).note == ""
    assert sizing(index, BacktestSettings(fractional=True)).meaningful


def test_fractional_shares_invest_all_the_cash() -> None:
    open_ = np.array([2_000.0, 2_010.0, 1_990.0, 2_050.0, 2_100.0])
    close = open_ * 1.002
    cfg = BacktestSettings(fractional=True)
    result = backtest(_days(5), open_, close, np.full(5, 0.01), cfg)
    shares = 100_000 / (2_010 * 1.001)
    assert result.position.tolist()[1:] == pytest.approx([shares] * 4)
    assert result.equity[-1] == pytest.approx(shares * close[-1], rel=1e-12)
    # Buy-and-hold then follows the price from its first fill, less one commission.
    assert result.benchmark_equity[-1] / 100_000 == pytest.approx(close[-1] / (2_010 * 1.001), rel=1e-12)
    assert backtest(_days(5), open_, close, np.full(5, 0.01), DEFAULT).trades.height == 0


def test_fill_prices_are_next_opens_and_ignore_the_decision_bar() -> None:
    n = 40
    open_, close, pred = _market(n, seed=3)
    cfg = BacktestSettings(allow_short=True, lot_size=10)
    base = backtest(_days(n), open_, close, pred, cfg)
    days = list(_days(n).astype(object))
    entry_rows = [days.index(d) for d in base.trades["entry_date"].to_list()]
    assert base.trades.height > 5 and min(entry_rows) >= 1
    np.testing.assert_array_equal(base.trades["entry_price"].to_numpy(), open_[entry_rows])
    sig = signals(pred, cfg)
    assert [int(sig[r - 1]) for r in entry_rows] == [1 if s == "long" else -1 for s in base.trades["side"]]
    rng = np.random.default_rng(0)
    for row in entry_rows:
        decided = row - 1
        o, c = open_.copy(), close.copy()
        o[decided] *= rng.uniform(0.5, 1.5)
        c[decided] *= rng.uniform(0.5, 1.5)
        moved = backtest(_days(n), o, c, pred, cfg)
        fill = moved.trades.filter(pl.col("entry_date") == days[row])
        assert fill["entry_price"].to_list() == [open_[row]]


@pytest.mark.parametrize("allow_short", [False, True])
def test_no_row_depends_on_later_prices_or_on_its_own_prediction(allow_short: bool) -> None:
    n = 50
    open_, close, pred = _market(n, seed=4)
    cfg = BacktestSettings(allow_short=allow_short, lot_size=1)
    base = backtest(_days(n), open_, close, pred, cfg)
    rng = np.random.default_rng(1)
    for t in (0, 7, 20, 33, 48):
        o, c, p = open_.copy(), close.copy(), pred.copy()
        o[t + 1:] *= rng.uniform(0.7, 1.3, n - t - 1)
        c[t + 1:] *= rng.uniform(0.7, 1.3, n - t - 1)
        p[t:] = rng.normal(0, 0.01, n - t)  # the prediction at t only acts from open[t + 1]
        other = backtest(_days(n), o, c, p, cfg)
        np.testing.assert_array_equal(other.equity[:t + 1], base.equity[:t + 1])
        np.testing.assert_array_equal(other.position[:t + 1], base.position[:t + 1])


@pytest.mark.parametrize("seed", range(12))
def test_cash_never_negative_and_books_balance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 120))
    open_, close, pred = _market(n, seed=100 + seed)
    cfg = BacktestSettings(initial_capital=float(rng.choice([900, 5_000, 100_000])),
                           commission=float(rng.choice([0.0, 0.001, 0.05])),
                           lot_size=int(rng.choice([1, 10, 100])), threshold=float(rng.choice([0.0, 0.005])),
                           allow_short=bool(seed % 2))
    result = backtest(_days(n), open_, close, pred, cfg)
    cash = result.equity - result.position * close
    assert (cash >= 0).all()
    assert (result.equity >= 0).all()
    trades = result.trades
    if (result.equity > 0).all():
        # Final equity = capital + closed pnl + the open trade marked at the last close less its entry fee.
        open_trade = trades.filter(pl.col("exit_date").is_null())
        sign = np.where(open_trade["side"].to_numpy() == "long", 1.0, -1.0)
        entry = open_trade["entry_price"].to_numpy()
        marked = float(np.sum(sign * open_trade["shares"].to_numpy() * (close[-1] - entry)
                              - open_trade["commission"].to_numpy()))
        realised = float(np.nansum(trades["pnl"].to_numpy()))
        assert result.equity[-1] == pytest.approx(cfg.initial_capital + realised + marked, rel=1e-12)
    assert result.total_commission == pytest.approx(float(trades["commission"].sum()), abs=1e-9)
    assert (trades["shares"] % cfg.lot_size == 0).all() and (trades["shares"] > 0).all()


@pytest.mark.parametrize("allow_short", [False, True])
def test_backtest_many_equals_backtest_per_symbol(allow_short: bool) -> None:
    n_sym, n = 7, 90
    rng = np.random.default_rng(5)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.04, (n_sym, n)), axis=1))
    open_ = close * np.exp(rng.normal(0, 0.01, (n_sym, n)))
    pred = rng.normal(0, 0.01, (n_sym, n))
    pred[2] = np.nan  # a symbol that never trades
    cfg = BacktestSettings(allow_short=allow_short, initial_capital=50_000)
    inputs = (open_.copy(), close.copy(), pred.copy())
    many = backtest_many(open_, close, pred, cfg)
    for name, before, after in zip(("open", "close", "pred"), inputs, (open_, close, pred), strict=True):
        np.testing.assert_array_equal(before, after, err_msg=f"{name} was mutated")
    for i in range(n_sym):
        one = backtest(_days(n), open_[i], close[i], pred[i], cfg)
        np.testing.assert_array_equal(many.equity[i], one.equity)
        np.testing.assert_array_equal(many.returns[i], one.returns)
        np.testing.assert_array_equal(many.position[i], one.position)
        assert many.trades[i] == one.trades.height
        assert many.turnover[i] == pytest.approx(one.turnover, rel=1e-12)
        assert many.exposure[i] == one.exposure
        assert many.total_commission[i] == pytest.approx(one.total_commission, rel=1e-12)
    assert many.trades[2] == 0


def test_signals_threshold_and_nan() -> None:
    pred = np.array([0.02, 0.01, 0.0, -0.01, -0.02, np.nan])
    assert signals(pred, BacktestSettings(threshold=0.01)).tolist() == [1, 0, 0, 0, 0, 0]
    assert signals(pred, BacktestSettings(threshold=0.01, allow_short=True)).tolist() == [1, 0, 0, 0, -1, 0]
    assert signals(pred, BacktestSettings(allow_short=True)).tolist() == [1, 1, 0, -1, -1, 0]


def test_invalid_inputs_are_rejected() -> None:
    open_, close, pred = _market(5, seed=6)
    with pytest.raises(ValueError, match="one shape"):
        backtest(_days(5), open_, close[:4], pred, DEFAULT)
    with pytest.raises(ValueError, match="positive"):
        backtest(_days(5), open_, np.where(np.arange(5) == 2, 0.0, close), pred, DEFAULT)
    with pytest.raises(ValueError, match="increasing"):
        backtest(_days(5)[::-1], open_, close, pred, DEFAULT)
    with pytest.raises(ValueError, match="2-D"):
        backtest_many(open_, close, pred, DEFAULT)


def _assert_identical(one: BacktestResult, other: BacktestResult) -> None:
    """Every field exactly equal: arrays element by element, the trade frames cell by cell."""
    for name in ("dates", "equity", "returns", "position", "benchmark_equity", "benchmark_returns"):
        np.testing.assert_array_equal(getattr(one, name), getattr(other, name), err_msg=name, strict=True)
    assert one.trades.equals(other.trades), (one.trades, other.trades)
    assert (one.turnover, one.exposure, one.total_commission) == (
        other.turnover, other.exposure, other.total_commission)


@pytest.mark.parametrize("cfg", [
    BacktestSettings(), BacktestSettings(allow_short=True, initial_capital=5_000),
    BacktestSettings(lot_size=1, fractional=True), BacktestSettings(lot_size=300, initial_capital=6_000)],
    ids=["long-flat", "long-short-ruin", "fractional", "some-lots-unaffordable"])
def test_backtest_each_is_identical_to_backtest_per_window(cfg: BacktestSettings) -> None:
    rng = np.random.default_rng(8)
    windows = []
    for n in (90, 1, 2, 37, 90, 64):  # lengths differ: shorter windows are padded on the left
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.08, n)))
        open_ = close * np.exp(rng.normal(0, 0.02, n))
        windows.append(Window(_days(n) + int(rng.integers(0, 400)), open_, close, rng.normal(0, 0.01, n)))
    windows[4] = Window(windows[4].dates, windows[4].open, windows[4].close, np.full(90, np.nan))  # never trades
    # A short the price more than doubles against (ruin when shorts are allowed), as in the hand-made ledger.
    windows.append(Window(_days(8), np.array([10, 10, 12, 20, 30, 25, 26, 27.0]),
                          np.array([10, 11, 15, 25, 28, 26, 26, 27.0]), np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * 0.01))
    inputs = [np.array(w.predictions, copy=True) for w in windows]
    each = backtest_each(windows, cfg)
    assert len(each) == len(windows)
    for window, result, before in zip(windows, each, inputs, strict=True):
        np.testing.assert_array_equal(window.predictions, before)
        _assert_identical(result, backtest(window.dates, window.open, window.close, window.predictions, cfg))
    assert sum(r.trades.height for r in each) > 20
    if cfg.allow_short:
        assert any((r.equity == 0).any() for r in each)  # a ruined short: the padded path stops it the same way
    if cfg.lot_size == 300:
        assert any(sizing(w.open, cfg).unaffordable_days for w in windows)
    assert backtest_each([], cfg) == []
    with pytest.raises(ValueError, match="positive"):
        backtest_each([*windows, Window(_days(3), np.ones(3), np.zeros(3), np.zeros(3))], cfg)
