"""At most `size` long jobs at once, the longest of those waiting first.

A job that waits for a slot says how long it expects to run; a freed slot goes to the longest of the waiting jobs
(the earliest of equals). Started longest first, long jobs do not end a batch alone on one core while the other
cores sit idle (longest-processing-time-first scheduling).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LongestFirst"]


class LongestFirst:
    """`size` slots, handed out longest expected job first, in arrival order among equals."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._free = size
        self._waiting: list[tuple[float, int]] = []  # a heap of (-expected seconds, arrival)
        self._arrivals = itertools.count()
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        """Jobs waiting for a slot now."""
        with self._changed:
            return len(self._waiting)

    @contextmanager
    def slot(self, expected_seconds: float) -> Iterator[None]:
        """Hold a slot for the block; wait while every slot is held or a longer job waits."""
        with self._changed:
            ticket = (-expected_seconds, next(self._arrivals))
            heapq.heappush(self._waiting, ticket)
            while not self._free or self._waiting[0] != ticket:
                self._changed.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            self._changed.notify_all()  # the next in line may take another free slot
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                self._changed.notify_all()
