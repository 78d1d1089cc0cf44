"""choose: per symbol, the champion among the evaluated challengers, or the production model kept.

A challenger qualifies when it passes the significance gate (tasks/evaluation/gate.py): a per-symbol model beats
the better naive baseline on the symbol's test window, Holm-adjusted across the symbol's own candidates; a universe
(pooled) model ranks its universe's symbols on the run's test dates significantly, Holm-adjusted across the run's
universe models, and is not significantly worse than the zero forecast on the symbol. The qualifier with the
highest composite wins; equal composites go to the lower test RMSE, then the model type name, then the lower
version. The winner replaces production only with a strictly higher composite on the same test window and
significantly lower squared errors than production's there. Every candidate gets one reason line with the
numbers behind its fate, raw and adjusted p-values included; a lot that does not fit the capital is said in a
line of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from prefect import task

from models.pooled import is_pooled
from tasks.evaluation.evaluate import EvaluationResult
from tasks.evaluation.gate import Verdict, gate_verdicts
from tasks.evaluation.significance import DieboldMariano, diebold_mariano
from tasks.evaluation.universe import UniverseEvidence
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

__all__ = ["Action", "Decision", "choose", "choose_champions"]

Action = Literal["promote", "keep_production", "none"]


@dataclass(frozen=True)
class Decision:
    """What becomes of one symbol's production model, and why."""

    symbol: str
    action: Action
    """"promote" a challenger, "keep_production" the current model, or "none": nothing to serve."""
    model_type: str | None
    """the promoted or kept model; None with action "none"."""
    version: int | None
    composite: float | None
    """the chosen or kept model's composite score on the test window."""
    reasons: tuple[str, ...]
    """one line per candidate (and one for production, if any), with the numbers behind the decision."""


def _name(r: EvaluationResult) -> str:
    return f"{r.model_type} v{r.version}"


def _scope(r: EvaluationResult) -> str:
    """Which scope a winner is: one model for this symbol, or one over every symbol of its universe."""
    return "universe model: one model over every symbol of its universe; " if is_pooled(r.model_type) else ""


def _p(test: DieboldMariano, level: float) -> str:
    return f"DM p={test.p_value:.3g} {'<' if test.p_value < level else '>='} {level:g}"


def _baseline_line(r: EvaluationResult, level: float) -> str:
    relation = "<" if r.prediction.rmse < r.baselines.best_rmse else ">="
    return (f"rmse {r.prediction.rmse:.6g} {relation} best baseline {r.baselines.best_rmse:.6g} "
            f"({r.baselines.best_name}), {_p(r.against_baseline, level)}")


def _rank(r: EvaluationResult) -> tuple[float, float, str, int]:
    return -r.composite, r.prediction.rmse, r.model_type, r.version


def _lost_line(loser: EvaluationResult, winner: EvaluationResult, verdict: Verdict) -> str:
    if loser.composite < winner.composite:
        why = f"composite {loser.composite:.6g} < {winner.composite:.6g}"
    elif loser.prediction.rmse > winner.prediction.rmse:
        why = f"equal composite {loser.composite:.6g}, rmse {loser.prediction.rmse:.6g} > {winner.prediction.rmse:.6g}"
    else:
        why = f"equal composite {loser.composite:.6g} and rmse, tie broken by model type name then version"
    return f"{_name(loser)}: lost to {_name(winner)} ({why}; {verdict.text})"


def _failed_line(r: EvaluationResult, verdict: Verdict) -> str:
    if verdict.ineligible:
        return f"{_name(r)}: passes the universe gate, not eligible for {r.symbol} ({verdict.text})"
    gate = "universe gate" if is_pooled(r.model_type) else "baseline gate"
    return f"{_name(r)}: fails the {gate} ({verdict.text})"


def _same_window(r: EvaluationResult, production: EvaluationResult) -> None:
    if (r.data_hash, r.test_start, r.test_end, r.rows) != (
            production.data_hash, production.test_start, production.test_end, production.rows):
        raise ValueError(
            f"{r.symbol}: {_name(r)} was evaluated on {r.test_start}..{r.test_end} ({r.rows} rows, data "
            f"{r.data_hash[:12]}) but production {_name(production)} on {production.test_start}.."
            f"{production.test_end} ({production.rows} rows, data {production.data_hash[:12]}): not comparable")


def _against(challenger: EvaluationResult, production: EvaluationResult) -> DieboldMariano:
    """DM test of the challenger's squared errors against production's on their common test rows."""
    actual = np.asarray(challenger.curves.actual)
    return diebold_mariano(np.asarray(challenger.curves.predicted) - actual,
                           np.asarray(production.curves.predicted) - actual, challenger.horizon)


def _sizing_lines(results: list[EvaluationResult]) -> list[str]:
    """The lot-size warning of the symbol's test window, once (every candidate trades the same bars)."""
    notes = dict.fromkeys(r.sizing.note for r in results if r.sizing.note)
    return [f"backtest: {note}" for note in notes]


