"""plan and train: decide which (symbol, model type) jobs train, then fit each one and register it.

Not cached by Prefect: the registry is the record. `plan_training` skips a job trained less than
`min_hours_between` hours ago unless retraining is forced, before any tuning, so no study is spent on
a model type none of whose jobs will train. No retries: a failed fit is not a glitch.

Long fits (networks) run one task run per job (`train`); short fits of `models.grouped_types` run
`models.group_size` jobs per task run (`train_batch`), where a task run's orchestration would rival the fit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.base import LABEL, ModelError
from models.pooled import POOLED_FOLDER, CrossSection, PooledForecaster, is_pooled, pooled_type
from models.registry import MODEL_MODULES, model_class
from schemas import FeatureSetRef, JobFailure
from settings import ModelsSettings
from stores.features import history_before, read_manifest, read_split
from stores.registry import ModelRegistry
from tasks.data.select_universe import UniverseSelection
from tasks.modeling.tune import TuneResult
from tasks.operations.caching import code_version
from tasks.operations.monitor import measured, resource_logged

__all__ = ["TrainBatch", "TrainJob", "TrainResult", "TrainingPlan", "job_types", "plan_training", "pooled_data_hash",
           "rmse", "skip_reason", "train", "train_batch"]


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
    fit_warnings: dict[str, int] = field(default_factory=dict)
    """statsmodels' routine warnings the fit raised, by kind (models/notices.py): counted, never shown one by one."""


@dataclass(frozen=True)
class TrainBatch:
    """Jobs of one short-fitting model type, trained one after another in one task run."""

    model_type: str
    jobs: tuple[TrainJob, ...]
    number: int
    """1-based, of `of` batches of this model type."""
    of: int

    def __str__(self) -> str:
        return f"train-{self.model_type}-batch-{self.number}-of-{self.of}"


