"""Shared fixtures: one Prefect test harness per session, a real MongoDB-wire server, small price frames."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest_plugins = ["tests.mongo_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, each worker starts with its share of the `long` tests, longest first.

    `--dist worksteal` hands each of W workers a contiguous W-th of the collection and lets an idle worker take
    the not-yet-started tail of a busy one: a long test at the head of a share stays where it is. So the long
    tests are dealt to the shares longest first, each to the share with the least long work so far, and placed
    at its head; the other tests keep their order.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))  # set in each worker before it collects
    if workers < 2:
        return
    long_tests = sorted((item for item in items if item.get_closest_marker("long")),
                        key=lambda item: -item.get_closest_marker("long").kwargs["seconds"])  # type: ignore[union-attr]
    rest = [item for item in items if not item.get_closest_marker("long")]
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for item in long_tests:
        share = loads.index(min(loads))
        heads[share].append(item)
        loads[share] += item.get_closest_marker("long").kwargs["seconds"]  # type: ignore[union-attr]
    size = -(-len(items) // workers)  # the share worksteal gives each worker, rounded up
    ordered: list[pytest.Item] = []
    for share in range(workers):
        take = max(size - len(heads[share]), 0)
        ordered += heads[share] + rest[:take]
        rest = rest[take:]
    items[:] = ordered + rest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database shared by every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def random_walk_prices(days: int, seed: int = 0, start: date = date(2021, 1, 4)) -> pl.DataFrame:
    """A small, valid PRICE_SCHEMA frame on business days."""
    rng = np.random.default_rng(seed)
    dates, current = [], start
    while len(dates) < days:
        if current.weekday() < 5:
            dates.append(current)
        current += timedelta(days=1)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, days)))
    open_ = close * np.exp(rng.normal(0, 0.005, days))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, days))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, days))
    volume = rng.lognormal(13, 0.4, days).round()
    return pl.DataFrame({"date": dates, "open": open_, "high": high, "low": low, "close": close,
                         "volume": volume})


@pytest.fixture
def prices() -> pl.DataFrame:
    return random_walk_prices(400)


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    """A config file with local paths under tmp_path and small windows, so flows run fast."""
    path = tmp_path / "config.yml"
    path.write_text(
        f"""
data:
  prices_path: {tmp_path / 'prices'}
  feature_store_path: {tmp_path / 'features'}
  start_date: 2020-01-01
  features:
    windows: [5, 10, 20]
  split:
    min_rows: 20
execution:
  cache_dir: {tmp_path / 'cache'}
  io_retry_delays: [0.1]
""",
        encoding="utf-8",
    )
    return path