def _keep(symbol: str, production: EvaluationResult, reasons: list[str], why: str, level: float) -> Decision:
    return Decision(symbol, "keep_production", production.model_type, production.version, production.composite,
                    (*reasons, f"production {_name(production)}: kept, {why} (composite {production.composite:.6g}, "
                               f"{_baseline_line(production, level)})"))


def _decide(symbol: str, candidates: list[EvaluationResult], production: EvaluationResult | None,
            verdicts: Mapping[tuple[str, str, int], Verdict], level: float) -> Decision:
    if production is not None:
        for r in candidates:
            _same_window(r, production)
    verdict = {(r.model_type, r.version): verdicts[(symbol, r.model_type, r.version)] for r in candidates}
    sizing = _sizing_lines(candidates + ([production] if production else []))
    ranked = sorted((r for r in candidates if verdict[(r.model_type, r.version)].passed), key=_rank)
    failed = [_failed_line(r, verdict[(r.model_type, r.version)]) for r in candidates
              if not verdict[(r.model_type, r.version)].passed] + sizing
    if not ranked:
        if production is None:
            best = min((v.adjusted for v in verdict.values()), default=None)
            smallest = f" (smallest adjusted p={best:.3g})" if best is not None else ""
            return Decision(symbol, "none", None, None, None, (
                *failed, f"no production model and no challenger passes the significance gate{smallest}: "
                         "nothing to serve"))
        return _keep(symbol, production, failed,
                     "no challenger passes the significance gate" if candidates else
                     "no challenger was evaluated", level)
    winner = ranked[0]
    won = verdict[(winner.model_type, winner.version)]
    losers = [_lost_line(r, winner, verdict[(r.model_type, r.version)]) for r in ranked[1:]]
    if production is None:
        return Decision(symbol, "promote", winner.model_type, winner.version, winner.composite, (
            f"{_name(winner)}: won ({_scope(winner)}composite {winner.composite:.6g}, best of {len(ranked)} "
            f"qualifying; {won.text}; no production model)", *losers, *failed))
    if (winner.model_type, winner.version) == (production.model_type, production.version):
        return _keep(symbol, production, [
            f"{_name(winner)}: best challenger, and already production ({won.text})",
            *losers, *failed], "it is also the best challenger", level)
    versus = _against(winner, production)
    if winner.composite <= production.composite or versus.p_value >= level:
        why = (f"composite {winner.composite:.6g} <= {production.composite:.6g}"
               if winner.composite <= production.composite else
               f"composite {winner.composite:.6g} > {production.composite:.6g} but squared errors not "
               f"significantly lower, {_p(versus, level)}")
        return _keep(symbol, production, [
            f"{_name(winner)}: best challenger but not above production ({why}; {won.text})",
            *losers, *failed], f"the best challenger {_name(winner)} does not beat it", level)
    return Decision(symbol, "promote", winner.model_type, winner.version, winner.composite, (
        f"{_name(winner)}: won ({_scope(winner)}composite {winner.composite:.6g} > production "
        f"{production.composite:.6g}, squared errors significantly lower, {_p(versus, level)}; {won.text})",
        *losers, *failed,
        f"production {_name(production)}: replaced (composite {production.composite:.6g}, "
        f"{_baseline_line(production, level)})"))


def choose_champions(results: list[EvaluationResult], production: Mapping[str, EvaluationResult | None],
                     level: float = 0.05, evidence: Sequence[UniverseEvidence] = (),
                     require_excess: bool = True) -> list[Decision]:
    """One Decision per symbol seen in `results` or `production`, in symbol order.

    Args:
        results: evaluated challengers, any symbols.
        production: symbol -> the production model's evaluation on the same test window, or None.
        level: the significance level of the gate and of the test against production
            (model_selection.significance_level).
        evidence: each universe candidate's evidence over its universe (tasks/evaluation/universe.py); a universe
            candidate without it fails the gate.
        require_excess: a universe candidate also needs its top-k portfolio to beat the equal-weight universe after
            costs (model_selection.require_positive_excess).

    Raises:
        ValueError: a challenger and its production model were evaluated on different test windows or data.
    """
    verdicts = gate_verdicts(results, {(e.model_type, e.version): e for e in evidence}, level, require_excess)
    symbols = sorted({r.symbol for r in results} | set(production))
    return [_decide(s, [r for r in results if r.symbol == s], production.get(s), verdicts, level) for s in symbols]


@task(name="choose", cache_policy=ContentInputs() + ModuleSources(
    modules=("tasks.evaluation.choose", "tasks.evaluation.gate", "tasks.evaluation.evaluate",
             "tasks.evaluation.significance", "tasks.evaluation.universe", "tasks.evaluation.portfolio_figures")))
@resource_logged
def choose(results: list[EvaluationResult], production: dict[str, EvaluationResult | None],
           level: float = 0.05, evidence: list[UniverseEvidence] | None = None,
           require_excess: bool = True) -> list[Decision]:
    """Pick each symbol's champion (see choose_champions)."""
    return choose_champions(results, production, level, evidence or [], require_excess)
