"""significance: is a forecast's edge, or a strategy's Sharpe ratio, more than noise? Formulas in docs/metrics.md.

- `diebold_mariano`: one-sided Diebold-Mariano test that forecast A has a lower expected squared error than
  forecast B, with the autocovariances of the loss differential up to lag h - 1 (overlapping h-day labels)
  and Harvey, Leybourne and Newbold's small-sample correction, against Student's t with n - 1 degrees of
  freedom.
- `probabilistic_sharpe`: Bailey and Lopez de Prado's probabilistic Sharpe ratio, the probability that the
  true Sharpe ratio exceeds a benchmark given the sample's length, skewness and kurtosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["DieboldMariano", "diebold_mariano", "probabilistic_sharpe"]


@dataclass(frozen=True)
class DieboldMariano:
    """The test of "A's squared errors are lower than B's" on the same rows."""

    statistic: float
    """HLN-corrected DM statistic; negative when A's mean squared error is lower."""
    p_value: float
    """one-sided: small when A is significantly better than B; 1.0 when the two forecasts never differ."""
    mean_loss_difference: float
    """mean of e_A^2 - e_B^2."""
    rows: int


def _autocovariance(d: npt.NDArray[np.float64], lag: int) -> float:
    centred = d - d.mean()
    return float(np.dot(centred[lag:], centred[:len(d) - lag]) / len(d))


def diebold_mariano(errors_a: npt.ArrayLike, errors_b: npt.ArrayLike, horizon: int = 1) -> DieboldMariano:
    """Test whether forecast A has a lower expected squared error than forecast B.

    Args:
        errors_a: forecast minus actual of A, one per row.
        errors_b: the same for B, on the same rows.
        horizon: forecast horizon in rows; errors of h-step forecasts are autocorrelated up to lag h - 1.

    Raises:
        ValueError: mismatched or non-finite inputs, fewer than 3 rows, or horizon < 1.
    """
    a = np.asarray(errors_a, dtype=np.float64).ravel()
    b = np.asarray(errors_b, dtype=np.float64).ravel()
    if a.shape != b.shape or len(a) < 3:
        raise ValueError(f"need two error series of one length >= 3, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("errors must be finite")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    d = a * a - b * b
    n = len(d)
    mean = float(d.mean())
    lags = min(horizon - 1, n - 1)
    variance = _autocovariance(d, 0) + 2 * sum(_autocovariance(d, k) for k in range(1, lags + 1))
    if variance <= 0 and lags:  # the rectangular window can go negative: fall back to Bartlett weights
        variance = _autocovariance(d, 0) + 2 * sum((1 - k / (lags + 1)) * _autocovariance(d, k)
                                                   for k in range(1, lags + 1))
    if variance <= 0 or not math.isfinite(variance):
        return DieboldMariano(0.0, 1.0, mean, n)  # identical losses: no evidence either way
    correction = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic = mean / math.sqrt(variance / n) * correction
    return DieboldMariano(statistic, float(stats.t.cdf(statistic, df=n - 1)), mean, n)


def probabilistic_sharpe(returns: npt.ArrayLike, benchmark_sharpe: float = 0.0) -> float | None:
    """P(true per-period Sharpe ratio > benchmark_sharpe) from a sample of per-period returns.

    PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2)), with SR the
    non-annualised sample Sharpe ratio (ddof 1) and kurtosis the non-excess one. None when the returns do
    not vary (no Sharpe ratio) or n < 3.
    """
    r = np.asarray(returns, dtype=np.float64).ravel()
    if len(r) < 3 or not np.isfinite(r).all() or r.max() == r.min():
        return None
    sharpe = float(r.mean() / r.std(ddof=1))
    skew = float(stats.skew(r))
    kurtosis = float(stats.kurtosis(r, fisher=False))
    spread = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if spread <= 0:
        return None
    return float(stats.norm.cdf((sharpe - benchmark_sharpe) * math.sqrt(len(r) - 1) / math.sqrt(spread)))
