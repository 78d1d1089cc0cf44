"""Flow `evaluation-pipeline`: predict_test.map over the newest version of every (symbol, model type), plus each
symbol's production model on the same test window, so challengers and champions are compared like for like;
then one backtest_candidates call backtests and scores them all together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows.fanout import gather
from schemas import FeatureSetRef, JobFailure, RunFailed, failed_jobs_message
from settings import Settings
from stores.registry import LocalModelRegistry, RegistryError
from tasks.evaluation.evaluate import EvaluationResult, predict_test
from tasks.evaluation.score import backtest_candidates
from tasks.operations.monitor import resource_logged

__all__ = ["EvaluationOutcome", "EvaluationPlan", "ModelRef", "evaluation_pipeline", "models_to_evaluate"]


@dataclass(frozen=True)
class ModelRef:
    """One registered version to evaluate."""

    symbol: str
    model_type: str
    version: int
    production: bool = False

    def __str__(self) -> str:
        return f"{self.model_type:<11} {self.symbol:<8} v{self.version}" + (" (production)" if self.production else "")


@dataclass(frozen=True)
class EvaluationOutcome:
    """Challenger results, each symbol's production result (None when it has none), and failed evaluations."""

    results: list[EvaluationResult] = field(default_factory=list)
    production: dict[str, EvaluationResult | None] = field(default_factory=dict)
    failures: list[JobFailure] = field(default_factory=list)
    jobs: int = 0
    """evaluations run, failed ones included."""


@dataclass(frozen=True)
class EvaluationPlan:
    """The versions to evaluate, and the newer versions that cannot be (their metadata is unreadable)."""

    models: list[ModelRef] = field(default_factory=list)
    failures: list[JobFailure] = field(default_factory=list)


def _newest_readable(registry: LocalModelRegistry, symbol: str, model_type: str) -> tuple[int | None, list[str]]:
    """The newest version whose metadata reads, and an error for each newer one that does not."""
    errors: list[str] = []
    for version in reversed(registry.versions(model_type, symbol)):
        try:
            return registry.get(model_type, symbol, version).version, errors
        except RegistryError as exc:
            errors.append(f"v{version}: {exc}")
    return None, errors


@task(name="models-to-evaluate", cache_policy=NO_CACHE)
@resource_logged
def models_to_evaluate(symbols: list[str], model_types: list[str], registry_path: str) -> EvaluationPlan:
    """The newest readable version of each (symbol, model type), and each symbol's production version.

    A newer version with unreadable metadata is a failure, naming the file and the version evaluated instead.
    """
    registry = LocalModelRegistry(registry_path)  # type: ignore[arg-type]
    refs, failures = [], []
    for symbol in symbols:
        for model_type in model_types:  # none registered: its training failed, reported by the model pipeline
            version, errors = _newest_readable(registry, symbol, model_type)
            instead = f"v{version} evaluated instead" if version else "no readable version left"
            failures += [JobFailure(symbol, model_type, "evaluate", f"{error}; {instead}") for error in errors]
            if version:
                refs.append(ModelRef(symbol, model_type, version))
        production = registry.alias(symbol, "production")
        if production is not None:
            ref = ModelRef(symbol, production.model_type, production.version)
            # Production is often also the newest version of its type: evaluate it once, flagged.
            refs = [r for r in refs if r != ref] + [ModelRef(symbol, ref.model_type, ref.version, production=True)]
    for failure in failures:
        print(f"cannot evaluate: {failure}")
    return EvaluationPlan(refs, failures)


@flow(name="evaluation-pipeline", log_prints=True)
def evaluation_pipeline(refs: dict[str, FeatureSetRef], settings: Settings,
                        model_types: list[str] | None = None) -> EvaluationOutcome:
    """Evaluate every candidate and production model of `refs`' symbols on their test split.

    Ends Failed (RunFailed carrying the outcome) when any evaluation failed, after the others finished.
    """
    models = settings.models
    plan = models_to_evaluate(list(refs), list(model_types or models.model_types), str(models.registry_path))
    jobs = plan.models
    futures = predict_test.map([j.symbol for j in jobs], [j.model_type for j in jobs], [j.version for j in jobs],
                               [refs[j.symbol] for j in jobs], unmapped(settings.evaluation.cross_validation),
                               unmapped(models))
    fanout = gather(list(futures), jobs, name="evaluation-pipeline",
                    describe=lambda p: f"predicted: rmse {p.prediction.rmse:.6f} "
                                       f"DM p {p.against_baseline.p_value:.3f}",
                    failure=lambda job, error: JobFailure(job.symbol, job.model_type, "evaluate", error))
    scored = backtest_candidates(fanout.results, settings.evaluation, settings.model_selection.weights,
                                 [settings.markets.of(p.symbol) for p in fanout.results])
    by_job = {(r.symbol, r.model_type, r.version): r for r in scored.results}
    production = {s: None for s in refs} | {
        j.symbol: by_job.get((j.symbol, j.model_type, j.version)) for j in jobs if j.production}
    newest = {(s, t): max(v for s2, t2, v in by_job if (s2, t2) == (s, t)) for s, t, _ in by_job}
    # The newest version of each type is the challenger, also when it is the production model itself.
    challengers = [r for key, r in by_job.items() if newest[key[:2]] == key[2]]
    outcome = EvaluationOutcome(challengers, production, plan.failures + fanout.failures + scored.failures,
                                len(jobs) + len(plan.failures))
    if outcome.failures:
        raise RunFailed(failed_jobs_message(outcome.failures, outcome.jobs), outcome)
    return outcome
