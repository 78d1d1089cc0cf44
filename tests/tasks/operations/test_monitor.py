"""Resource measurement and the pure anomaly checks."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, date, datetime

import psutil
import pytest

from schemas import JobFailure
from settings import MonitoringSettings
from tasks.operations.monitor import Anomaly, failed_jobs, measured, slow, stale_feed

CFG = MonitoringSettings(slow_factor=3.0, min_history=3)


def test_measured_busy_loop() -> None:
    with measured() as usage:
        assert usage.wall_seconds == 0.0
        deadline = time.perf_counter() + 0.05
        total = 0
        while time.perf_counter() < deadline:
            total += 1
    assert usage.wall_seconds >= 0.05
    assert 0 < usage.process_cpu_seconds
    assert 5 < usage.process_peak_rss_mb < 100_000
    with pytest.raises(dataclasses.FrozenInstanceError):
        usage.wall_seconds = 1.0  # type: ignore[misc]


def test_measured_sees_a_peak_that_is_gone_by_the_end_of_the_block() -> None:
    import numpy as np

    with measured() as usage:
        before = psutil.Process().memory_info().rss / 2**20
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        time.sleep(0.1)
        del block
    # Entry and exit readings alone would both miss the 300 MB.
    assert usage.process_peak_rss_mb >= before + 250


def test_measured_counts_the_cpu_of_other_threads_of_the_process() -> None:
    import threading

    def spin() -> None:  # 0.3 s of this thread's own CPU, however busy the machine is
        while time.thread_time() < 0.3:
            pass

    with measured() as usage:
        worker = threading.Thread(target=spin)
        worker.start()
        worker.join()  # this thread only waits
    assert usage.process_cpu_seconds >= 0.2


def test_measured_fills_usage_when_the_block_raises() -> None:
    with pytest.raises(ValueError), measured() as usage:
        raise ValueError("boom")
    assert usage.wall_seconds > 0


def test_slow_needs_enough_history() -> None:
    assert slow("training", 100.0, [1.0, 1.0], CFG) is None


def test_slow_flags_above_factor_times_median() -> None:
    anomaly = slow("training", 32.0, [10.0, 9.0, 11.0, 500.0], CFG)
    assert anomaly is not None
    assert (anomaly.kind, anomaly.subject) == ("slow_run", "training")
    assert "32.0 s" in anomaly.detail and "10.5 s" in anomaly.detail


def test_slow_not_flagged_at_threshold() -> None:
    assert slow("train", 30.0, [10.0, 10.0, 10.0], CFG, kind="slow_task") is None
    flagged = slow("train", 30.1, [10.0, 10.0, 10.0], CFG, kind="slow_task")
    assert flagged is not None and flagged.kind == "slow_task"


def test_failed_jobs() -> None:
    failures = [JobFailure("VHM", "lstm", "train", "ValueError: nan loss"),
                JobFailure("VCB", "arima", "evaluate", "boom")]
    assert failed_jobs(failures) == [Anomaly("failed_job", "lstm VHM", "train failed: ValueError: nan loss"),
                                     Anomaly("failed_job", "arima VCB", "evaluate failed: boom")]
    assert failed_jobs([]) == []


def test_stale_feed() -> None:
    now = datetime(2024, 5, 3, 2, 0, tzinfo=UTC)
    assert stale_feed("VHM", date(2024, 5, 2), now, 48) is None
    assert stale_feed("VHM", date(2024, 5, 1), now, 50) is None  # exactly 50 h old
    anomaly = stale_feed("VHM", date(2024, 5, 1), now, 48)
    assert anomaly is not None
    assert (anomaly.kind, anomaly.subject) == ("stale_feed", "VHM")
    assert "2024-05-01" in anomaly.detail and "50 h" in anomaly.detail


def test_stale_feed_naive_now() -> None:
    assert stale_feed("VHM", date(2024, 5, 1), datetime(2024, 5, 10), 48) is not None


def test_stale_feed_does_not_count_weekends() -> None:
    friday = date(2026, 11, 20)
    monday_2am = datetime(2026, 11, 23, 2, tzinfo=UTC)
    assert stale_feed("VHM", friday, monday_2am, 48) is None  # 74 h of clock time, 26 h of weekdays
    assert stale_feed("VHM", friday, datetime(2026, 11, 22, 23, tzinfo=UTC), 48) is None  # Sunday night
    tuesday_2am = datetime(2026, 11, 24, 2, tzinfo=UTC)
    alert = stale_feed("VHM", friday, tuesday_2am, 48)  # Monday's bar is missing: 50 h of weekdays
    assert alert is not None and "50 h old" in alert.detail


def test_resource_logged_logs_each_call_and_failures(caplog: pytest.LogCaptureFixture) -> None:
    from tasks.operations.monitor import resource_logged

    @resource_logged
    def work(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return sum(range(n))

    with caplog.at_level("INFO", logger="tasks.operations.monitor"):
        assert work(10_000) == sum(range(10_000))
        with pytest.raises(ValueError):
            work(-1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resources:")]
    assert len(lines) == 2 and all("peak rss" in line for line in lines)


def test_a_step_called_inside_another_is_measured_by_the_outer_one_only(caplog: pytest.LogCaptureFixture) -> None:
    from tasks.operations.monitor import resource_logged

    @resource_logged
    def step(n: int) -> int:
        return n + 1

    @resource_logged
    def batch(ns: list[int]) -> list[int]:
        return [step(n) for n in ns]

    with caplog.at_level("INFO", logger="tasks.operations.monitor"):
        assert batch(list(range(50))) == list(range(1, 51))
        assert step(1) == 2  # on its own again: measured
    assert len([r for r in caplog.records if r.getMessage().startswith("resources:")]) == 2


async def _run_logs(flow_run_id: object) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


@pytest.mark.usefixtures("prefect_harness")
def test_every_task_run_records_its_resources_in_the_run_log() -> None:
    import asyncio

    from prefect import flow

    from settings import CleaningSettings, Market
    from tasks.data.clean import clean
    from tests.conftest import random_walk_prices

    @flow
    def one_step() -> int:
        fresh = clean.with_options(refresh_cache=True)  # run it, even if an earlier run cached the same input
        return fresh(random_walk_prices(50), "VCB", CleaningSettings(), Market()).frame.height

    state = one_step(return_state=True)
    assert state.result() == 50
    for _ in range(50):  # logs reach the API in the background
        messages = asyncio.run(_run_logs(state.state_details.flow_run_id))
        if any(m.startswith("resources: wall") for m in messages):
            break
        time.sleep(0.2)
    assert any(m.startswith("resources: wall") and "process peak rss" in m for m in messages), messages


def test_blocks_measured_at_once_share_one_sampling_thread_and_each_sees_the_peak() -> None:
    import threading

    import numpy as np

    started, release, usages = threading.Barrier(9), threading.Event(), []

    def block() -> None:
        with measured() as usage:
            started.wait()
            release.wait()
        usages.append(usage)

    threads = [threading.Thread(target=block) for _ in range(8)]
    for thread in threads:
        thread.start()
    started.wait()  # eight blocks measured at once
    assert sum(t.name == "rss-sampler" for t in threading.enumerate()) == 1
    before = psutil.Process().memory_info().rss / 2**20
    peak = np.ones(200 * 2**20 // 8)  # 200 MB, touched, while all eight are open
    time.sleep(0.1)
    del peak
    release.set()
    for thread in threads:
        thread.join()
    assert len(usages) == 8 and all(u.process_peak_rss_mb >= before + 150 for u in usages)
