"""Measure what a step costs, and the pure checks that turn history and outcomes into anomalies."""

from __future__ import annotations

import contextvars
import functools
import logging
import resource
import statistics
import threading
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
    """What a measured block cost; all zero until the block exits.

    Tasks share one process (threads), so CPU and memory are the process's: work that ran beside the block
    in other threads is included. Together with wall time they show what a step costs the machine.
    """

    wall_seconds: float = 0.0
    process_cpu_seconds: float = 0.0
    """CPU time of the whole process during the block, every thread (library thread pools included)."""
    process_peak_rss_mb: float = 0.0
    """the process's highest resident memory during the block: sampled every 20 ms, and the kernel's
    high-water mark where it rose during the block."""


def _rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / _MB


def _high_water_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class _RssSampler:
    """One thread per process reads its resident memory every `interval` seconds while any block is measured,
    and raises the peak of each: blocks measured at once (a task per thread) share it, so a busy process does
    not spend its CPU and the GIL on one sampling thread per task."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._peaks: dict[int, list[float]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, peak: list[float]) -> None:
        with self._changed:
            self._peaks[id(peak)] = peak
            if self._thread is None or not self._thread.is_alive():  # one per process (a fork has none)
                self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
                self._thread.start()
            self._changed.notify()

    def remove(self, peak: list[float]) -> None:
        with self._changed:
            self._peaks.pop(id(peak), None)

    def _run(self) -> None:
        process = psutil.Process()
        while True:
            with self._changed:
                while not self._peaks:
                    self._changed.wait()
                peaks = list(self._peaks.values())
            rss = _rss_mb(process)
            for peak in peaks:
                peak[0] = max(peak[0], rss)
            time.sleep(self.interval)


_SAMPLER = _RssSampler(interval=0.02)


@contextmanager
def measured() -> Iterator[ResourceUsage]:
    """Measure a block: `with measured() as usage: ...`, then read `usage` after the block."""
    process = psutil.Process()
    usage = ResourceUsage()
    peak = [_rss_mb(process)]
    high_water_start = _high_water_mb()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    _SAMPLER.add(peak)
    try:
        yield usage
    finally:
        wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
        _SAMPLER.remove(peak)
        high_water = _high_water_mb()
        rss_peak = max(peak[0], _rss_mb(process), high_water if high_water > high_water_start else 0.0)
        # Frozen for callers; only this context manager fills it, once, so the value can be yielded early.
        object.__setattr__(usage, "wall_seconds", wall)
        object.__setattr__(usage, "process_cpu_seconds", cpu)
        object.__setattr__(usage, "process_peak_rss_mb", rss_peak)


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


_measuring: contextvars.ContextVar[bool] = contextvars.ContextVar("_measuring", default=False)


# Module-level accessors, not the ContextVar itself, in the wrapper below: Dask pickles task functions by
# value, and a function is pickled by reference while a ContextVar cannot be pickled at all.
def _inside_measured_step() -> bool:
    return _measuring.get()


def _enter_measured_step() -> contextvars.Token[bool]:
    return _measuring.set(True)


def _leave_measured_step(token: contextvars.Token[bool]) -> None:
    _measuring.reset(token)


def resource_logged(fn: Callable[P, R]) -> Callable[P, R]:
    """Log the wall time, CPU time and peak memory of every call into its task run's log."""

    @functools.wraps(fn)
    def logged(*args: P.args, **kwargs: P.kwargs) -> R:
        if _inside_measured_step():  # a step called inside another (a batch task): the outer one measures
            return fn(*args, **kwargs)
        usage = ResourceUsage()
        token = _enter_measured_step()
        try:
            with measured() as usage:
                return fn(*args, **kwargs)
        finally:  # failed calls are logged too
            _leave_measured_step(token)
            _run_logger().info("resources: wall %.3f s, process cpu %.3f s (all threads), process peak rss %.0f MB",
                               usage.wall_seconds, usage.process_cpu_seconds, usage.process_peak_rss_mb)

    return logged
