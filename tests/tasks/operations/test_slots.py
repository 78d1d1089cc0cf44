"""LongestFirst: at most `size` jobs at once, the longest expected of those waiting first."""

from __future__ import annotations

import threading
import time

import pytest

from tasks.operations.slots import LongestFirst


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_freed_slot_goes_to_the_longest_waiting_job_then_in_arrival_order() -> None:
    slots = LongestFirst(1)
    order: list[str] = []
    release = threading.Event()

    def job(name: str, seconds: float) -> None:
        with slots.slot(seconds):
            order.append(name)
            if name == "first":
                release.wait(10)

    threads = [threading.Thread(target=job, args=("first", 1.0))]
    threads[0].start()
    wait_until(lambda: order == ["first"])
    for count, (name, seconds) in enumerate([("short", 5.0), ("long", 300.0), ("medium", 60.0),
                                             ("medium again", 60.0)], start=1):
        threads.append(threading.Thread(target=job, args=(name, seconds)))
        threads[-1].start()
        wait_until(lambda count=count: slots.waiting == count)  # queued in this order
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first", "long", "medium", "medium again", "short"]
    assert slots.waiting == 0


def test_no_more_than_size_jobs_hold_a_slot_at_once() -> None:
    slots = LongestFirst(2)
    holding, most = 0, 0
    lock = threading.Lock()

    def job(seconds: float) -> None:
        nonlocal holding, most
        with slots.slot(seconds):
            with lock:
                holding += 1
                most = max(most, holding)
            time.sleep(0.02)
            with lock:
                holding -= 1

    threads = [threading.Thread(target=job, args=(float(i % 3),)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == 2 and holding == 0 and slots.waiting == 0


def test_a_job_that_raises_frees_its_slot() -> None:
    slots = LongestFirst(1)
    with pytest.raises(RuntimeError), slots.slot(1.0):
        raise RuntimeError("fit failed")
    with slots.slot(1.0):  # would wait forever had the slot been kept
        pass


def test_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="size must be at least 1, got 0"):
        LongestFirst(0)
