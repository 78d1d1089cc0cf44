"""Flow `evaluation-pipeline`: predict_test.map over the newest version of every (symbol, model type), plus each
symbol's production model on the same test window, so challengers and champions are compared like for like;
then one backtest_candidates call backtests and scores them all together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow, unmapped

from flows.fanout import error_text, gather
from models.pooled import POOLED_FOLDER, is_pooled
from schemas import FeatureSetRef, JobFailure, RunFailed, failed_jobs_message
from settings import Settings
from stores.factory import open_feature_store, open_registry
from stores.features import FeatureStore
from stores.registry import ModelRegistry
from tasks.evaluation.candidates import ModelRef, challengers_and_production, models_to_evaluate
from tasks.evaluation.crossval import CVSummary
from tasks.evaluation.evaluate import EvaluationResult, predict_test
from tasks.evaluation.pooled import cross_section_updates, pooled_cross_validation
from tasks.evaluation.score import backtest_candidates
from tasks.modeling.train import job_types

__all__ = ["EvaluationOutcome", "evaluation_pipeline"]


@dataclass(frozen=True)
class EvaluationOutcome:
    """Challenger results, each symbol's production result (None when it has none), and failed evaluations."""

    results: list[EvaluationResult] = field(default_factory=list)
    production: dict[str, EvaluationResult | None] = field(default_factory=dict)
    failures: list[JobFailure] = field(default_factory=list)
    jobs: int = 0
    """evaluations run, failed ones included."""


def _pooled_cross_validation(jobs: list[ModelRef], refs: dict[str, FeatureSetRef], settings: Settings,
                             registry: ModelRegistry, feature_store: FeatureStore
                             ) -> tuple[dict[tuple[str, int], dict[str, CVSummary]], list[JobFailure]]:
    """One walk-forward run per pooled version to evaluate, refitted over every symbol it was fitted on (the
    current feature sets of those outside `refs`), as the version itself was; a failed run fails the evaluations
    of its version."""
    groups: dict[tuple[str, int], list[str]] = {}
    for job in (j for j in jobs if is_pooled(j.model_type)):
        groups.setdefault((job.model_type, job.version), []).append(job.symbol)
    futures = {}
    for key, symbols in groups.items():
        fitted_on = registry.get(key[0], POOLED_FOLDER, key[1]).metadata.symbols
        cv_refs = {s: refs[s] if s in refs else feature_store.current(s) for s in sorted({*fitted_on, *symbols})
                   if s in refs or feature_store.has(s)}
        futures[key] = pooled_cross_validation.submit(key[0], key[1], cv_refs, settings.evaluation.cross_validation,
                                                      settings.models, registry)
    done, failures = {}, []
    for key, future in futures.items():
        future.wait()
        if future.state.is_completed():
            done[key] = future.result()
        else:
            error = error_text(future.state.result(raise_on_failure=False))
            failures += [JobFailure(s, key[0], "evaluate", f"walk-forward CV failed: {error}") for s in groups[key]]
    return done, failures


@flow(name="evaluation-pipeline", log_prints=True)
def evaluation_pipeline(refs: dict[str, FeatureSetRef], settings: Settings,
                        model_types: list[str] | None = None) -> EvaluationOutcome:
    """Evaluate every candidate and production model of `refs`' symbols on their test split.

    Ends Failed (RunFailed carrying the outcome) when any evaluation failed, after the others finished.
    """
    models = settings.models.model_copy(update={"model_types": tuple(model_types or settings.models.model_types)})
    registry = open_registry(models)
    per_symbol, pooled = job_types(models)
    plan = models_to_evaluate(list(refs), per_symbol + pooled, registry)
    feature_store = open_feature_store(settings.data)
    cv, cv_failures = _pooled_cross_validation(plan.models, refs, settings, registry, feature_store)
    jobs = [j for j in plan.models if not is_pooled(j.model_type) or (j.model_type, j.version) in cv]
    pooled_jobs = [(j.model_type, j.version) for j in jobs if is_pooled(j.model_type)]
    later = cross_section_updates(pooled_jobs, registry, feature_store) if pooled_jobs else {}
    futures = predict_test.map([j.symbol for j in jobs], [j.model_type for j in jobs], [j.version for j in jobs],
                               [refs[j.symbol] for j in jobs], unmapped(settings.evaluation.cross_validation),
                               unmapped(models), unmapped(registry),
                               [cv[(j.model_type, j.version)][j.symbol] if is_pooled(j.model_type) else None
                                for j in jobs], [later.get((j.model_type, j.version)) for j in jobs])
    fanout = gather(list(futures), jobs, name="evaluation-pipeline",
                    describe=lambda p: f"predicted: rmse {p.prediction.rmse:.6f} "
                                       f"DM p {p.against_baseline.p_value:.3f}",
                    failure=lambda job, error: JobFailure(job.symbol, job.model_type, "evaluate", error))
    scored = backtest_candidates(fanout.results, settings.evaluation, settings.model_selection.weights,
                                 [settings.markets.of(p.symbol) for p in fanout.results])
    challengers, production = challengers_and_production(jobs, scored.results, refs)
    outcome = EvaluationOutcome(challengers, production,
                                plan.failures + cv_failures + fanout.failures + scored.failures,
                                len(plan.models) + len(plan.failures))
    if outcome.failures:
        raise RunFailed(failed_jobs_message(outcome.failures, outcome.jobs), outcome)
    return outcome
