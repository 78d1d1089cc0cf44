"""The model subflow on a local Dask cluster of worker processes: same jobs, names and results as threads."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.model_pipeline import ModelPipelineResult, model_pipeline
from flows.runners import parallelism, task_runner
from settings import ExecutionSettings, Settings, load_settings
from stores.registry import LocalModelRegistry
from tests.flows.test_model_pipeline import config, task_run_names
from tests.tasks.modeling.test_train import FAST

pytestmark = pytest.mark.usefixtures("prefect_harness")

JOBS = [("VCB", "arima"), ("VCB", "catboost"), ("VHM", "arima"), ("VHM", "catboost")]


def with_runner(settings: Settings, registry: Path, **execution: object) -> Settings:
    return settings.model_copy(update={
        "models": settings.models.model_copy(update={"registry_path": registry}),
        "execution": settings.execution.model_copy(update=execution)})


@contextmanager
def spawned_workers() -> Iterator[set[int]]:
    """Pids of the worker processes this process spawns while the block runs (sampled)."""
    me, seen, done = psutil.Process(), set[int](), threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            for child in me.children(recursive=True):
                try:
                    if "spawn_main" in " ".join(child.cmdline()):
                        seen.add(child.pid)
                except psutil.Error:
                    pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()


def assert_gone(pids: set[int]) -> None:
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"worker processes still running: {alive}"


@flow(name="dask-parent")
def parent(settings: Settings) -> tuple[ModelPipelineResult, str]:
    """Call the model pipeline as a subflow on the runner its settings ask for."""
    state = model_pipeline.with_options(task_runner=task_runner(settings.execution))(
        settings=settings, return_state=True)
    return state.result(), str(state.state_details.flow_run_id)


def test_task_runner_choice() -> None:
    assert isinstance(task_runner(ExecutionSettings()), ThreadPoolTaskRunner)
    remote = task_runner(ExecutionSettings(task_runner="dask", dask_address="tcp://127.0.0.1:8786"))
    assert remote.address == "tcp://127.0.0.1:8786"  # type: ignore[attr-defined]
    local = task_runner(ExecutionSettings(task_runner="dask", dask_workers=3))
    assert local.cluster_kwargs["n_workers"] == 3  # type: ignore[attr-defined]
    assert local.cluster_kwargs["env"]["PREFECT_API_URL"].startswith("http")  # type: ignore[attr-defined]


@flow(name="dask-width")
def width() -> int:
    return parallelism()


def test_parallelism_is_the_cluster_s_threads_else_the_cores() -> None:
    assert width() == os.cpu_count()
    three = task_runner(ExecutionSettings(task_runner="dask", dask_workers=3))
    with spawned_workers() as workers:
        assert width.with_options(task_runner=three)() == 3
    assert_gone(workers)


def test_model_subflow_on_dask_workers_matches_threads(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, FAST))
    threads = with_runner(settings, tmp_path / "registry-threads", task_runner="threads")
    dask = with_runner(settings, tmp_path / "registry-dask", task_runner="dask", dask_workers=2)

    expected, _ = parent(threads)
    with spawned_workers() as workers:
        outcome, flow_run_id = parent(dask)
    assert len(workers) >= 2, workers
    assert_gone(workers)

    assert not outcome.failures, outcome.failures
    assert sorted((r.symbol, r.model_type) for r in outcome.results if r.status == "trained") == JOBS
    names = asyncio.run(task_run_names(flow_run_id))
    assert {f"train-{model_type}-{symbol}" for symbol, model_type in JOBS} <= names
    rmse = {(r.symbol, r.model_type): r.val_rmse for r in outcome.results}
    assert all(v is not None and math.isfinite(v) for v in rmse.values()), rmse
    assert rmse == pytest.approx({(r.symbol, r.model_type): r.val_rmse for r in expected.results}, rel=1e-6)
    registries = (LocalModelRegistry(threads.models.registry_path), LocalModelRegistry(dask.models.registry_path))
    for symbol, model_type in JOBS:
        assert [r.versions(model_type, symbol) for r in registries] == [[1], [1]]


def test_top_level_call_on_dask_workers(tmp_path: Path) -> None:
    settings = with_runner(load_settings(config(tmp_path, FAST)), tmp_path / "registry",
                           task_runner="dask", dask_workers=2)
    with spawned_workers() as workers:
        outcome = model_pipeline.with_options(task_runner=task_runner(settings.execution))(
            settings=settings, symbols=["VHM"], model_types=["arima"])
    assert_gone(workers)
    assert [(r.symbol, r.model_type, r.status, r.version) for r in outcome.results] == [("VHM", "arima", "trained", 1)]
