"""The task runner a flow's fan-out runs on: threads in the flow's process, or Dask worker processes.

Use it per call, so the flow itself stays unchanged:
`model_pipeline.with_options(task_runner=task_runner(settings.execution))(...)`.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED
from prefect.task_runners import ThreadPoolTaskRunner

from settings import ExecutionSettings

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

__all__ = ["api_url", "dask_cluster_kwargs", "parallelism", "task_runner"]


def api_url() -> str:
    """The Prefect API this process reports to; starts the ephemeral server when none is configured."""
    url = PREFECT_API_URL.value()
    if url:
        return str(url)
    if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        raise ValueError("no Prefect API: set PREFECT_API_URL so that Dask workers report to the same server")
    from prefect.server.api.server import SubprocessASGIServer

    # The same singleton the Prefect client of this process uses in ephemeral mode, so workers share it.
    server = SubprocessASGIServer()
    server.start()
    return server.api_url


def dask_cluster_kwargs(workers: int, prefect_api_url: str) -> dict[str, Any]:
    """LocalCluster arguments: `workers` single-threaded processes that report to `prefect_api_url`."""
    # The Nanny sets `env` in each worker process before the worker starts, so task runs there
    # talk to the parent's API instead of starting an ephemeral server of their own.
    return {"n_workers": workers, "threads_per_worker": 1, "processes": True,
            "env": {"PREFECT_API_URL": prefect_api_url}}


def task_runner(execution: ExecutionSettings) -> TaskRunner[Any]:
    """A fresh task runner as `execution` asks: threads, an existing Dask cluster, or a local one.

    Workers of an existing cluster (`dask_address`) must be started with PREFECT_API_URL set to the
    same server as the flow.
    """
    if execution.task_runner == "threads":
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    if execution.dask_address:
        return DaskTaskRunner(address=execution.dask_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs=dask_cluster_kwargs(execution.dask_workers, api_url()))


def parallelism(runner: TaskRunner[Any] | None = None) -> int:
    """How many CPU-bound task runs `runner` (default: the running flow's) works on at once: the threads of every
    worker of its Dask cluster, else this machine's cores.

    A fan-out cut into fewer task runs than this leaves workers idle: a cluster of machines has more workers than
    the machine the flow runs on has cores.
    """
    if runner is None:
        context = FlowRunContext.get()
        runner = context.task_runner if context else None
    dask = sys.modules.get("prefect_dask.task_runners")  # loaded by whoever made a DaskTaskRunner
    if dask is not None and isinstance(runner, dask.DaskTaskRunner):
        threads = sum(runner.client.nthreads().values())
        if threads:
            return int(threads)
    return os.cpu_count() or 1
