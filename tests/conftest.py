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
