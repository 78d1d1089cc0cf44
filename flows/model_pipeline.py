"""Flow `model-pipeline`: plan the jobs, tune each model type that has a job to train (Optuna), then
train the planned (symbol, model type) jobs: one task run per long fit, one per group of short fits.

CLI: python -m flows.model_pipeline [--model-type lstm ...] [--symbols VHM] [--universe VN30] [--retrain]
     [--no-optimize] [--trials N] [--tuning-timeout SECONDS]
"""

from __future__ import annotations

import sys

from flows.cli import models_parser, prefect_environment, run_cli, tuning_overrides

if __name__ == "__main__":
    models_parser().parse_args()  # answer --help and usage errors before the slow imports below
    prefect_environment()

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from prefect import flow, unmapped
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed

from flows.fanout import Fanout, despite_failed_jobs, error_text
from flows.runners import parallelism, task_runner
from models.notices import describe_notices
from models.pooled import MIN_SYMBOLS, POOLED_FOLDER, is_pooled
from schemas import FeatureSetRef, JobFailure, RunFailed, failed_jobs_message, validate_symbol
from settings import Settings, load_settings
from stores.factory import open_feature_store, open_registry
from stores.features import FeatureStoreError
from tasks.data.select_universe import universe_selection
from tasks.data.store import current_feature_sets
from tasks.delivery.markdown import table_rows
from tasks.modeling.train import TrainBatch, TrainJob, TrainResult, job_types, plan_training, train, train_batch
from tasks.modeling.tune import tune
from tasks.operations.caching import cache_options

__all__ = ["ModelPipelineResult", "main", "model_pipeline"]


@dataclass(frozen=True)
class ModelPipelineResult:
    """Every job's outcome: trained or skipped results, and failures."""

    results: list[TrainResult] = field(default_factory=list)
    failures: list[JobFailure] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return len(self.results) + len(self.failures)



def _describe(result: TrainResult) -> str:
    if result.status != "trained":
        return f"{result.status}: {result.reason}"
    notices = describe_notices(result.fit_warnings)  # the one line that mentions them
    return (f"trained: v{result.version} val_rmse={result.val_rmse:.6f} (zero-return {result.val_naive_rmse:.6f}) "
            f"in {result.duration_seconds:.1f}s" + (f"; {notices}" if notices else ""))


def _gather_jobs(futures: list[PrefectFuture[Any]], units: list[TrainJob | TrainBatch],
                 failure: Callable[[TrainJob, str], JobFailure]) -> Fanout[TrainResult]:
    """Wait for every task run; a line and a progress step per job, whether it ran alone or in a batch."""
    progress = cast(UUID, create_progress_artifact(0.0, description="model-pipeline: finished jobs"))
    unit_of = {f.task_run_id: unit for f, unit in zip(futures, units, strict=True)}
    total = sum(len(unit.jobs) if isinstance(unit, TrainBatch) else 1 for unit in units)
    fanout: Fanout[TrainResult] = Fanout([], [])
    done = 0
    for future in as_completed(list(futures)):
        unit = unit_of[future.task_run_id]
        jobs = unit.jobs if isinstance(unit, TrainBatch) else (unit,)
        future.wait()
        if future.state.is_completed():
            result = future.result()
            outcomes: list[TrainResult | JobFailure] = result if isinstance(unit, TrainBatch) else [result]
        else:  # the whole task run failed, or never ran: so did each of its jobs
            error = future.result(raise_on_failure=False) if future.state.is_final() else future.state.message
            outcomes = [failure(job, error_text(error)) for job in jobs]
        for job, each in zip(jobs, outcomes, strict=True):
            done += 1
            if isinstance(each, JobFailure):
                fanout.failures.append(each)
                print(f"[{done}/{total}] {job} FAILED in {each.step}: {each.error}")
            else:
                fanout.results.append(each)
                print(f"[{done}/{total}] {job} {_describe(each)}")
        update_progress_artifact(progress, 100.0 * done / total)
    return fanout


