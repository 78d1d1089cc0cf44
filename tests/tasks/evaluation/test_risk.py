"""Risk metrics: equal to empyrical-reloaded where it defines them, documented values where it does not."""

from __future__ import annotations

import json
from dataclasses import asdict

import empyrical
import numpy as np
import pytest

from tasks.evaluation.risk import PerformanceMetrics, performance


def _same(ours: float | None, theirs: float) -> None:
    """Equal to 1e-9 relative (1e-12 absolute near zero)."""
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def _series(seed: int, n: int, flat_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Random daily returns (some exactly 0, like flat days) and the equity curve they make from 100000."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0004, 0.02, n)
    returns[rng.random(n) < flat_share] = 0.0
    return returns, 100_000 * np.cumprod(1 + returns)


def _daily(annual: float, periods: int) -> float:
    return (1 + annual) ** (1 / periods) - 1


# (seed, rows, share of exactly-zero returns): long and short series, flat days (ties at the VaR), 3 rows.
CASES = [(0, 600, 0.0), (1, 2500, 0.0), (2, 300, 0.4), (3, 45, 0.2), (4, 3, 0.0), (5, 400, 0.97)]


@pytest.mark.parametrize(("seed", "n", "flat"), CASES)
@pytest.mark.parametrize("rf", [0.0, 0.045])
def test_matches_empyrical(seed: int, n: int, flat: float, rf: float) -> None:
    r, equity = _series(seed, n, flat)
    m = performance(r, equity, [], rf)
    rf_d = _daily(rf, 252)
    _same(m.total_return, empyrical.cum_returns_final(r))
    _same(m.annual_return, empyrical.annual_return(r))
    _same(m.annual_return, empyrical.cagr(r))
    _same(m.annual_volatility, empyrical.annual_volatility(r))
    # empyrical takes the risk-free rate (and Sortino's required return) as a constant per-period return.
    _same(m.sharpe, empyrical.sharpe_ratio(r, risk_free=rf_d))
    _same(m.sortino, empyrical.sortino_ratio(r, required_return=rf_d))
    _same(m.max_drawdown, empyrical.max_drawdown(r))
    _same(m.calmar, empyrical.calmar_ratio(r))
    _same(m.var_95, empyrical.value_at_risk(r))
    _same(m.cvar_95, empyrical.conditional_value_at_risk(r))


def test_matches_empyrical_weekly_periods() -> None:
    r, equity = _series(7, 200)
    m = performance(r, equity, [], 0.03, periods=52)
    rf_w = _daily(0.03, 52)
    _same(m.annual_return, empyrical.annual_return(r, annualization=52))
    _same(m.annual_volatility, empyrical.annual_volatility(r, annualization=52))
    _same(m.sharpe, empyrical.sharpe_ratio(r, risk_free=rf_w, annualization=52))
    _same(m.sortino, empyrical.sortino_ratio(r, required_return=rf_w, annualization=52))
    _same(m.calmar, empyrical.calmar_ratio(r, annualization=52))


def test_hand_values() -> None:
    r = np.array([0.0, 0.1, -0.2, 0.05])
    equity = 1000 * np.cumprod(1 + r)  # 1000, 1100, 880, 924
    m = performance(r, equity, [100.0, -50.0, 0.0, 30.0, np.nan], 0.0)
    assert m.total_return == pytest.approx(0.924 - 1)
    assert m.annual_return == pytest.approx(0.924 ** (252 / 4) - 1)
    assert m.max_drawdown == pytest.approx(880 / 1100 - 1)
    assert m.calmar == pytest.approx(m.annual_return / 0.2)
    assert m.annual_volatility == pytest.approx(np.std(r, ddof=1) * np.sqrt(252))
    assert m.sharpe == pytest.approx(np.mean(r) / np.std(r, ddof=1) * np.sqrt(252))
    assert m.sortino == pytest.approx(np.mean(r) * 252 / (np.sqrt(0.04 / 4) * np.sqrt(252)))
    assert m.var_95 == pytest.approx(-0.2 + 0.15 * 0.2)  # 5th percentile, between -0.2 and 0.0
    assert m.cvar_95 == pytest.approx(-0.2)  # k = floor(3 * 0.05) = 0: the lowest return alone
    # pnl 0 is neither a win nor a loss; NaN (an open trade) is left out.
    assert m.closed_trades == 4
    assert m.win_rate == pytest.approx(2 / 4)
    assert m.profit_factor == pytest.approx(130 / 50)


def test_trade_stats_without_losses_or_trades() -> None:
    r, equity = _series(8, 30)
    winners = performance(r, equity, [10.0, 5.0], 0.0)
    assert winners.win_rate == 1.0 and winners.profit_factor is None and winners.closed_trades == 2
    losers = performance(r, equity, [-10.0], 0.0)
    assert losers.win_rate == 0.0 and losers.profit_factor == 0.0
    none = performance(r, equity, np.array([np.nan]), 0.0)
    assert none.win_rate is None and none.profit_factor is None and none.closed_trades == 0


def _json_clean(m: PerformanceMetrics) -> None:
    values = asdict(m)
    json.dumps(values, allow_nan=False)
    assert all(v is None or np.isfinite(v) for v in values.values())


def test_single_row() -> None:
    m = performance([0.0], [100_000.0], [], 0.05)
    assert (m.total_return, m.annual_return, m.annual_volatility, m.sharpe) == (0.0, 0.0, 0.0, 0.0)
    assert (m.sortino, m.calmar, m.win_rate, m.profit_factor) == (None, None, None, None)
    assert (m.max_drawdown, m.var_95, m.cvar_95) == (0.0, 0.0, 0.0)
    _json_clean(m)


def test_flat_strategy() -> None:
    m = performance(np.zeros(100), np.full(100, 5e4), [], 0.0)
    assert m.sharpe == 0.0 and m.annual_volatility == 0.0 and m.max_drawdown == 0.0
    assert m.sortino is None and m.calmar is None
    # With a risk-free rate every excess return is -rf_d: no dispersion, but a real shortfall below rf.
    with_rf = performance(np.zeros(100), np.full(100, 5e4), [], 0.05)
    assert with_rf.sharpe == 0.0
    assert with_rf.sortino == pytest.approx(-np.sqrt(252))
    _json_clean(m)
    _json_clean(with_rf)


def test_constant_gain_has_no_risk_ratios() -> None:
    r = np.full(20, 0.001)
    m = performance(r, 1000 * np.cumprod(1 + r), [], 0.0)
    assert m.sharpe == 0.0 and m.annual_volatility == 0.0 and m.sortino is None and m.calmar is None
    assert m.max_drawdown == 0.0 and m.total_return == pytest.approx(1.001 ** 20 - 1)
    _json_clean(m)


def test_total_loss_and_overflow_stay_finite() -> None:
    wiped = performance([0.0, -0.5, -1.0, 0.0], [100.0, 50.0, 0.0, 0.0], [-100.0], 0.0)
    assert wiped.total_return == -1.0 and wiped.annual_return == -1.0 and wiped.max_drawdown == -1.0
    assert wiped.calmar == -1.0
    _json_clean(wiped)
    boom = performance([0.0, 999.0], [1.0, 1000.0], [], 0.0)  # 1000x in 2 rows: 1000 ** 126 overflows
    assert boom.annual_return == np.finfo(np.float64).max
    _json_clean(boom)


def test_max_drawdown_counts_a_loss_on_the_first_row() -> None:
    m = performance([-0.1, 0.05], [90.0, 94.5], [], 0.0)
    assert m.max_drawdown == pytest.approx(-0.1)
    assert m.max_drawdown == pytest.approx(empyrical.max_drawdown(np.array([-0.1, 0.05])))


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        performance([], [], [], 0.0)
    with pytest.raises(ValueError, match="one length"):
        performance([0.0, 0.1], [1.0], [], 0.0)
    with pytest.raises(ValueError, match="finite"):
        performance([0.0, np.nan], [1.0, 1.0], [], 0.0)
    with pytest.raises(ValueError, match="risk_free_rate"):
        performance([0.0, 0.1], [1.0, 1.1], [], -1.0)
