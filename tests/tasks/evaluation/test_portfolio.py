"""The top-k portfolio backtest: exchange rules by hand, an event-driven loop and vectorbt as independent checks."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from benchmarks.portfolio import random_panel, reference_top_k
from settings import Market, MarketSettings, PortfolioSettings
from tasks.evaluation.portfolio import Panel, Rules, Run, limits, simulate
from tasks.evaluation.portfolio_figures import trade_ranking
from tasks.evaluation.strategies import BuyAndHold, EqualWeight, TopK, effective_k

HOSE = MarketSettings()
US = MarketSettings(default="XNYS")


def _panel(close: list[list[float]], score: list[list[float]], open_: list[list[float]] | None = None) -> Panel:
    """(sessions, symbols) lists; opens default to the previous close."""
    c = np.array(close, dtype=np.float64)
    o = np.array(open_, dtype=np.float64) if open_ is not None else np.vstack([c[:1], c[:-1]])
    days = np.datetime64("2024-01-01") + np.arange(len(c))
    return Panel(days, tuple(f"S{i}" for i in range(c.shape[1])), o, c, np.array(score, dtype=np.float64))


def _top(panel: Panel, rules: Rules, k: int, n_drop: int = 1) -> Run:
    return simulate(panel, rules, [TopK(panel.score, k, n_drop, rules)])[0]


NAN = math.nan
FLAT = [[10.0, 20.0, 30.0, 40.0]] * 5


def test_a_symbol_closing_at_its_ceiling_is_not_bought_the_next_session() -> None:
    close = [[10.0, 20.0, 30.0, 40.0], [10.7, 20.0, 30.0, 40.0], [10.7, 20.0, 30.0, 40.0], [10.7, 20.0, 30.0, 40.0]]
    score = [[NAN] * 4, [3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0], [NAN] * 4]
    panel = _panel(close, score)
    run = _top(panel, Rules.of(panel.symbols, HOSE, 0.001, 1e6), k=1)
    assert run.bought[2, 0] == 0 and run.bought[2, 1] > 0  # S0 closed +7 % on session 1: S1, the next best, instead
    free = _top(panel, Rules.of(panel.symbols, HOSE, 0.001, 1e6, band=False), k=1)
    assert free.bought[2, 0] > 0


def test_a_symbol_closing_at_its_floor_is_not_sold_the_next_session() -> None:
    close = [[10.0, 20.0, 30.0, 40.0], [10.0, 20.0, 30.0, 40.0], [10.0, 20.0, 30.0, 40.0], [9.3, 20.0, 30.0, 40.0],
             [9.3, 20.0, 30.0, 40.0], [9.3, 20.0, 30.0, 40.0]]
    score = [[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0], [0.0, 2.0, 1.0, 3.0],
             [0.0, 2.0, 1.0, 3.0], [NAN] * 4]
    panel = _panel(close, score)
    run = _top(panel, Rules.of(panel.symbols, HOSE, 0.001, 1e6), k=1)
    assert run.bought[1, 0] > 0
    assert run.sold[4, 0] == 0 and run.sold[5, 0] == run.bought[1, 0]  # floor close on session 3: sold a day late


def test_shares_bought_are_sold_from_the_settlement_day_on() -> None:
    score = [[3.0, 2.0, 1.0, 0.0], [0.0, 2.0, 1.0, 3.0], [0.0, 2.0, 1.0, 3.0], [0.0, 2.0, 1.0, 3.0], [NAN] * 4]
    panel = _panel(FLAT, score)
    hose = _top(panel, Rules.of(panel.symbols, HOSE, 0.001, 1e6), k=1)
    assert hose.bought[1, 0] > 0 and hose.sold[2, 0] == 0 and hose.sold[3, 0] == hose.bought[1, 0]  # T+2
    assert hose.bought[3, 3] > 0 and hose.bought[2].sum() == 0  # no slot is free while S0 waits
    us = _top(panel, Rules.of(panel.symbols, US, 0.001, 1e6), k=1)
    assert us.sold[2, 0] == us.bought[1, 0]


def test_orders_are_whole_lots_that_the_cash_pays_for() -> None:
    panel = random_panel(30, 200, seed=3)
    for lots in (True, False):
        rules = Rules.of(panel.symbols, HOSE, 0.001, 1e7, lots=lots)
        for run in simulate(panel, rules, [TopK(panel.score, 10, 2, rules), EqualWeight(rules), BuyAndHold(rules)]):
            lot = 100 if lots else 1
            assert np.all(run.bought % lot == 0) and np.all(run.sold % lot == 0)
            assert (run.cash >= 0).all() and (run.shares >= 0).all()
            assert run.bought.sum() > 0


def test_one_lot_dearer_than_the_cash_is_left_out_and_counted() -> None:
    panel = _panel([[500.0, 600.0]] * 4, [[2.0, 1.0]] * 4)
    run = _top(panel, Rules.of(panel.symbols, HOSE, 0.001, 40_000), k=1)  # a lot of 100 costs 50,000
    assert run.bought.sum() == 0 and run.unaffordable == 3 and run.equity[-1] == 40_000  # once a session


def test_tax_is_paid_on_sales_only() -> None:
    close = [[10.0, 20.0, 30.0, 40.0]] * 2 + [[10.5, 20.0, 30.0, 40.0]] * 3  # S0 sells at session 3's open, 10.5
    score = [[3.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0], [0.0, 2.0, 1.0, 3.0], [NAN] * 4, [NAN] * 4]
    panel = _panel(close, score)
    run = _top(panel, Rules.of(panel.symbols, HOSE, 0.001, 1e6), k=1)
    q = run.bought[1, 0]
    assert q == math.floor(1e6 / (10 * 1.001) / 100) * 100
    assert run.tax[1] == 0 and run.commission[1] == pytest.approx(q * 10 * 0.001)
    assert run.sold[3, 0] == q and run.tax[3] == pytest.approx(q * 10.5 * 0.001)
    assert run.tax.sum() == pytest.approx(q * 10.5 * 0.001)
    bought_s3 = run.bought[3, 3]
    cash = 1e6 - q * 10 * 1.001 + q * 10.5 * (1 - 0.001 - 0.001) - bought_s3 * 40 * 1.001
    assert run.cash[3] == pytest.approx(cash, rel=1e-12)


def test_limits_need_a_previous_close_and_a_band() -> None:
    close = np.array([[10.0, 10.0], [10.7, 9.3], [NAN, 9.3], [11.45, 8.0]])
    up, down = limits(close, np.array([0.07, np.inf]))
    assert up[:, 0].tolist() == [False, True, False, True]  # +7 % against the last close, across the hole
    assert not up[:, 1].any() and not down[:, 1].any()  # no band: never at a limit


@pytest.mark.parametrize(("band", "lots", "market"), [(True, True, HOSE), (False, True, HOSE), (True, False, HOSE),
                                                      (False, False, US)])
def test_equals_an_event_driven_loop(band: bool, lots: bool, market: MarketSettings) -> None:
    panel = random_panel(25, 300, seed=11)
    rules = Rules.of(panel.symbols, market, 0.001, 1e8, band=band, lots=lots)
    fast = _top(panel, rules, k=6, n_drop=2).equity
    np.testing.assert_allclose(fast, reference_top_k(panel, rules, 6, 2), rtol=1e-12)


@pytest.mark.parametrize(("band", "lots", "commission"), [(True, True, 0.001), (False, False, 0.001),
                                                          (True, True, 0.0), (False, True, 0.003)])
def test_equity_equals_vectorbt_on_the_same_orders(band: bool, lots: bool, commission: float) -> None:
    pd = pytest.importorskip("pandas")
    vbt = pytest.importorskip("vectorbt")
    panel = random_panel(20, 250, seed=5)
    rules = Rules.of(panel.symbols, HOSE, commission, 1e8, band=band, lots=lots)
    runs = simulate(panel, rules, [TopK(panel.score, 5, 2, rules), EqualWeight(rules), BuyAndHold(rules)])
    bar = np.isfinite(panel.open) & np.isfinite(panel.close)
    marks = pd.DataFrame(np.where(bar, panel.close, np.nan)).ffill().bfill()
    for run in runs:
        orders = run.bought - run.sold
        fees = commission + np.where(orders < 0, rules.sell_tax[None, :], 0.0)
        pf = vbt.Portfolio.from_orders(
            marks, size=pd.DataFrame(np.where(orders != 0, orders, np.nan)),
            price=pd.DataFrame(np.where(bar, panel.open, marks)), size_type="amount", fees=pd.DataFrame(fees),
            init_cash=rules.capital, cash_sharing=True, group_by=True, call_seq="auto", freq="1D")
        assert pf.orders.count() == int((orders != 0).sum())  # vectorbt filled every order in full
        np.testing.assert_allclose(pf.value().to_numpy(), run.equity, rtol=1e-9)
        np.testing.assert_allclose(pf.cash().to_numpy(), run.cash, rtol=1e-9, atol=1e-6)


def test_unequal_histories_trade_on_the_shared_calendar() -> None:
    rng = np.random.default_rng(2)
    frames = []
    for i, start in enumerate([0, 0, 0, 0, 40, 80]):
        days = np.datetime64("2024-01-01") + np.arange(start, 120)
        close = 30 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
        frames.append(pl.DataFrame({"date": days, "symbol": f"S{i}", "open": close, "close": close,
                                    "predicted": rng.normal(size=len(days))}))
    result = trade_ranking("m", pl.concat(frames), PortfolioSettings(top_k=3, n_drop=1), HOSE, 0.001)
    assert result is not None and len(result.dates) == 120 and result.symbols == 6 and result.k == 3
    panel = Panel.of(pl.concat(frames))
    assert np.isnan(panel.close[:80, 5]).all() and np.isfinite(panel.close[80:, 5]).all()
    rules = Rules.of(panel.symbols, HOSE, 0.001, 1e8)
    top, _, held = simulate(panel, rules, [TopK(panel.score, 3, 1, rules), EqualWeight(rules), BuyAndHold(rules)])
    assert top.shares[:81, 5].sum() == 0  # nothing held before the symbol's first bar, nor bought on it
    assert held.shares[-1, 4] == 0 and held.shares[-1, 5] == 0  # buy-and-hold buys what trades at its first fill
    assert result.excess_return == pytest.approx(result.strategy.annual_return - result.equal_weight.annual_return)


def test_a_ranking_needs_two_symbols_and_k_at_most_half_of_them() -> None:
    one = pl.DataFrame({"date": np.datetime64("2024-01-01") + np.arange(5), "symbol": "A", "open": 1.0,
                        "close": 1.0, "predicted": 0.0})
    assert trade_ranking("m", one, PortfolioSettings(), HOSE, 0.001) is None
    assert effective_k(10, 30) == 10 and effective_k(10, 3) == 1 and effective_k(10, 12) == 6


def test_a_market_without_rules_settles_at_once_and_has_no_tax() -> None:
    us = Market(timezone="America/New_York", lot_size=1, price_band=None, sell_tax=0.0, settlement_days=0)
    rules = Rules.of(("A", "B"), MarketSettings(default="US", exchanges={"US": us}), 0.001, 1e5)
    assert rules.lot.tolist() == [1.0, 1.0] and np.isinf(rules.band).all() and rules.settlement.tolist() == [0, 0]