@flow(name="model-pipeline", log_prints=True)
def model_pipeline(symbols: list[str] | None = None, model_types: list[str] | None = None,
                   settings: Settings | None = None, refs: dict[str, FeatureSetRef] | None = None,
                   retrain_all: bool = False, optimize: bool | None = None,
                   universe: list[str] | None = None) -> ModelPipelineResult:
    """Train the per-symbol jobs of `symbols` (the watch list) and the pooled jobs over `universe` (default: the
    watch list); `refs` defaults to the current feature sets in the store.

    Ends Failed (RunFailed carrying the outcome) when any job failed, after every other job finished.
    """
    settings = settings or load_settings()
    symbols = [validate_symbol(s) for s in (symbols or list(refs or settings.data.symbols))]
    universe = [validate_symbol(s) for s in dict.fromkeys(universe or symbols)]
    models = settings.models.model_copy(update={"model_types": tuple(model_types or settings.models.model_types)})
    per_symbol, pooled = job_types(models)
    optimize = settings.optimization.enabled if optimize is None else optimize
    registry = open_registry(settings.models)
    needed = list(dict.fromkeys([*symbols, *(universe if pooled else [])]))
    refs = refs or current_feature_sets(needed, open_feature_store(settings.data))
    horizon = settings.data.features.horizon

    if pooled and len(universe) < MIN_SYMBOLS:
        print(f"no pooled models ({', '.join(pooled)}): a pooled model needs {MIN_SYMBOLS} symbols or more in its "
              f"universe (--universe NAME)")
        pooled = []
    jobs = [TrainJob(symbol, model_type) for symbol in symbols for model_type in per_symbol]
    jobs += [TrainJob(POOLED_FOLDER, model_type) for model_type in pooled]  # one model over every symbol
    plan = plan_training(jobs, settings.models, retrain_all, registry)
    for skipped in plan.skipped:
        print(f"{TrainJob(skipped.symbol, skipped.model_type)} skipped: {skipped.reason}")
    if plan.skipped:
        print(f"{len(plan.skipped)} of {len(jobs)} jobs skipped, not tuned: `--retrain-all` (flows.training) or "
              "`--retrain` (flows.model_pipeline) trains them anyway")
    # One feature selection over the universe for every pooled type that trains (a future: Prefect resolves it).
    selection: Any = universe_selection.with_options(**cache_options(settings.execution)).submit(
        {s: refs[s] for s in universe}, settings.data.features, settings.data.selection,
        settings.models.pooled_max_features) if any(is_pooled(job.model_type) for job in plan.to_train) else None
    # Only types with a job to train are tuned, each on the symbols it will train.
    tuned = {t: tune.with_options(**cache_options(settings.execution)).submit(
        t, {s: refs[s] for s in (universe if is_pooled(t) else plan.symbols(t))}, settings.optimization,
        settings.models, horizon, optimize, selection if is_pooled(t) else None)
        for t in dict.fromkeys(job.model_type for job in plan.to_train)}
    alone, batches = plan.grouped(settings.models.grouped_types, settings.models.group_size, parallelism())
    # A type's jobs start as its tuning ends, given its params as a value, not the tuning's future: on Dask a task
    # that reads a future runs where that result is, which put every batch of a type on the worker that tuned it.
    type_of = {future.task_run_id: model_type for model_type, future in tuned.items()}
    futures: list[PrefectFuture[Any]] = []
    units: list[TrainJob | TrainBatch] = []
    for tuning in as_completed(list(tuned.values())):
        model_type = type_of[tuning.task_run_id]
        tuning.wait()
        params = tuning.result() if tuning.state.is_completed() else tuning  # a failed tuning fails its jobs
        its_alone = [job for job in alone if job.model_type == model_type]
        its_batches = [batch for batch in batches if batch.model_type == model_type]
        if its_alone:
            futures += train.map(its_alone, unmapped(refs), unmapped(params), unmapped(settings.models),
                                 unmapped(registry), [selection if is_pooled(model_type) else None] * len(its_alone))
        if its_batches:
            futures += train_batch.map(its_batches, unmapped(refs), unmapped(params), unmapped(settings.models),
                                       unmapped(registry))
        units += [*its_alone, *its_batches]

    def failure(job: TrainJob, error: str) -> JobFailure:  # a failed tuning is the real reason its jobs failed
        tuning = tuned[job.model_type]
        if is_pooled(job.model_type) and selection is not None and selection.state.is_failed():
            return JobFailure(job.symbol, job.model_type, "select-universe",
                              error_text(selection.result(raise_on_failure=False)))
        if tuning.state.is_failed():
            return JobFailure(job.symbol, job.model_type, "tune", error_text(tuning.result(raise_on_failure=False)))
        return JobFailure(job.symbol, job.model_type, "train", error)

    fanout = _gather_jobs(futures, units, failure)
    outcome = ModelPipelineResult(plan.skipped + fanout.results, fanout.failures)
    create_table_artifact(table_rows([
        {"symbol": r.symbol, "model": r.model_type, "status": r.status, "version": r.version,
         "val_rmse": r.val_rmse, "val_zero_return_rmse": r.val_naive_rmse, "seconds": round(r.duration_seconds, 2),
         "note": r.reason} for r in outcome.results
    ] + [{"symbol": f.symbol, "model": f.model_type, "status": "failed", "note": f.error} for f in outcome.failures]),
        key="model-pipeline-jobs", description="model-pipeline: one row per (symbol, model type) job")
    if outcome.failures:
        raise RunFailed(failed_jobs_message(outcome.failures, outcome.jobs), outcome)
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Run the model pipeline from the command line; exit 1 if any job failed, 2 on bad input."""
    args = models_parser().parse_args(argv)

    def run(settings: Settings, symbols: list[str]) -> ModelPipelineResult:
        pipeline = model_pipeline.with_options(task_runner=task_runner(settings.execution))
        members = settings.data.universe_symbols(args.universe or settings.data.universe)
        return despite_failed_jobs(pipeline, symbols=symbols, model_types=args.model_type, settings=settings,
                                   retrain_all=args.retrain, optimize=False if args.no_optimize else None,
                                   universe=list(members) if members else None)

    return run_cli(args, run, _print_outcome, failed="model pipeline", input_errors=(FeatureStoreError,),
                   overrides=tuning_overrides(args))


def _print_outcome(outcome: ModelPipelineResult, settings: Settings) -> int:
    trained = sum(r.status == "trained" for r in outcome.results)
    skipped = sum(r.status == "skipped" for r in outcome.results)
    print(f"{trained} trained, {skipped} skipped, {len(outcome.failures)} failed; "
          f"registry: {settings.models.registry_path}")
    for failure in outcome.failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
