"""A real distributed run: `dask scheduler` and two `dask worker` processes, the way a cluster of machines is started,
and the `training` flow pointed at them with `execution.dask_address`. Its training and evaluation jobs run in the
workers and give what the threads runner gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from flows.runners import api_url
from flows.training import TrainingOutcome, training
from serving import free_port
from settings import Settings, load_settings
from stores.base import SourceInfo
from stores.parquet import ParquetPriceStore
from tasks.data.ingest import synthetic_market
from tests.acceptance.conftest import ROOT, background
from tests.tasks.modeling.test_train import FAST

pytestmark = pytest.mark.usefixtures("prefect_harness")

SYMBOLS = ["VCB", "VHM"]
TYPES = ["arima", "catboost"]
JOBS = sorted((symbol, model_type) for symbol in SYMBOLS for model_type in TYPES)


def dask_command(*args: str) -> list[str]:
    """The `dask` command line of this environment (`python -m distributed.cli.dask_<sub>` when the entry point
    is missing)."""
    script = Path(sys.executable).parent / "dask"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", f"distributed.cli.dask_{args[0]}", *args[1:]]


def cluster_env(workspace: Path) -> dict[str, str]:
    """What an operator exports on a worker machine: the flow's Prefect server and the project on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STOCK_AI_"))}
    return env | {"PREFECT_API_URL": api_url(), "PREFECT_HOME": str(workspace / ".prefect"),
                  "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}


def family(pid: int) -> set[int]:
    """`pid` and every process below it."""
    try:
        root = psutil.Process(pid)
        return {pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def running(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@contextmanager
def dask_cluster(workspace: Path, workers: int = 2) -> Iterator[tuple[str, set[int]]]:
    """A scheduler and `workers` single-threaded worker processes on loopback, each started by its own command;
    yields the scheduler address and the pids of every process they started. All of them are stopped on exit."""
    from distributed import Client

    workspace.mkdir(parents=True, exist_ok=True)
    env, port = cluster_env(workspace), free_port()
    address = f"tcp://127.0.0.1:{port}"
    started: set[int] = set()
    processes: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        try:
            processes.append(stack.enter_context(background(
                dask_command("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"),
                workspace, env, workspace / "scheduler.log")))
            for i in range(workers):
                processes.append(stack.enter_context(background(
                    dask_command("worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                                 "--name", f"worker-{i}", "--local-directory", str(workspace / f"worker-{i}"),
                                 "--death-timeout", "60"),
                    workspace, env, workspace / f"worker-{i}.log")))
            with Client(address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=120)
            yield address, started
        finally:  # before the stack stops them: every process the commands started, worker processes included
            for process in processes:
                started |= family(process.pid)
    deadline = time.monotonic() + 10
    while running(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(started), f"cluster processes still running: {running(started)}"


def workspace_settings(workspace: Path, **execution: object) -> Settings:
    """Settings with every path under `workspace`, over a small synthetic market of SYMBOLS written there."""
    config = workspace / "config.yml"
    workspace.mkdir(parents=True)
    config.write_text(yaml.safe_dump({
        "data": {"prices_path": str(workspace / "prices"), "feature_store_path": str(workspace / "features"),
                 "symbols": SYMBOLS, "features": {"windows": [5, 10, 20]}, "split": {"min_rows": 30}},
        "models": {"registry_path": str(workspace / "registry"), "model_types": TYPES, "scope": "per_symbol",
                   "params": FAST},
        "optimization": {"enabled": False, "storage_path": str(workspace / "optuna" / "studies.db")},
        "deployment": {"enabled": False, "packages_path": str(workspace / "packages")},
        "monitoring": {"history_path": str(workspace / "history.sqlite")},
        "evaluation": {"cross_validation": {"cv_folds": 2, "pooled_folds": 2}},
        "execution": {"cache_dir": str(workspace / "cache"), "reports_dir": str(workspace / "reports"),
                      "io_retry_delays": [0.1], **execution},
    }), encoding="utf-8")
    store = ParquetPriceStore(workspace / "prices")
    for symbol, bars in synthetic_market(SYMBOLS, 420, seed=7, end=date(2026, 10, 30)).items():
        store.upsert(symbol, bars, SourceInfo(kind="synthetic", detail="seed=7", synthetic=True))
    return load_settings(config)


def trained(outcome: TrainingOutcome) -> dict[tuple[str, str], dict[str, Any]]:
    """Each training job's record in the run's report, by (symbol, model type)."""
    results = json.loads(outcome.report.json_path.read_text())["training"]["results"]
    return {(r["symbol"], r["model_type"]): r for r in results}


def measures(row: dict[str, Any]) -> dict[str, float]:
    """A leaderboard row's numbers (its metrics)."""
    return {k: v for k, v in row.items() if isinstance(v, float)}


def labels(row: dict[str, Any]) -> dict[str, Any]:
    """A leaderboard row's other columns: symbol, model, version, flags, trade count, missing metrics."""
    return {k: v for k, v in row.items() if not isinstance(v, float)}


@pytest.mark.long(seconds=65)
def test_training_on_a_dask_cluster_of_two_worker_processes_matches_threads(tmp_path: Path) -> None:
    from distributed import Client

    expected = training(settings=workspace_settings(tmp_path / "threads", task_runner="threads"))
    with dask_cluster(tmp_path / "cluster") as (address, processes):
        with Client(address) as client:
            client.get_task_stream()  # the scheduler records the task stream from now on
            worker_pids = client.run(os.getpid)
            settings = workspace_settings(tmp_path / "dask", task_runner="dask", dask_address=address)
            started = time.monotonic()
            outcome = training(settings=settings)
            print(f"training on the cluster: {time.monotonic() - started:.1f} s")
            stream = client.get_task_stream()
    assert set(worker_pids.values()) <= processes  # the workers are the processes the commands started

    ran = {(record["key"], record["worker"]) for record in stream}
    names = sorted(key.rsplit("-", 1)[0] for key, _ in ran)
    assert sorted(n for n in names if n.startswith("train")) == ["train"] * len(JOBS), names
    assert sorted(n for n in names if n.startswith("predict")) == ["predict_test"] * len(JOBS), names
    assert {worker for _, worker in ran} == set(worker_pids), ran  # both workers ran tasks

    jobs, reference = trained(outcome), trained(expected)
    assert sorted(jobs) == JOBS and all(r["status"] == "trained" and r["version"] == 1 for r in jobs.values())
    assert {k: r["val_rmse"] for k, r in jobs.items()} == pytest.approx(
        {k: r["val_rmse"] for k, r in reference.items()}, rel=1e-6)
    assert not outcome.failures and outcome.jobs == expected.jobs
    assert len(outcome.leaderboard) == len(JOBS)
    assert [measures(row) for row in outcome.leaderboard] == [
        pytest.approx(measures(row), rel=1e-6, nan_ok=True) for row in expected.leaderboard]
    assert [labels(row) for row in outcome.leaderboard] == [labels(row) for row in expected.leaderboard]
    assert [(d.symbol, d.action, d.model_type, d.version) for d in outcome.decisions] == [
        (d.symbol, d.action, d.model_type, d.version) for d in expected.decisions]
