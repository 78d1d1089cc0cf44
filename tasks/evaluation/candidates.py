"""Which registered versions an evaluation scores, and how its results divide into challengers and the
production models they are compared with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE

from models.pooled import POOLED_FOLDER, is_pooled
from schemas import JobFailure
from stores.registry import ModelRegistry, RegistryError
from tasks.evaluation.evaluate import EvaluationResult
from tasks.operations.monitor import resource_logged

__all__ = ["EvaluationPlan", "ModelRef", "challengers_and_production", "models_to_evaluate"]


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
class EvaluationPlan:
    """The versions to evaluate, and the newer versions that cannot be (their metadata is unreadable)."""

    models: list[ModelRef] = field(default_factory=list)
    failures: list[JobFailure] = field(default_factory=list)


def _newest_readable(registry: ModelRegistry, symbol: str, model_type: str) -> tuple[int | None, list[str]]:
    """The newest version whose metadata reads (for a pooled type: the newest fitted on `symbol`), and an error
    for each newer one that does not read."""
    errors: list[str] = []
    for version in reversed(registry.versions(model_type, symbol)):
        try:
            entry = registry.get(model_type, POOLED_FOLDER if is_pooled(model_type) else symbol, version)
        except RegistryError as exc:
            errors.append(f"v{version}: {exc}")
            continue
        if not is_pooled(model_type) or symbol in entry.metadata.symbols:
            return version, errors
    return None, errors


@task(name="models-to-evaluate", cache_policy=NO_CACHE)
@resource_logged
def models_to_evaluate(symbols: list[str], model_types: list[str], registry: ModelRegistry) -> EvaluationPlan:
    """The newest readable version of each (symbol, model type), and each symbol's production version.

    A newer version with unreadable metadata is a failure, naming the file and the version evaluated instead.
    """
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


def challengers_and_production(jobs: list[ModelRef], results: Iterable[EvaluationResult], symbols: Iterable[str]
                               ) -> tuple[list[EvaluationResult], dict[str, EvaluationResult | None]]:
    """The challengers (the newest version of each (symbol, model type), also when it is the production model
    itself) and each symbol's production result (None when it has none or its evaluation failed)."""
    by_job = {(r.symbol, r.model_type, r.version): r for r in results}
    production = {s: None for s in symbols} | {
        j.symbol: by_job.get((j.symbol, j.model_type, j.version)) for j in jobs if j.production}
    newest = {(s, t): max(v for s2, t2, v in by_job if (s2, t2) == (s, t)) for s, t, _ in by_job}
    return [r for key, r in by_job.items() if newest[key[:2]] == key[2]], production
