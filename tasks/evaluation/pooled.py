"""The walk-forward cross-validation of a pooled model: one run over all its symbols, scored per symbol."""

from __future__ import annotations

from prefect import task

from models.pooled import POOLED_FOLDER
from models.registry import MODEL_MODULES, model_class
from schemas import FeatureSetRef
from settings import CrossValidationSettings, ModelsSettings
from stores.registry import ModelRegistry
from tasks.evaluation.crossval import CVSummary, pooled_walk_forward_metrics, summarize
from tasks.evaluation.evaluate import cv_history
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

__all__ = ["pooled_cross_validation"]


@task(name="crossval-pooled", task_run_name="crossval-{model_type}-v{version}",
      cache_policy=ContentInputs() + ModuleSources(modules=(
          "tasks.evaluation.pooled", "tasks.evaluation.crossval", "tasks.evaluation.evaluate", "tasks.data.split",
          *MODEL_MODULES)))
@resource_logged
def pooled_cross_validation(model_type: str, version: int, refs: dict[str, FeatureSetRef],
                            cross_validation: CrossValidationSettings, models: ModelsSettings,
                            registry: ModelRegistry) -> dict[str, CVSummary]:
    """Refit pooled `model_type` (v`version`'s params and features) per walk-forward fold on the history of
    every symbol of `refs` at once; each symbol's summary of its own scored blocks."""
    entry = registry.get(model_type, POOLED_FOLDER, version)
    params = model_class(model_type).params_type(**entry.metadata.params)
    scores = pooled_walk_forward_metrics(model_type, params, {s: cv_history(ref) for s, ref in refs.items()},
                                         entry.metadata.features, entry.metadata.horizon, cross_validation.cv_folds,
                                         entry.metadata.seed, models.threads)
    return {symbol: summarize(folds) for symbol, folds in scores.items()}
