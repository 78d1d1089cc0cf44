"""tune: Optuna search per model type over all symbols, on walk-forward folds of the train split only.

Studies live in SQLite under the artifacts dir, named by model type and the feature data, so an
interrupted study resumes where it stopped and optuna-dashboard can open it. Several studies run at
once (one task per model type): the storage is created under a file lock before any of them writes.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prefect import task

from models.base import ModelError, ModelParams
from models.pooled import base_type, is_pooled
from models.registry import MODEL_MODULES, model_class
from schemas import FeatureSetRef
from settings import ModelsSettings, OptimizationSettings
from stores.features import read_split
from tasks.data.select_universe import UniverseSelection
from tasks.evaluation.crossval import pooled_walk_forward_metrics, walk_forward_metrics
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

if TYPE_CHECKING:
    import optuna

__all__ = ["TrialProgress", "TuneResult", "configured_params", "cross_validated_rmse", "study_name",
           "study_storage", "trial_symbols", "tune"]

_LOCK_WAIT_SECONDS = 60.0


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
        # A pooled type starts from its base type's configured params.
        configured: dict[str, Any] = {str(k): v for k, v in models.params.items()}.get(base_type(model_type), {})
        return cls.params_type(**configured)
    except ValueError as exc:
        raise ModelError(f"invalid models.params.{model_type}: {exc}") from None


def study_name(model_type: str, refs: dict[str, FeatureSetRef]) -> str:
    """A name that changes with the feature data and with the model's search space (the source of its
    `suggest`), so new data or a new space starts a new study: trials drawn from another space would be
    read back through this one's `suggest`, as parameters they were not scored with."""
    space = inspect.getsource(model_class(model_type).suggest)
    digest = hashlib.sha256("|".join([space, *(f"{s}:{r.content_hash}" for s, r in sorted(refs.items()))]).encode())
    return f"{model_type}-{digest.hexdigest()[:12]}"


def study_storage(path: Path) -> optuna.storages.RDBStorage:
    """The SQLite study storage at `path`, created once however many threads or processes open it at once.

    Creating the tables and the schema-version row is not atomic in SQLite; an exclusive lock on a file
    beside the database serialises it. Writers then wait up to a minute for each other instead of failing.
    """
    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return optuna.storages.RDBStorage(
                f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": _LOCK_WAIT_SECONDS}})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class TrialProgress:
    """Optuna callback: one console line per finished trial and a Prefect progress artifact.

    The line names the model type, trial k/N, the trial's value, the best value so far, the time spent
    and an estimate of the time left (bounded by the study's timeout).
    """

    def __init__(self, model_type: str, trials: int, timeout: float, done_before: int = 0) -> None:
        from prefect.artifacts import create_progress_artifact
        from prefect.context import TaskRunContext

        self.model_type, self.trials, self.timeout, self.done_before = model_type, trials, timeout, done_before
        self.finished = 0
        self.started = time.monotonic()
        # A progress artifact needs a run to belong to; called as plain Python (tests) there is none.
        self._artifact = create_progress_artifact(
            0.0, description=f"tune-{model_type}: finished trials") if TaskRunContext.get() else None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.finished += 1
        elapsed = time.monotonic() - self.started
        left = min(elapsed / self.finished * (self.trials - self.finished), max(self.timeout - elapsed, 0.0))
        outcome = f"rmse {trial.value:.6f}" if trial.value is not None else trial.state.name.lower()
        try:
            best = f"best {study.best_value:.6f} (trial {study.best_trial.number})"
        except ValueError:  # no trial has completed yet
            best = "no completed trial yet"
        print(f"tune-{self.model_type}: trial {self.finished}/{self.trials} {outcome}; {best}; "
              f"{_duration(elapsed)} elapsed, ~{_duration(left)} left")
        if self._artifact is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._artifact, 100.0 * self.finished / self.trials)  # type: ignore[arg-type]


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def cross_validated_rmse(model_type: str, params: ModelParams, ref: FeatureSetRef, folds: int,
                         models: ModelsSettings, horizon: int) -> float:
    """Mean RMSE over walk-forward folds of one symbol's train split (the test split is never read)."""
    scores = walk_forward_metrics(model_type, params, read_split(ref, "train"), ref.features, horizon, folds,
                                  models.seed, models.threads)
    return float(np.mean([s.rmse for s in scores]))


