"""significance: is a forecast's edge, or a strategy's Sharpe ratio, more than noise? Formulas in docs/metrics.md.

- `diebold_mariano`: one-sided Diebold-Mariano test that forecast A has a lower expected squared error than
  forecast B, with the autocovariances of the loss differential up to lag h - 1 (overlapping h-day labels)
  and Harvey, Leybourne and Newbold's small-sample correction, against Student's t with n - 1 degrees of
  freedom.
- `newey_west_mean`: one-sided test that a series' mean (a daily information coefficient) is above zero, with a
  Newey-West (Bartlett kernel) standard error, against Student's t with n - 1 degrees of freedom.
- `holm`: Holm's step-down adjustment of p-values for a family of tests (familywise error rate).
- `probabilistic_sharpe`: Bailey and Lopez de Prado's probabilistic Sharpe ratio, the probability that the
  true Sharpe ratio exceeds a benchmark given the sample's length, skewness and kurtosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["DieboldMariano", "MeanTest", "diebold_mariano", "holm", "loss_differential_test", "newey_west_lags",
           "newey_west_mean", "probabilistic_sharpe"]


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
    return loss_differential_test(a * a - b * b, horizon)


def loss_differential_test(differential: npt.ArrayLike, horizon: int = 1) -> DieboldMariano:
    """The Diebold-Mariano test on a loss differential d_t = loss_A,t - loss_B,t (one value per date, e.g. a day's
    mean squared error over many symbols less the zero forecast's): small p when A's losses are lower.

    Raises:
        ValueError: fewer than 3 or non-finite values, or horizon < 1.
    """
    d = np.asarray(differential, dtype=np.float64).ravel()
    if len(d) < 3 or not np.isfinite(d).all():
        raise ValueError(f"need at least 3 finite loss differences, got {len(d)}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
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


@dataclass(frozen=True)
class MeanTest:
    """The test of "the series' mean is above zero" with a Newey-West standard error."""

    mean: float
    standard_error: float
    """Newey-West: sqrt((g0 + 2 sum_k (1 - k / (L + 1)) g_k) / n), autocovariances g_k of the series."""
    statistic: float
    """mean / standard_error; 0.0 when the series does not vary."""
    p_value: float
    """one-sided, P(T_{n-1} >= statistic): small when the mean is significantly above zero."""
    lags: int
    n: int


def newey_west_lags(n: int, horizon: int = 1) -> int:
    """Lags of the Newey-West window: the usual floor(4 (n / 100)^(2/9)), and never fewer than `horizon`."""
    return max(horizon, int(4 * (n / 100) ** (2 / 9)))


def newey_west_mean(values: npt.ArrayLike, lags: int) -> MeanTest:
    """Test whether the mean of `values` is above zero, allowing autocorrelation up to `lags`.

    Raises:
        ValueError: fewer than 3 values, non-finite values, or lags < 0.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if len(x) < 3 or not np.isfinite(x).all():
        raise ValueError(f"need at least 3 finite values, got {len(x)}")
    if lags < 0:
        raise ValueError(f"lags must be >= 0, got {lags}")
    n, mean = len(x), float(x.mean())
    lags = min(lags, n - 1)
    variance = _autocovariance(x, 0) + 2 * sum((1 - k / (lags + 1)) * _autocovariance(x, k)
                                               for k in range(1, lags + 1))
    if variance <= 0 or not math.isfinite(variance):
        return MeanTest(mean, 0.0, 0.0, 1.0 if mean <= 0 else 0.0, lags, n)
    error = math.sqrt(variance / n)
    statistic = mean / error
    return MeanTest(mean, error, statistic, float(stats.t.sf(statistic, df=n - 1)), lags, n)


def holm(p_values: npt.ArrayLike) -> list[float]:
    """Holm's adjusted p-values, in the order given: the k-th smallest p becomes max over j <= k of
    min(1, (m - j + 1) p_(j)). Rejecting where the adjusted p is below a level keeps the chance of any false
    rejection in the family at or below that level.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


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
