"""choose: the significance gate (Holm per family), the universe gate, the production gate, ties, and a reason line
for every candidate."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from tasks.evaluation.backtest import Sizing
from tasks.evaluation.baselines import Baselines
from tasks.evaluation.choose import Decision, choose, choose_champions
from tasks.evaluation.crossval import PredictionMetrics, summarize
from tasks.evaluation.evaluate import Curves, EvaluationResult
from tasks.evaluation.portfolio_figures import Figures, PortfolioResult
from tasks.evaluation.risk import PerformanceMetrics
from tasks.evaluation.significance import DieboldMariano, MeanTest
from tasks.evaluation.universe import UniverseEvidence

ROWS = 120
FITS = Sizing(lot_size=100, fractional=False, capital=100_000.0, fill_days=ROWS - 1, unaffordable_days=0,
              max_lot_cost=5_000.0, buy_and_hold_invested=0.99)


def metrics(rmse: float) -> PredictionMetrics:
    return PredictionMetrics(rmse=rmse, mae=rmse, r2=0.0, directional_accuracy=0.5, ic=0.0, rank_ic=0.0)


FLAT = PerformanceMetrics(total_return=0.0, annual_return=0.0, annual_volatility=0.0, sharpe=0.0, sortino=None,
                          max_drawdown=0.0, calmar=None, win_rate=None, profit_factor=None, var_95=0.0, cvar_95=0.0,
                          closed_trades=0)


def result(model_type: str, composite: float, rmse: float, *, version: int = 1, symbol: str = "VCB",
           zero: float = 0.020, last: float = 0.030, p: float = 0.01, sizing: Sizing = FITS,
           errors: float | None = None, seed: int = 0) -> EvaluationResult:
    """An evaluation whose baselines are zero=0.020 and last_return=0.030 and whose Diebold-Mariano p-value
    against them is `p`, unless told otherwise. Its test-row errors are noise of scale `errors` (default rmse).
    """
    actual = np.random.default_rng(0).normal(0, 0.02, ROWS)  # one test window for every candidate
    predicted = actual + np.random.default_rng(seed + 1).normal(0, errors if errors is not None else rmse, ROWS)
    return EvaluationResult(
        symbol=symbol, model_type=model_type, version=version, data_hash="abc", test_start=date(2025, 1, 2),
        test_end=date(2025, 6, 30), rows=ROWS, horizon=1, prediction=metrics(rmse),
        baselines=Baselines(zero=metrics(zero), last_return=metrics(last)),
        against_baseline=DieboldMariano(-3.0, p, -1e-5, ROWS), sizing=sizing, price_move=0.0,
        strategy=FLAT, buy_and_hold=FLAT, turnover=0.0, exposure=0.0, trades=0, total_commission=0.0,
        cv=summarize([metrics(rmse)]), composite=composite,
        curves=Curves(tuple([date(2025, 1, 2)] * ROWS), tuple(actual), tuple(predicted), (), ()),
    )


def only(decisions: list[Decision], symbol: str = "VCB") -> Decision:
    [decision] = [d for d in decisions if d.symbol == symbol]
    return decision


def line(decision: Decision, name: str) -> str:
    """The one reason line about `name`."""
    [found] = [r for r in decision.reasons if r.startswith(name)]
    return found


def test_the_baseline_gate_is_strict_and_uses_the_better_baseline() -> None:
    # Best baseline is zero at 0.020: 0.025 beats last_return only, 0.020 only ties.
    results = [result("lstm", 0.9, 0.025), result("arima", 0.8, 0.020), result("catboost", 0.1, 0.019)]
    decision = only(choose_champions(results, {}))
    assert (decision.action, decision.model_type, decision.version) == ("promote", "catboost", 1)
    assert ("fails the baseline gate (rmse 0.025 >= best baseline 0.02 (zero), DM p=0.01, Holm-adjusted over 3 "
            "per-symbol candidate(s) 0.03 < 0.05)") in line(decision, "lstm v1")
    assert "fails the baseline gate (rmse 0.02 >= best baseline 0.02 (zero)" in line(decision, "arima v1")
    assert "won (composite 0.1" in line(decision, "catboost v1")
    assert "no production model" in line(decision, "catboost v1")
    assert len(decision.reasons) == 3


def test_an_edge_over_the_baseline_that_is_not_significant_does_not_qualify() -> None:
    results = [result("catboost", 0.9, 0.0199, p=0.30), result("arima", 0.2, 0.015, p=0.02)]
    decision = only(choose_champions(results, {}))
    assert (decision.action, decision.model_type) == ("promote", "arima")
    assert ("fails the baseline gate (rmse 0.0199 < best baseline 0.02 (zero), DM p=0.3, Holm-adjusted over 2 "
            "per-symbol candidate(s) 0.3 >= 0.05)") in line(decision, "catboost v1")
    assert "DM p=0.02, Holm-adjusted over 2 per-symbol candidate(s) 0.04 < 0.05" in line(decision, "arima v1")
    stricter = only(choose_champions(results, {}, level=0.01))
    assert stricter.action == "none" and "Holm-adjusted over 2 per-symbol candidate(s) 0.04 >= 0.01" in line(
        stricter, "arima v1")


def test_one_symbols_candidates_are_a_family_holm_corrects() -> None:
    # p 0.049 alone passes at 0.05; beside a second candidate it is one of two chances and does not (0.098).
    alone = only(choose_champions([result("arima", 0.2, 0.015, p=0.049)], {}))
    assert alone.action == "promote" and "Holm-adjusted over 1 per-symbol candidate(s) 0.049 < 0.05" in line(
        alone, "arima v1")
    two = only(choose_champions([result("arima", 0.2, 0.015, p=0.049), result("lstm", 0.1, 0.021, p=0.6)], {}))
    assert two.action == "none" and "Holm-adjusted over 2 per-symbol candidate(s) 0.098 >= 0.05" in line(
        two, "arima v1")
    # Another symbol's candidates are another family.
    other = choose_champions([result("arima", 0.2, 0.015, p=0.049),
                              result("lstm", 0.1, 0.015, p=0.049, symbol="VIC")], {})
    assert [d.action for d in other] == ["promote", "promote"]


def test_best_composite_wins_among_qualifiers() -> None:
    results = [result("arima", 0.30, 0.015), result("catboost", 0.45, 0.018), result("lstm", 0.40, 0.010)]
    decision = only(choose_champions(results, {}))
    assert (decision.model_type, decision.composite) == ("catboost", 0.45)
    assert "lost to catboost v1 (composite 0.3 < 0.45" in line(decision, "arima v1")
    assert "lost to catboost v1 (composite 0.4 < 0.45" in line(decision, "lstm v1")


def test_ties_go_to_lower_rmse_then_model_type_name_then_version() -> None:
    tied = [result("lstm", 0.5, 0.012), result("transformer", 0.5, 0.011)]
    decision = only(choose_champions(tied, {}))
    assert decision.model_type == "transformer"
    assert "equal composite 0.5, rmse 0.012 > 0.011" in line(decision, "lstm v1")

    same = [result("lstm", 0.5, 0.011), result("arima", 0.5, 0.011, version=3), result("arima", 0.5, 0.011, version=2)]
    decision = only(choose_champions(same, {}))
    assert (decision.model_type, decision.version) == ("arima", 2)
    assert "tie broken by model type name then version" in line(decision, "lstm v1")
    assert "tie broken" in line(decision, "arima v3")
    # The input order does not matter.
    assert choose_champions(list(reversed(same)), {}) == choose_champions(same, {})


def test_the_challenger_must_strictly_and_significantly_beat_production() -> None:
    production = result("arima", 0.50, 0.015, version=4, errors=0.02)
    equal = only(choose_champions([result("catboost", 0.50, 0.012, errors=0.005)], {"VCB": production}))
    assert (equal.action, equal.model_type, equal.version, equal.composite) == ("keep_production", "arima", 4, 0.5)
    assert "best challenger but not above production (composite 0.5 <= 0.5" in line(equal, "catboost v1")
    assert line(equal, "production arima v4").startswith("production arima v4: kept")

    better = only(choose_champions([result("catboost", 0.51, 0.012, errors=0.005)], {"VCB": production}))
    assert (better.action, better.model_type) == ("promote", "catboost")
    assert "won (composite 0.51 > production 0.5, squared errors significantly lower, DM p=" in line(
        better, "catboost v1")
    assert "replaced" in line(better, "production arima v4")

    # A higher composite with errors no smaller than production's (other noise of the same scale): kept.
    noise = only(choose_champions([result("catboost", 0.9, 0.012, errors=0.02, seed=1)], {"VCB": production}))
    assert noise.action == "keep_production"
    assert "squared errors not significantly lower, DM p=" in line(noise, "catboost v1")


def test_a_lot_that_does_not_fit_the_capital_is_said_once() -> None:
    dear = Sizing(lot_size=100, fractional=False, capital=100_000.0, fill_days=ROWS - 1,
                  unaffordable_days=ROWS - 1, max_lot_cost=420_000.0, buy_and_hold_invested=0.0)
    decision = only(choose_champions([result("catboost", 0.01, 0.012, sizing=dear),
                                      result("arima", 0.02, 0.013, sizing=dear)], {}))
    [warning] = [r for r in decision.reasons if r.startswith("backtest: ")]
    assert "costs more than the capital of 100,000 on every day" in warning and "not meaningful" in warning


def test_production_that_is_also_the_best_challenger_is_kept() -> None:
    production = result("catboost", 0.6, 0.012, version=2)
    decision = only(choose_champions([production, result("lstm", 0.4, 0.013)], {"VCB": production}))
    assert (decision.action, decision.model_type, decision.version) == ("keep_production", "catboost", 2)
    assert "already production" in line(decision, "catboost v2")


def test_nothing_qualifies() -> None:
    failing = [result("lstm", 0.9, 0.021), result("arima", 0.9, 0.035)]
    production = result("transformer", 0.2, 0.025, version=7)
    kept = only(choose_champions(failing, {"VCB": production}))
    assert (kept.action, kept.model_type, kept.version) == ("keep_production", "transformer", 7)
    assert "no challenger passes the significance gate" in line(kept, "production transformer v7")
    assert len(kept.reasons) == 3

    nothing = only(choose_champions(failing, {"VCB": None}))
    assert (nothing.action, nothing.model_type, nothing.version, nothing.composite) == ("none", None, None, None)
    assert "nothing to serve" in nothing.reasons[-1] and len(nothing.reasons) == 3
    assert all("DM p=" in reason for reason in nothing.reasons[:2])
    assert "smallest adjusted p=0.02" in nothing.reasons[-1]


def test_symbols_are_decided_independently_and_in_order() -> None:
    results = [result("lstm", 0.4, 0.01, symbol="VIC"), result("arima", 0.3, 0.01, symbol="VCB")]
    production = {"VHM": result("catboost", 0.2, 0.01, symbol="VHM")}
    decisions = choose_champions(results, production)
    assert [(d.symbol, d.action, d.model_type) for d in decisions] == [
        ("VCB", "promote", "arima"), ("VHM", "keep_production", "catboost"), ("VIC", "promote", "lstm")]
    assert "no challenger was evaluated" in decisions[1].reasons[0]


def test_a_production_result_from_another_window_is_refused() -> None:
    production = replace(result("arima", 0.1, 0.01), test_end=date(2025, 5, 30))
    with pytest.raises(ValueError, match="not comparable"):
        choose_champions([result("catboost", 0.5, 0.01)], {"VCB": production})


def test_task_wraps_the_pure_function() -> None:
    results = [result("arima", 0.3, 0.01), result("lstm", 0.4, 0.011)]
    assert choose.fn(results, {"VCB": None}, 0.05) == choose_champions(results, {"VCB": None})
    assert choose.retries == 0


def portfolio(excess: float) -> PortfolioResult:
    """A top-10 portfolio that earned `excess` a year over a flat equal-weight universe."""
    def flat(annual: float) -> Figures:
        return Figures(annual, -0.05, 20.0, 1e5, 5e4, 0.02, 0.01, 0)

    return PortfolioResult("m", 10, 2, 30, ("2025-01-02", "2025-06-30"), (1e9, 1e9), (1e9, 1e9), (1e9, 1e9),
                           flat(excess), flat(0.0), flat(0.0), excess, 1.0, 0.9)


def evidence(model_type: str, ic: float, t: float, version: int = 1, dates: int = 300,
             excess: float | None = 0.05) -> UniverseEvidence:
    """Universe evidence whose daily rank IC test has mean `ic` and statistic `t` (p from a normal tail), and whose
    top-10 portfolio beat the equal-weight universe by `excess` a year (None: no portfolio)."""
    from scipy.stats import norm

    test = MeanTest(ic, ic / t, t, float(norm.sf(t)), 5, dates)
    return UniverseEvidence(model_type, version, 30, dates, 0, 5, "2025-01-02", "2025-06-30", test,
                            DieboldMariano(-1.0, 0.2, -1e-6, dates), None if excess is None else portfolio(excess))


def test_a_universe_model_is_judged_on_its_universe_and_competes_like_any_candidate() -> None:
    results = [result("catboost", 0.2, 0.019), result("catboost-pooled", 0.3, 0.0201, p=0.6, errors=0.001)]
    decision = only(choose_champions(results, {}, evidence=[evidence("catboost-pooled", 0.06, 4.5)]))
    assert (decision.action, decision.model_type) == ("promote", "catboost-pooled")
    won = line(decision, "catboost-pooled v1")
    assert "won (universe model: one model over every symbol of its universe; composite 0.3" in won
    # Its own symbol's window says little (DM p 0.6); the universe's dates decide, Holm-adjusted over its family.
    assert "mean daily rank IC +0.0600 (t +4.50) over 30 symbols and 300 test dates, p 3.4e-06" in won
    assert "Holm-adjusted over 1 universe model(s) 3.4e-06 < 0.05" in won
    assert "on VCB rmse 0.0201 vs zero forecast 0.02, not significantly worse" in won
    own = only(choose_champions([result("catboost", 0.4, 0.019), result("catboost-pooled", 0.3, 0.019)], {},
                                evidence=[evidence("catboost-pooled", 0.06, 4.5)]))
    assert own.model_type == "catboost" and "won (composite 0.4" in line(own, "catboost v1")


def test_a_universe_model_without_evidence_or_with_weak_evidence_fails_the_universe_gate() -> None:
    results = [result("catboost-pooled", 0.3, 0.019, errors=0.001), result("lstm-pooled", 0.2, 0.019, errors=0.001)]
    missing = only(choose_champions(results, {}))
    assert missing.action == "none"
    assert "fails the universe gate (universe gate: catboost-pooled v1: no universe evidence" in line(
        missing, "catboost-pooled v1")
    # Two universe models are one family: t 1.8 alone passes (p 0.036), with a second one it does not (0.072).
    weak = [evidence("catboost-pooled", 0.01, 1.8), evidence("lstm-pooled", 0.0, 0.5)]
    decision = only(choose_champions(results, {}, evidence=weak))
    assert decision.action == "none"
    assert "p 0.0359, Holm-adjusted over 2 universe model(s) 0.0719 >= 0.05" in line(decision, "catboost-pooled v1")
    alone = only(choose_champions(results[:1], {}, evidence=weak[:1]))
    assert alone.action == "promote"


def test_a_universe_model_significantly_worse_than_zero_on_a_symbol_is_not_eligible_there() -> None:
    # Its errors on VCB are twice the size of the returns themselves: significantly worse than predicting zero.
    worse = result("catboost-pooled", 0.3, 0.045, errors=0.04)
    decision = only(choose_champions([worse], {}, evidence=[evidence("catboost-pooled", 0.06, 4.5)]))
    assert decision.action == "none"
    reason = line(decision, "catboost-pooled v1")
    assert reason.startswith("catboost-pooled v1: passes the universe gate, not eligible for VCB (")
    assert "significantly worse (DM p=" in reason


def test_a_universe_model_whose_portfolio_loses_to_the_equal_weight_universe_fails_unless_told_otherwise() -> None:
    results = [result("catboost-pooled", 0.3, 0.0201, errors=0.001)]
    losing = [evidence("catboost-pooled", 0.06, 4.5, excess=-0.031)]
    decision = only(choose_champions(results, {}, evidence=losing))
    assert decision.action == "none"
    assert ("its top-10 portfolio -3.1% a year against the equal-weight universe after costs: not positive"
            in line(decision, "catboost-pooled v1"))
    lenient = only(choose_champions(results, {}, evidence=losing, require_excess=False))
    assert lenient.action == "promote" and "(not required: model_selection.require_positive_excess)" in line(
        lenient, "catboost-pooled v1")
    winning = only(choose_champions(results, {}, evidence=[evidence("catboost-pooled", 0.06, 4.5, excess=0.02)]))
    assert winning.action == "promote" and "portfolio +2.0% a year against the equal-weight universe" in line(
        winning, "catboost-pooled v1")
    untraded = only(choose_champions(results, {}, evidence=[evidence("catboost-pooled", 0.06, 4.5, excess=None)]))
    assert untraded.action == "none" and "no top-k portfolio" in line(untraded, "catboost-pooled v1")
