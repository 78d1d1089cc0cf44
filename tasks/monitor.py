"""Measure what a step costs, and the pure checks that turn history and outcomes into anomalies."""

from __future__ import annotations

import functools
import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, ParamSpec, TypeVar

import psutil

from schemas import JobFailure
from settings import MonitoringSettings

__all__ = [
    "Anomaly", "AnomalyKind", "ResourceUsage", "failed_jobs", "measured", "resource_logged", "slow", "stale_feed",
]

AnomalyKind = Literal["slow_run", "slow_task", "failed_job", "stale_feed", "degraded_model"]
_MB = 1024 * 1024
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Anomaly:
    """Something an operator should hear about."""

    kind: AnomalyKind
    subject: str
    """what it concerns: a flow, task, job ("lstm VHM") or symbol."""
    detail: str


@dataclass(frozen=True)
class ResourceUsage:
    """What a measured block cost; all zero until the block exits."""

    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time of the measuring thread only (work in other threads or processes is not counted)."""
    peak_rss_mb: float = 0.0
    """process-wide resident memory, the larger of the samples taken at entry and at exit."""


def _rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / _MB


@contextmanager
def measured() -> Iterator[ResourceUsage]:
    """Measure a block: `with measured() as usage: ...`, then read `usage` after the block."""
    process = psutil.Process()
    usage = ResourceUsage()
    rss_start = _rss_mb(process)
    wall_start, cpu_start = time.perf_counter(), time.thread_time()
    try:
        yield usage
    finally:
        wall, cpu = time.perf_counter() - wall_start, time.thread_time() - cpu_start
        # Frozen for callers; only this context manager fills it, once, so the value can be yielded early.
        object.__setattr__(usage, "wall_seconds", wall)
        object.__setattr__(usage, "cpu_seconds", cpu)
        object.__setattr__(usage, "peak_rss_mb", max(rss_start, _rss_mb(process)))


def slow(name: str, seconds: float, history: Sequence[float], cfg: MonitoringSettings,
         kind: Literal["slow_run", "slow_task"] = "slow_run") -> Anomaly | None:
    """Flag `seconds` above `slow_factor` x the median of `history` (past durations, caller-limited).

    Nothing is judged until `history` holds at least `min_history` entries.
    """
    if len(history) < cfg.min_history:
        return None
    median = statistics.median(history)
    if seconds <= cfg.slow_factor * median:
        return None
    return Anomaly(kind, name, f"took {seconds:.1f} s, over {cfg.slow_factor:g}x the median "
                               f"{median:.1f} s of the last {len(history)} runs")


def failed_jobs(failures: Sequence[JobFailure]) -> list[Anomaly]:
    """One anomaly per failed fan-out job."""
    return [Anomaly("failed_job", f"{f.model_type} {f.symbol}".strip(), f"{f.step} failed: {f.error}")
            for f in failures]


def stale_feed(symbol: str, newest: date, now: datetime, max_age_hours: float) -> Anomaly | None:
    """Flag a symbol whose newest price date began more than `max_age_hours` of weekdays before `now`.

    Saturdays and Sundays do not count (no trading, so no new bars): Friday's prices are fresh at 02:00 on
    Monday. Exchange holidays do count; choose `max_age_hours` with that in mind.
    """
    start = datetime.combine(newest, datetime.min.time(), tzinfo=now.tzinfo)
    age_hours = (now - start).total_seconds() / 3600
    day = newest
    while day < now.date():
        if day.weekday() >= 5:
            age_hours -= 24
        day += timedelta(days=1)
    if now.date() >= newest and now.weekday() >= 5:  # the weekend day in progress does not count either
        age_hours -= (now - datetime.combine(now.date(), datetime.min.time(), tzinfo=now.tzinfo)).total_seconds() / 3600
    if age_hours <= max_age_hours:
        return None
    return Anomaly("stale_feed", symbol, f"newest prices are from {newest.isoformat()}, "
                                         f"{age_hours:.0f} h old (limit {max_age_hours:g} h)")


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:  # called as plain Python (e.g. `task.fn(...)` in a test)
        return logging.getLogger(__name__)


def resource_logged(fn: Callable[P, R]) -> Callable[P, R]:
    """Log the wall time, CPU time and peak memory of every call into its task run's log."""

    @functools.wraps(fn)
    def logged(*args: P.args, **kwargs: P.kwargs) -> R:
        usage = ResourceUsage()
        try:
            with measured() as usage:
                return fn(*args, **kwargs)
        finally:  # failed calls are logged too
            _run_logger().info("resources: wall %.3f s, cpu %.3f s (this thread), peak rss %.0f MB (process)",
                               usage.wall_seconds, usage.cpu_seconds, usage.peak_rss_mb)

    return logged