@dataclass(frozen=True)
class TrainingPlan:
    """The jobs that will train, and the ones skipped (with their reason), decided before tuning."""

    to_train: list[TrainJob]
    skipped: list[TrainResult]

    def symbols(self, model_type: str) -> list[str]:
        """The symbols whose `model_type` job will train."""
        return [job.symbol for job in self.to_train if job.model_type == model_type]

    def grouped(self, grouped_types: tuple[str, ...], group_size: int,
                workers: int = 1) -> tuple[list[TrainJob], list[TrainBatch]]:
        """The task runs to start: jobs that run alone, and the jobs of `grouped_types` cut into even batches of
        at most `group_size` consecutive jobs, and into at least `workers` batches while there are jobs enough,
        so a small universe still trains in parallel (a batch of one runs alone)."""
        alone = [job for job in self.to_train if job.model_type not in grouped_types]
        batches: list[TrainBatch] = []
        for model_type in dict.fromkeys(job.model_type for job in self.to_train if job.model_type in grouped_types):
            jobs = [job for job in self.to_train if job.model_type == model_type]
            n = max(-(-len(jobs) // group_size), min(workers, len(jobs)))
            groups = [tuple(jobs[i * len(jobs) // n:(i + 1) * len(jobs) // n]) for i in range(n)]
            alone += [group[0] for group in groups if len(group) == 1]
            several = [group for group in groups if len(group) > 1]
            batches += [TrainBatch(model_type, g, i, len(several)) for i, g in enumerate(several, start=1)]
        return alone, batches


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
def plan_training(jobs: list[TrainJob], models: ModelsSettings, retrain_all: bool,
                  registry: ModelRegistry) -> TrainingPlan:
    """Split `jobs` into those to train and those whose model is recent enough to skip."""
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
def train(job: TrainJob, refs: dict[str, FeatureSetRef], tuned: TuneResult, models: ModelsSettings,
          registry: ModelRegistry, selection: UniverseSelection | None = None) -> TrainResult:
    """Fit, score on validation, and register one model in `registry` (a pooled one over `selection`'s symbols,
    reading its features)."""
    return _measured_job(job, refs, tuned, models, registry, selection)


@task(name="train-batch", task_run_name="train-{batch.model_type}-batch-{batch.number}-of-{batch.of}",
      cache_policy=NO_CACHE)
@resource_logged
def train_batch(batch: TrainBatch, refs: dict[str, FeatureSetRef], tuned: TuneResult, models: ModelsSettings,
                registry: ModelRegistry, selection: UniverseSelection | None = None) -> list[TrainResult | JobFailure]:
    """`train` each job of `batch` in turn; a job that fails becomes its JobFailure and the others go on.

    Returns:
        one outcome per job, in the batch's order.
    """
    outcomes: list[TrainResult | JobFailure] = []
    for done, job in enumerate(batch.jobs, start=1):
        outcome: TrainResult | JobFailure
        try:
            result = _measured_job(job, refs, tuned, models, registry, selection)
            outcome, line = result, f"trained: v{result.version}"
        except Exception as exc:  # a failed fit fails its job only (module docstring)
            outcome = JobFailure(job.symbol, job.model_type, "train", f"{type(exc).__name__}: {exc}")
            line = f"FAILED:\n{traceback.format_exc()}"
        outcomes.append(outcome)
        print(f"{batch} [{done}/{len(batch.jobs)}] {job} {line}")
    return outcomes


def _measured_job(job: TrainJob, refs: dict[str, FeatureSetRef], tuned: TuneResult, models: ModelsSettings,
                  registry: ModelRegistry, selection: UniverseSelection | None) -> TrainResult:
    with measured() as usage:
        if is_pooled(job.model_type):
            if selection is None:
                raise ModelError(f"{job.model_type}: a pooled model reads the features selected over its universe; "
                                 "none was given")
            trained = _fit_and_register_pooled(job, {s: refs[s] for s in selection.symbols}, tuned, models,
                                               registry, selection)
        else:
            trained = _fit_and_register(job, refs[job.symbol], tuned, models, registry)
    return dataclasses.replace(trained, wall_seconds=usage.wall_seconds,
                               process_cpu_seconds=usage.process_cpu_seconds,
                               process_peak_rss_mb=usage.process_peak_rss_mb)


def _fit_and_register(job: TrainJob, ref: FeatureSetRef, tuned: TuneResult, models: ModelsSettings,
                      registry: ModelRegistry) -> TrainResult:
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
                                code_version=code_version((*MODEL_MODULES, "tasks.modeling.train")),
                                duration_seconds=duration,
                                details={"fit_warnings": model.fit_notices} if model.fit_notices else None)
    return TrainResult(job.symbol, job.model_type, "trained", version=version.version,
                       val_rmse=metrics["val_rmse"], val_naive_rmse=metrics["val_naive_rmse"],
                       duration_seconds=duration, reason=f"{tuned.source} params", fit_warnings=model.fit_notices)


def job_types(models: ModelsSettings) -> tuple[list[str], list[str]]:
    """The model types a run trains per symbol, and the pooled ones (one model over every symbol), per
    `models.scope` (per symbol: those of `models.per_symbol_types` too, when set). ARIMA models a single series: it
    has no pooled form."""
    chosen = models.per_symbol_types
    per_symbol: list[str] = [t for t in models.model_types if chosen is None or t in chosen] \
        if models.scope in ("per_symbol", "both") else []
    pooled = [pooled_type(t) for t in models.model_types if t != "arima"] if models.scope in ("pooled", "both") \
        else []
    return per_symbol, pooled


def pooled_data_hash(refs: dict[str, FeatureSetRef]) -> str:
    """What a pooled model was trained on: every symbol's feature set."""
    return hashlib.sha256("".join(f"{s}:{refs[s].content_hash};" for s in sorted(refs)).encode()).hexdigest()


def _span(frames: dict[str, pl.DataFrame]) -> list[str]:
    """The first and last date of any of `frames`."""
    dates = pl.concat([frame.select("date") for frame in frames.values()])["date"]
    return [str(dates.min()), str(dates.max())]


def _fit_and_register_pooled(job: TrainJob, refs: dict[str, FeatureSetRef], tuned: TuneResult,
                             models: ModelsSettings, registry: ModelRegistry,
                             selection: UniverseSelection) -> TrainResult:
    """One model of a pooled type over every symbol of `refs` (its universe), reading `selection`'s features,
    scored on every symbol's val rows."""
    horizons = {int(read_manifest(ref)["horizon"]) for ref in refs.values()}
    if len(horizons) != 1:
        raise ModelError(f"{job.model_type}: the feature sets label different horizons {sorted(horizons)}")
    features = selection.kept
    columns = ["date", LABEL, *features]  # the others are not read: a universe's rows take memory
    train_rows = {s: read_split(ref, "train", columns) for s, ref in refs.items()}
    val_rows = {s: read_split(ref, "val", columns) for s, ref in refs.items()}
    cls = model_class(job.model_type)
    started = time.perf_counter()
    model = cls(features, cls.params_type(**tuned.params), horizon=horizons.pop(), seed=models.seed,
                threads=models.threads)
    if not isinstance(model, PooledForecaster):
        raise ModelError(f"{job.model_type} is not a pooled model type")
    # zscore: every date of the feature sets, so the model predicts their test and latest rows too
    cross_section = CrossSection.of({s: read_split(ref, "all", columns) for s, ref in refs.items()}, features) \
        if models.pooled_normalisation == "zscore" else None
    model.fit_symbols(train_rows, val_rows, cross_section, models.pooled_max_rows)
    duration = time.perf_counter() - started
    fitted = model.symbols
    predicted = [model.bind(s).predict(val_rows[s], context=history_before(refs[s], val_rows[s], columns))
                 for s in fitted]
    actual = np.concatenate([val_rows[s][LABEL].to_numpy() for s in fitted])
    metrics = {"val_rmse": rmse(np.concatenate(predicted), actual), "val_naive_rmse": rmse(np.zeros_like(actual),
                                                                                        actual)}
    rows = sum(train_rows[s].height for s in fitted)
    budget = models.pooled_max_rows
    sampled = f", {budget:,} of {rows:,} train rows per pass" if budget is not None and rows > budget else ""
    details = {"selection": selection.to_json(), "train_rows": rows, "row_budget": budget,
               "fit_dates": {"train": _span({s: train_rows[s] for s in fitted}),
                             "val": _span({s: val_rows[s] for s in fitted})}}
    version = registry.register(model, POOLED_FOLDER, metrics=metrics, data_hash=pooled_data_hash(refs),
                                code_version=code_version((*MODEL_MODULES, "tasks.modeling.train")),
                                duration_seconds=duration, details=details)
    return TrainResult(POOLED_FOLDER, job.model_type, "trained", version=version.version,
                       val_rmse=metrics["val_rmse"], val_naive_rmse=metrics["val_naive_rmse"],
                       duration_seconds=duration, reason=f"{tuned.source} params, {len(fitted)} symbols, "
                                                          f"{len(features)} features{sampled}")
