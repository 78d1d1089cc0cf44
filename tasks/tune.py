"""tune: Optuna search per model type over all symbols, on walk-forward folds of the train split only.

Studies live in SQLite under the artifacts dir, named by model type and the feature data, so an
interrupted study resumes where it stopped and optuna-dashboard can open it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from prefect import task

from models.base import ModelError, ModelParams
from models.registry import MODEL_MODULES, model_class
from schemas import FeatureSetRef
from settings import ModelsSettings, OptimizationSettings
from stores.features import read_split
from tasks.caching import ContentInputs, ModuleSources
from tasks.crossval import walk_forward_metrics
from tasks.monitor import resource_logged

if TYPE_CHECKING:
    import optuna

__all__ = ["TuneResult", "configured_params", "cross_validated_rmse", "study_name", "tune"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneResult:
    """The hyper-parameters a model type trains with, and where they came from."""

    model_type: str
    params: dict[str, Any]
    source: str
    """"optuna" (best trial) or "config" (models.params, tuning off)."""
    best_value: float | None = None
    """mean walk-forward validation RMSE of the best trial."""
    trials: int = 0
    study: str = ""
    storage: str = ""
    history: list[float] = field(default_factory=list)
    """value of every completed trial, in order."""


def configured_params(model_type: str, models: ModelsSettings) -> ModelParams:
    """The params type of `model_type` built from `models.params`; errors name the bad key."""
    cls = model_class(model_type)
    try:
        configured: dict[str, Any] = {str(k): v for k, v in models.params.items()}.get(model_type, {})
        return cls.params_type(**configured)
    except ValueError as exc:
        raise ModelError(f"invalid models.params.{model_type}: {exc}") from None


def study_name(model_type: str, refs: dict[str, FeatureSetRef]) -> str:
    """A name that changes with the feature data, so new data starts a new study."""
    digest = hashlib.sha256("|".join(f"{s}:{r.content_hash}" for s, r in sorted(refs.items())).encode())
    return f"{model_type}-{digest.hexdigest()[:12]}"


def cross_validated_rmse(model_type: str, params: ModelParams, ref: FeatureSetRef, folds: int,
                         models: ModelsSettings, horizon: int) -> float:
    """Mean RMSE over walk-forward folds of one symbol's train split (the test split is never read)."""
    scores = walk_forward_metrics(model_type, params, read_split(ref, "train"), ref.features, horizon, folds,
                                  models.seed, models.threads)
    return float(np.mean([s.rmse for s in scores]))


def _objective(model_type: str, refs: dict[str, FeatureSetRef], cfg: OptimizationSettings,
               models: ModelsSettings, horizon: int) -> Any:
    import optuna

    cls = model_class(model_type)

    def objective(trial: optuna.Trial) -> float:
        params = cls.suggest(trial)
        errors: list[float] = []
        for step, (_, ref) in enumerate(sorted(refs.items())):
            errors.append(cross_validated_rmse(model_type, params, ref, cfg.folds, models, horizon))
            trial.report(float(np.mean(errors)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(errors))

    return objective


@task(
    name="tune",
    task_run_name="tune-{model_type}",
    cache_policy=ContentInputs() + ModuleSources(
        modules=("tasks.tune", "tasks.crossval", "tasks.split", *MODEL_MODULES)),
)
@resource_logged
def tune(model_type: str, refs: dict[str, FeatureSetRef], cfg: OptimizationSettings, models: ModelsSettings,
         horizon: int, enabled: bool) -> TuneResult:
    """Best hyper-parameters for `model_type` (or the configured ones when `enabled` is False)."""
    if not enabled:
        return TuneResult(model_type, configured_params(model_type, models).model_dump(mode="json"), "config")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg.storage_path.parent.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{cfg.storage_path}"
    name = study_name(model_type, refs)
    study = optuna.create_study(
        study_name=name, storage=storage, direction="minimize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=models.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    remaining = max(cfg.n_trials - done, 0)
    if remaining:
        log.info("tuning %s: %d trial(s) to run (%d done before) in study %s", model_type, remaining, done, name)
        study.optimize(_objective(model_type, refs, cfg, models, horizon), n_trials=remaining,
                       timeout=cfg.timeout, catch=(ModelError,))
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise ModelError(f"tuning {model_type}: no trial completed in study {name} ({storage})")
    best = study.best_trial
    params = model_class(model_type).suggest(optuna.trial.FixedTrial(best.params))
    return TuneResult(model_type, params.model_dump(mode="json"), "optuna", best_value=best.value,
                      trials=len(study.trials), study=name, storage=storage,
                      history=[float(t.value) for t in completed if t.value is not None])
