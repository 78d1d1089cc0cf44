"""significance: Diebold-Mariano against an independent t-test, its size and power; the Newey-West mean test and
Holm's adjustment against statsmodels; the probabilistic Sharpe."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tasks.evaluation.significance import (
    diebold_mariano,
    holm,
    loss_differential_test,
    newey_west_lags,
    newey_west_mean,
    probabilistic_sharpe,
)


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


def test_newey_west_mean_matches_statsmodels_hac_on_an_autocorrelated_series() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(5)
    x = np.empty(500)
    previous = 0.0
    for t in range(500):  # AR(1): ordinary standard errors would understate the uncertainty of the mean
        previous = x[t] = 0.4 * previous + rng.normal()
    x += 0.12
    for lags in (0, 3, 8):
        test = newey_west_mean(x, lags)
        reference = sm.OLS(x, np.ones_like(x)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
        assert test.standard_error == pytest.approx(float(reference.bse[0]), rel=1e-12)
        assert test.statistic == pytest.approx(float(reference.tvalues[0]), rel=1e-12)
        assert test.p_value == pytest.approx(stats.t.sf(test.statistic, df=499), rel=1e-12)
    # With no lags it is the one-sample t-test, up to the n versus n - 1 in the variance.
    plain = stats.ttest_1samp(x, 0.0, alternative="greater")
    assert newey_west_mean(x, 0).statistic == pytest.approx(plain.statistic * math.sqrt(500 / 499), rel=1e-12)
    assert newey_west_lags(250, horizon=1) == 4 and newey_west_lags(250, horizon=10) == 10
    constant = newey_west_mean(np.full(10, 0.2), 2)
    assert (constant.statistic, constant.p_value) == (0.0, 0.0)
    with pytest.raises(ValueError, match="at least 3 finite"):
        newey_west_mean([0.1, float("nan"), 0.2], 1)


def test_newey_west_mean_has_its_size_under_the_null_and_power_under_an_effect() -> None:
    rng = np.random.default_rng(6)
    null = [newey_west_mean(rng.normal(0, 0.2, 300), 4).p_value < 0.05 for _ in range(2000)]
    assert 0.035 < np.mean(null) < 0.065
    planted = [newey_west_mean(rng.normal(0.04, 0.2, 300), 4).p_value < 0.05 for _ in range(500)]
    assert np.mean(planted) > 0.9  # t about 3.5


def test_holm_matches_statsmodels_and_keeps_the_order_given() -> None:
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.2, 0.001, 0.04]
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)
    assert holm([0.049]) == [0.049]
    assert holm([0.03, 0.04]) == [0.06, 0.06]
    assert holm([0.4, 0.9, 0.7]) == [1.0, 1.0, 1.0]
    assert holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_holm_keeps_the_familywise_error_rate() -> None:
    # Four true nulls at 5 %: rejecting any raw p < 0.05 errs in about 19 % of families, Holm in at most 5 %.
    rng = np.random.default_rng(7)
    families = rng.random((20000, 4))
    raw = (families < 0.05).any(axis=1).mean()
    adjusted = np.mean([min(holm(f)) < 0.05 for f in families[:5000]])
    assert 0.17 < raw < 0.21 and 0.035 < adjusted < 0.06


def test_loss_differential_test_is_dm_on_given_differences() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(0, 1.0, 200), rng.normal(0, 1.2, 200)
    assert loss_differential_test(a**2 - b**2, 1) == diebold_mariano(a, b, 1)