def trial_symbols(symbols: list[str], per_trial: int | None, seed: int, trial: int) -> list[str]:
    """The symbols trial number `trial` is scored on: all of them, or `per_trial` drawn without replacement
    by a generator seeded with (seed, trial), so a resumed study redraws the same ones. Sorted."""
    if per_trial is None or per_trial >= len(symbols):
        return list(symbols)
    drawn = np.random.default_rng([seed, trial]).choice(len(symbols), size=per_trial, replace=False)
    return [symbols[i] for i in sorted(drawn)]


def _objective(model_type: str, refs: dict[str, FeatureSetRef], cfg: OptimizationSettings,
               models: ModelsSettings, horizon: int, selection: UniverseSelection | None) -> Any:
    import optuna

    cls = model_class(model_type)
    if is_pooled(model_type):
        if selection is None:
            raise ModelError(f"tuning {model_type}: a pooled model reads the features selected over its universe")
        return _pooled_objective(model_type, refs, cfg, models, horizon, selection.kept)

    def objective(trial: optuna.Trial) -> float:
        params = cls.suggest(trial)
        errors: list[float] = []
        for step, symbol in enumerate(trial_symbols(sorted(refs), cfg.symbols_per_trial, models.seed, trial.number)):
            errors.append(cross_validated_rmse(model_type, params, refs[symbol], cfg.folds, models, horizon))
            trial.report(float(np.mean(errors)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(errors))

    return objective


def _pooled_objective(model_type: str, refs: dict[str, FeatureSetRef], cfg: OptimizationSettings,
                      models: ModelsSettings, horizon: int, features: tuple[str, ...]) -> Any:
    """Mean RMSE over every drawn symbol and walk-forward fold of a pooled model fitted per fold on all of them."""
    cls = model_class(model_type)

    def objective(trial: Any) -> float:
        params = cls.suggest(trial)
        symbols = trial_symbols(sorted(refs), cfg.symbols_per_trial, models.seed, trial.number)
        frames = {s: read_split(refs[s], "train") for s in symbols}
        scores = pooled_walk_forward_metrics(model_type, params, frames, features, horizon, cfg.folds, models.seed,
                                             models.threads, models.pooled_normalisation,
                                             row_budget=models.pooled_max_rows)
        errors = [m.rmse for folds in scores.values() for m in folds]
        if not errors:
            raise ModelError(f"{model_type}: no walk-forward fold of trial {trial.number} had two symbols to fit")
        return float(np.mean(errors))

    return objective


@task(
    name="tune",
    task_run_name="tune-{model_type}",
    cache_policy=ContentInputs() + ModuleSources(
        modules=("tasks.modeling.tune", "tasks.evaluation.crossval", "tasks.data.calendar", *MODEL_MODULES)),
)
@resource_logged
def tune(model_type: str, refs: dict[str, FeatureSetRef], cfg: OptimizationSettings, models: ModelsSettings,
         horizon: int, enabled: bool, selection: UniverseSelection | None = None) -> TuneResult:
    """Best hyper-parameters for `model_type` (or the configured ones when `enabled` is False); a pooled type is
    tuned on `selection`'s features over its universe `refs`."""
    if not enabled:
        return TuneResult(model_type, configured_params(model_type, models).model_dump(mode="json"), "config")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{cfg.storage_path}"
    name = study_name(model_type, refs)
    study = optuna.create_study(
        study_name=name, storage=study_storage(cfg.storage_path), direction="minimize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=models.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    remaining = max(cfg.n_trials - done, 0)
    if remaining:
        scored = len(trial_symbols(sorted(refs), cfg.symbols_per_trial, models.seed, 0))
        each = f"{scored} of {len(refs)} symbols per trial" if scored < len(refs) else f"{len(refs)} symbol(s)"
        print(f"tune-{model_type}: {remaining} trial(s) to run ({done} done before) in study {name}, "
              f"over {each}, stopping after {_duration(cfg.timeout)}")
        progress = TrialProgress(model_type, remaining, cfg.timeout, done)
        study.optimize(_objective(model_type, refs, cfg, models, horizon, selection), n_trials=remaining,
                       timeout=cfg.timeout, catch=(ModelError,), callbacks=[progress])
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise ModelError(f"tuning {model_type}: no trial completed in study {name} ({storage})")
    best = study.best_trial
    params = model_class(model_type).suggest(optuna.trial.FixedTrial(best.params))
    return TuneResult(model_type, params.model_dump(mode="json"), "optuna", best_value=best.value,
                      trials=len(study.trials), study=name, storage=storage,
                      history=[float(t.value) for t in completed if t.value is not None])
