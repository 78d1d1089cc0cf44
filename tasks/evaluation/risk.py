"""risk: performance and risk metrics of a daily return series; every formula is in docs/metrics.md."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tasks.evaluation.significance import probabilistic_sharpe

__all__ = ["TRADING_DAYS", "PerformanceMetrics", "performance"]

TRADING_DAYS = 252
_TAIL = 0.05


@dataclass(frozen=True)
class PerformanceMetrics:
    """Metrics of one return series; every float is finite, None marks a ratio whose denominator is zero."""

    total_return: float
    """prod(1 + r) - 1."""
    annual_return: float
    """CAGR over len(returns) / periods years; -1.0 once wealth is gone."""
    annual_volatility: float
    """Sample std (ddof 1) of returns * sqrt(periods); 0.0 for fewer than 2 returns."""
    sharpe: float
    """mean(r - rf_daily) / std(r - rf_daily, ddof 1) * sqrt(periods); 0.0 when that std is 0 or n < 2."""
    sortino: float | None
    """mean(r - rf_daily) * periods / downside risk (empyrical); None when downside risk is 0 or n < 2."""
    max_drawdown: float
    """Deepest fall of equity below its running peak, as a fraction (<= 0)."""
    calmar: float | None
    """annual_return / |max_drawdown|; None when max_drawdown is 0."""
    win_rate: float | None
    """Closed trades with pnl > 0 / closed trades; None without closed trades."""
    profit_factor: float | None
    """Sum of winning pnl / |sum of losing pnl|; None when no closed trade lost money."""
    var_95: float
    """5th percentile of daily returns (linear interpolation), a loss is negative."""
    cvar_95: float
    """Mean of the floor((n - 1) * 0.05) + 1 lowest daily returns (empyrical's tail)."""
    closed_trades: int
    """Closed trades that win_rate and profit_factor count."""
    psr: float | None = None
    """Probabilistic Sharpe ratio: P(true Sharpe > 0) given n, skewness and kurtosis of the excess returns;
    None when they do not vary."""


def _finite(value: float) -> float:
    """Clip an overflow to the largest float so results stay finite (JSON-safe)."""
    return float(np.clip(value, -sys.float_info.max, sys.float_info.max))


def _max_drawdown(returns: npt.NDArray[np.float64], equity: npt.NDArray[np.float64]) -> float:
    """Deepest drop below the running peak of equity, the capital before the first return included."""
    growth = 1.0 + returns[0]
    if growth > 0:
        # The peak starts at the equity before the first return, like empyrical's anchored curve.
        wealth = np.concatenate([[equity[0] / growth], equity])
        floor = 0.0
    else:
        wealth, floor = equity, -1.0
    peak = np.maximum.accumulate(wealth)
    positive = peak > 0
    drawdown = np.where(positive, wealth / np.where(positive, peak, 1.0) - 1.0, 0.0)
    return float(min(0.0, floor, drawdown.min()))


def _trade_stats(trades_pnl: npt.ArrayLike) -> tuple[float | None, float | None, int]:
    """Win rate, profit factor and count of closed trades; NaN pnl (open trades) is ignored."""
    pnl = np.asarray(trades_pnl, dtype=np.float64).ravel()
    pnl = pnl[~np.isnan(pnl)]
    if len(pnl) == 0:
        return None, None, 0
    gross_loss = -float(pnl[pnl < 0].sum())
    profit_factor = _finite(float(pnl[pnl > 0].sum()) / gross_loss) if gross_loss > 0 else None
    return float((pnl > 0).sum() / len(pnl)), profit_factor, len(pnl)


def performance(returns: npt.ArrayLike, equity: npt.ArrayLike, trades_pnl: npt.ArrayLike,
                risk_free_rate: float, periods: int = TRADING_DAYS) -> PerformanceMetrics:
    """Metrics of daily simple `returns`, the `equity` curve they come from and the pnl of each trade.

    Args:
        returns: one simple return per row, as BacktestResult.returns.
        equity: equity at each row, same length.
        trades_pnl: pnl of each trade; NaN (a trade still open) is left out.
        risk_free_rate: annual; compounded to a daily rate (1 + rf) ** (1 / periods) - 1.
        periods: rows per year.

    Raises:
        ValueError: empty or mismatched inputs, non-finite returns or equity, rf <= -1 or periods < 1.
    """
    r = np.asarray(returns, dtype=np.float64).ravel()
    e = np.asarray(equity, dtype=np.float64).ravel()
    if len(r) == 0 or r.shape != e.shape:
        raise ValueError(f"returns and equity must be non-empty and of one length, got {len(r)} and {len(e)}")
    if not (np.isfinite(r).all() and np.isfinite(e).all()):
        raise ValueError("returns and equity must be finite")
    if not (risk_free_rate > -1 and periods >= 1):
        raise ValueError(f"need risk_free_rate > -1 and periods >= 1, got {risk_free_rate} and {periods}")
    n = len(r)
    with np.errstate(over="ignore"):
        total = _finite(float(np.prod(1.0 + r)) - 1.0)
        annual = -1.0 if total <= -1.0 else _finite(float(np.power(1.0 + total, 1.0 / (n / periods))) - 1.0)
    excess = r - ((1.0 + risk_free_rate) ** (1.0 / periods) - 1.0)
    # Equal values can leave a std of ~1e-18 around a rounded mean: treat them as exactly no dispersion.
    volatility = 0.0 if n < 2 or r.max() == r.min() else _finite(np.std(r, ddof=1) * np.sqrt(periods))
    flat_excess = n < 2 or excess.max() == excess.min()
    sharpe = 0.0 if flat_excess else _finite(excess.mean() / np.std(excess, ddof=1) * np.sqrt(periods))
    downside = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2)) * np.sqrt(periods))
    sortino = _finite(excess.mean() * periods / downside) if n > 1 and downside > 0 else None
    max_drawdown = _max_drawdown(r, e)
    calmar = _finite(annual / abs(max_drawdown)) if max_drawdown < 0 else None
    win_rate, profit_factor, closed = _trade_stats(trades_pnl)
    cut = int((n - 1) * _TAIL)
    return PerformanceMetrics(
        total_return=total, annual_return=annual, annual_volatility=volatility, sharpe=sharpe,
        sortino=sortino, max_drawdown=max_drawdown, calmar=calmar, win_rate=win_rate,
        profit_factor=profit_factor, var_95=float(np.percentile(r, 100 * _TAIL)),
        cvar_95=float(np.mean(np.partition(r, cut)[:cut + 1])), closed_trades=closed,
        psr=None if flat_excess else probabilistic_sharpe(excess))
