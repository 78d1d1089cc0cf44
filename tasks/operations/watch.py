"""watch: record a run and its jobs in the metrics history, and turn what is unusual into alerts."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas import JobFailure
from settings import MonitoringSettings
from stores.metrics import MetricsHistory
from tasks.modeling.train import TrainResult
from tasks.operations.monitor import Anomaly, failed_jobs, resource_logged, slow

__all__ = ["watch_run"]


@task(name="watch-run", cache_policy=NO_CACHE)
@resource_logged
def watch_run(kind: str, run_id: str, started_at: datetime, wall_seconds: float, status: str,
              trained: list[TrainResult], failures: list[JobFailure], cfg: MonitoringSettings) -> list[Anomaly]:
    """Compare the run and every training job with their recent history, record them, return the anomalies.

    Judged against the history before this run is recorded, so a slow run cannot hide itself.
    """
    history = MetricsHistory(cfg.history_path)
    alerts: list[Anomaly] = []
    past_runs = [r.wall_seconds for r in history.recent_runs(kind, cfg.history_runs) if r.status == "completed"]
    if (alert := slow(kind, wall_seconds, past_runs, cfg)) is not None:
        alerts.append(alert)
    for job in (r for r in trained if r.status == "trained"):
        name = f"train-{job.model_type}-{job.symbol}"
        past = [t.wall_seconds for t in history.recent_tasks(name, cfg.history_runs)]
        if (alert := slow(name, job.wall_seconds, past, cfg, kind="slow_task")) is not None:
            alerts.append(alert)
        history.record_task(run_id, name, job.wall_seconds, job.process_cpu_seconds, job.process_peak_rss_mb)
    alerts += failed_jobs(failures)
    history.record_run(kind, run_id, started_at, wall_seconds, status,
                       extra={"jobs": len(trained), "failures": len(failures), "alerts": len(alerts)})
    return alerts
