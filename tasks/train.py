"""plan and train: decide which (symbol, model type) jobs train, then fit each one and register it.

Not cached by Prefect: the registry is the record. `plan_training` skips a job trained less than
`min_hours_between` hours ago unless retraining is forced, before any tuning, so no study is spent on
a model type none of whose jobs will train. No retries: a failed fit is not a glitch.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.base import LABEL
from models.registry import MODEL_MODULES, model_class
from schemas import FeatureSetRef
from settings import ModelsSettings
from stores.features import history_before, read_manifest, read_split
from stores.registry import LocalModelRegistry
from tasks.caching import code_version
from tasks.monitor import measured, resource_logged
from tasks.tune import TuneResult

__all__ = ["TrainJob", "TrainResult", "TrainingPlan", "plan_training", "rmse", "skip_reason", "train"]


@dataclass(frozen=True)
class TrainJob:
    """One unit of the fan-out."""

    symbol: str
    model_type: str

    def __str__(self) -> str:
        return f"{self.model_type:<11} {self.symbol:<8}"


@dataclass(frozen=True)
class TrainResult:
    """What became of one job."""

    symbol: str
    model_type: str
    status: str
    """"trained" or "skipped"."""
    version: int | None = None
    val_rmse: float | None = None
    val_naive_rmse: float | None = None
    """RMSE of always predicting a zero return on the same validation rows."""
    duration_seconds: float = 0.0
    """wall time of the fit alone."""
    reason: str = ""
    wall_seconds: float = 0.0
    """the whole job: reading, fitting, scoring, registering."""
    process_cpu_seconds: float = 0.0
    """CPU time of the whole process during the job (jobs share the process: concurrent ones included)."""
    process_peak_rss_mb: float = 0.0
    """the process's peak resident memory during the job (process-wide: jobs share the process)."""


@dataclass(frozen=True)
class TrainingPlan:
    """The jobs that will train, and the ones skipped (with their reason), decided before tuning."""

    to_train: list[TrainJob]
    skipped: list[TrainResult]

    def symbols(self, model_type: str) -> list[str]:
        """The symbols whose `model_type` job will train."""
        return [job.symbol for job in self.to_train if job.model_type == model_type]


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def skip_reason(last_trained: datetime | None, now: datetime, min_hours_between: float,
                retrain_all: bool) -> str | None:
    """Why a job should be skipped, or None when it should train."""
    if retrain_all or last_trained is None:
        return None
    age_hours = (now - last_trained).total_seconds() / 3600
    if age_hours < min_hours_between:
        return f"trained {age_hours:.1f} h ago (< min_hours_between {min_hours_between:g} h)"
    return None


@task(name="plan-training", cache_policy=NO_CACHE)
@resource_logged
def plan_training(jobs: list[TrainJob], models: ModelsSettings, retrain_all: bool) -> TrainingPlan:
    """Split `jobs` into those to train and those whose model is recent enough to skip."""
    registry = LocalModelRegistry(models.registry_path)
    now, to_train, skipped = datetime.now(UTC), [], []
    for job in jobs:
        reason = skip_reason(registry.last_training_time(job.model_type, job.symbol), now,
                             models.retraining.min_hours_between, retrain_all)
        if reason is None:
            to_train.append(job)
        else:
            skipped.append(TrainResult(job.symbol, job.model_type, "skipped", reason=reason))
    return TrainingPlan(to_train, skipped)


@task(name="train", task_run_name="train-{job.model_type}-{job.symbol}", cache_policy=NO_CACHE)
@resource_logged
def train(job: TrainJob, refs: dict[str, FeatureSetRef], tuned: TuneResult, models: ModelsSettings) -> TrainResult:
    """Fit, score on validation, and register one model."""
    registry = LocalModelRegistry(models.registry_path)
    with measured() as usage:
        trained = _fit_and_register(job, refs[job.symbol], tuned, models, registry)
    return dataclasses.replace(trained, wall_seconds=usage.wall_seconds,
                               process_cpu_seconds=usage.process_cpu_seconds,
                               process_peak_rss_mb=usage.process_peak_rss_mb)


def _fit_and_register(job: TrainJob, ref: FeatureSetRef, tuned: TuneResult, models: ModelsSettings,
                      registry: LocalModelRegistry) -> TrainResult:
    horizon = int(read_manifest(ref)["horizon"])
    train_rows, val_rows = read_split(ref, "train"), read_split(ref, "val")
    context = history_before(ref, val_rows)
    cls = model_class(job.model_type)
    started = time.perf_counter()
    model = cls(ref.features, cls.params_type(**tuned.params), horizon=horizon, seed=models.seed,
                threads=models.threads).fit(train_rows, val_rows)
    duration = time.perf_counter() - started
    actual = val_rows[LABEL].to_numpy()
    metrics = {"val_rmse": rmse(model.predict(val_rows, context=context), actual),
               "val_naive_rmse": rmse(np.zeros_like(actual), actual)}
    version = registry.register(model, job.symbol, metrics=metrics, data_hash=ref.content_hash,
                                code_version=code_version((*MODEL_MODULES, "tasks.train")), duration_seconds=duration)
    return TrainResult(job.symbol, job.model_type, "trained", version=version.version,
                       val_rmse=metrics["val_rmse"], val_naive_rmse=metrics["val_naive_rmse"],
                       duration_seconds=duration, reason=f"{tuned.source} params")
