"""Flow `evaluation-pipeline`: predict_test.map over the newest version of every (symbol, model type), plus each
symbol's production model on the same test window, so challengers and champions are compared like for like;
then one backtest_candidates call backtests and scores them all together. Each universe (pooled) version also
predicts the test rows of every symbol of its universe: the evidence its gate reads (universe_evidence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow, unmapped
from prefect.futures import PrefectFuture

from flows.fanout import error_text, gather
from models.pooled import POOLED_FOLDER, is_pooled
from schemas import FeatureSetRef, JobFailure, RunFailed, failed_jobs_message
from settings import Settings
from stores.factory import open_feature_store, open_registry
from stores.features import FeatureStore
from stores.registry import ModelRegistry
from tasks.evaluation.candidates import ModelRef, challengers_and_production, models_to_evaluate
from tasks.evaluation.evaluate import EvaluationResult, predict_test
from tasks.evaluation.pooled import cross_section_updates, pooled_cross_validation
from tasks.evaluation.score import backtest_candidates
from tasks.evaluation.universe import UniverseEvidence, universe_evidence
from tasks.modeling.train import job_types
from tasks.operations.caching import cache_options

__all__ = ["EvaluationOutcome", "evaluation_pipeline"]


@dataclass(frozen=True)
class EvaluationOutcome:
    """Challenger results, each symbol's production result (None when it has none), and failed evaluations."""

    results: list[EvaluationResult] = field(default_factory=list)
    production: dict[str, EvaluationResult | None] = field(default_factory=dict)
    failures: list[JobFailure] = field(default_factory=list)
    jobs: int = 0
    """evaluations run, failed ones included."""
    evidence: list[UniverseEvidence] = field(default_factory=list)
    """each universe version's test predictions over its universe, as a cross-sectional ranking."""


def _universe_refs(model_type: str, version: int, refs: dict[str, FeatureSetRef], registry: ModelRegistry,
                   feature_store: FeatureStore) -> dict[str, FeatureSetRef]:
    """The feature sets of every symbol a pooled version was fitted on: the run's (`refs`), else the current ones in
    the store (a symbol without one is left out)."""
    fitted_on = registry.get(model_type, POOLED_FOLDER, version).metadata.symbols
    return {s: refs[s] if s in refs else feature_store.current(s) for s in sorted(fitted_on)
            if s in refs or feature_store.has(s)}


def _failed(future: PrefectFuture[Any]) -> str | None:
    """The error of a finished future that did not complete, else None."""
    future.wait()
    return None if future.state.is_completed() else error_text(future.state.result(raise_on_failure=False))


@flow(name="evaluation-pipeline", log_prints=True)
def evaluation_pipeline(refs: dict[str, FeatureSetRef], settings: Settings, model_types: list[str] | None = None,
                        universe_refs: dict[str, FeatureSetRef] | None = None) -> EvaluationOutcome:
    """Evaluate every candidate and production model of `refs`' symbols (the watch list) on their test split, and
    each universe version over its universe (`universe_refs`, else the store's current feature sets).

    Ends Failed (RunFailed carrying the outcome) when any evaluation failed, after the others finished.
    """
    models = settings.models.model_copy(update={"model_types": tuple(model_types or settings.models.model_types)})
    registry = open_registry(models)
    per_symbol, pooled = job_types(models)
    plan = models_to_evaluate(list(refs), per_symbol + pooled, registry)
    feature_store = open_feature_store(settings.data)
    known = {**(universe_refs or {}), **refs}
    jobs = plan.models
    versions = list(dict.fromkeys((j.model_type, j.version) for j in jobs if is_pooled(j.model_type)))
    later = cross_section_updates(versions, registry, feature_store) if versions else {}
    # Every version's walk-forward CV and universe evidence, and every candidate's test predictions, start at once:
    # a pooled candidate's predictions wait for its version's CV only.
    universe = {key: _universe_refs(*key, known, registry, feature_store) for key in versions}
    # Cached on what each result depends on (the version, the feature sets' content, the settings it reads, the
    # code), persisted under the cache dir: an unchanged rerun reads them back.
    cached = cache_options(settings.execution)
    evaluation, threads = settings.evaluation, settings.models.threads
    cv = {key: pooled_cross_validation.with_options(**cached).submit(
        *key, universe[key] | {j.symbol: refs[j.symbol] for j in jobs if (j.model_type, j.version) == key},
        evaluation.cross_validation, threads, registry,
        sorted({j.symbol for j in jobs if (j.model_type, j.version) == key})) for key in versions}
    weighed = {key: universe_evidence.with_options(**cached).submit(
        *key, universe[key], threads, registry, settings.model_selection.universe_min_symbols, later.get(key),
        portfolio=evaluation.portfolio, commission=evaluation.backtesting.commission, markets=settings.markets)
        for key in versions}
    futures = predict_test.with_options(**cached).map(
        [j.symbol for j in jobs], [j.model_type for j in jobs], [j.version for j in jobs],
        [refs[j.symbol] for j in jobs], unmapped(evaluation.cross_validation), unmapped(threads), unmapped(registry),
        [cv.get((j.model_type, j.version)) for j in jobs], [later.get((j.model_type, j.version)) for j in jobs])

    def failure(job: ModelRef, error: str) -> JobFailure:  # a failed CV is the real reason its candidates failed
        upstream = _failed(cv[(job.model_type, job.version)]) if is_pooled(job.model_type) else None
        return JobFailure(job.symbol, job.model_type, "evaluate",
                          f"walk-forward CV failed: {upstream}" if upstream else error)

    fanout = gather(list(futures), jobs, name="evaluation-pipeline",
                    describe=lambda p: f"predicted: rmse {p.prediction.rmse:.6f} "
                                       f"DM p {p.against_baseline.p_value:.3f}", failure=failure)
    evidence, evidence_failures = [], []
    for key, future in weighed.items():
        if (error := _failed(future)) is None:
            evidence.append(future.result())
        else:
            failed = JobFailure(POOLED_FOLDER, key[0], "evaluate", f"universe evidence failed: {error}")
            evidence_failures.append(failed)
    scored = backtest_candidates(fanout.results, evaluation, settings.model_selection.weights,
                                 [settings.markets.of(p.symbol) for p in fanout.results])
    challengers, production = challengers_and_production(jobs, scored.results, refs)
    outcome = EvaluationOutcome(challengers, production,
                                plan.failures + evidence_failures + fanout.failures + scored.failures,
                                len(plan.models) + len(plan.failures) + len(versions), evidence)
    if outcome.failures:
        raise RunFailed(failed_jobs_message(outcome.failures, outcome.jobs), outcome)
    return outcome
