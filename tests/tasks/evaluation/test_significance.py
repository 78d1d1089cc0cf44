"""significance: Diebold-Mariano against an independent t-test, its size and power; the probabilistic Sharpe."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tasks.evaluation.significance import diebold_mariano, probabilistic_sharpe


def test_one_step_dm_is_the_one_sided_t_test_of_the_loss_differential() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1.0, 250), rng.normal(0, 1.1, 250)
    result = diebold_mariano(a, b, horizon=1)
    reference = stats.ttest_1samp(a**2 - b**2, 0.0, alternative="less")
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.mean_loss_difference == pytest.approx(float(np.mean(a**2 - b**2)))


def test_a_real_edge_is_significant_and_noise_is_not() -> None:
    """AR(1) returns: predicting 0.7 r_t beats the zero forecast; a forecast of pure noise does not."""
    rng = np.random.default_rng(1)
    r = np.zeros(401)
    for t in range(1, 401):
        r[t] = 0.7 * r[t - 1] + rng.normal(0, 0.01)
    actual, known = r[1:], r[:-1]
    zero = -actual
    assert diebold_mariano(0.7 * known - actual, zero).p_value < 1e-6
    noise = rng.normal(0, 0.002, len(actual))
    assert diebold_mariano(noise - actual, zero).p_value > 0.5  # noise only adds error


@pytest.mark.parametrize("horizon", [1, 5])
def test_the_size_holds_for_equally_good_forecasts_with_overlapping_labels(horizon: int) -> None:
    """Two equally good h-step forecasts: about `level` of the tests reject, not more (HAC lags h - 1)."""
    rng = np.random.default_rng(2)
    rejections = 0
    trials = 400
    for _ in range(trials):
        # h-step errors overlap: moving sums of h shocks, as for h-day returns sampled daily.
        shocks = rng.normal(0, 1, (2, 300 + horizon - 1))
        a, b = (np.convolve(s, np.ones(horizon), mode="valid") for s in shocks)
        rejections += diebold_mariano(a, b, horizon).p_value < 0.05
    assert 0.02 <= rejections / trials <= 0.09


def test_identical_forecasts_give_no_evidence_and_bad_input_is_refused() -> None:
    e = np.random.default_rng(3).normal(0, 1, 50)
    assert diebold_mariano(e, e).p_value == 1.0
    with pytest.raises(ValueError, match="one length"):
        diebold_mariano(e, e[:-1])
    with pytest.raises(ValueError, match="finite"):
        diebold_mariano(np.append(e[:-1], np.nan), e)
    with pytest.raises(ValueError, match="horizon"):
        diebold_mariano(e, e, horizon=0)


def test_probabilistic_sharpe_follows_bailey_and_lopez_de_prado() -> None:
    rng = np.random.default_rng(4)
    r = rng.standard_t(5, 500) * 0.01 + 0.0008
    sr = r.mean() / r.std(ddof=1)
    g3 = np.mean((r - r.mean()) ** 3) / np.mean((r - r.mean()) ** 2) ** 1.5
    g4 = np.mean((r - r.mean()) ** 4) / np.mean((r - r.mean()) ** 2) ** 2
    expected = 0.5 * (1 + math.erf((sr * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
                                   / math.sqrt(2)))
    assert probabilistic_sharpe(r) == pytest.approx(expected, rel=1e-12)
    assert probabilistic_sharpe(r, benchmark_sharpe=sr) == pytest.approx(0.5)
    # More days of the same edge make it more certain; a losing strategy is unlikely to have a positive one.
    assert probabilistic_sharpe(np.tile(r, 4)) > probabilistic_sharpe(r)
    assert probabilistic_sharpe(-r) < 0.5
    assert probabilistic_sharpe(np.zeros(30)) is None and probabilistic_sharpe(r[:2]) is None
