"""The task runner a flow's fan-out runs on: threads in the flow's process, or Dask worker processes.

Use it per call, so the flow itself stays unchanged:
`model_pipeline.with_options(task_runner=task_runner(settings.execution))(...)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED
from prefect.task_runners import ThreadPoolTaskRunner

from settings import ExecutionSettings

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

__all__ = ["api_url", "dask_cluster_kwargs", "task_runner"]


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
