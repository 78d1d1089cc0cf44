"""One retry layer: an unreachable MongoDB is retried by the store (bounded), never again by the load task;
errors that will not heal (bad symbol, empty store, too little history, an unreadable file) run once."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow

from schemas import InvalidSymbolError
from settings import DataSettings
from stores.base import EmptyStoreError, PriceStoreError, PriceStoreUnavailable, SourceInfo, UnknownSymbolError
from stores.parquet import ParquetPriceStore
from tasks.data.load import load_prices
from tasks.data.split import InsufficientHistoryError
from tests.conftest import random_walk_prices
from tests.tasks.operations.test_retry_conditions import attempts

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.parametrize(("error", "runs"), [(PriceStoreUnavailable("MongoDB at db:27017 is unreachable"), 1),
                                             (ConnectionError("NFS hiccup"), 3),
                                             (TimeoutError("NFS read timed out"), 3)])
def test_only_errors_the_store_did_not_retry_are_retried_by_the_task(
        error: Exception, runs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise error

    monkeypatch.setattr("stores.parquet.ParquetPriceStore.load", failing)

    @flow
    def one_load() -> None:
        data = DataSettings()
        load_prices.with_options(retries=2, retry_delay_seconds=0, refresh_cache=True)(
            "VCB", data, ParquetPriceStore(data.prices_path))

    assert one_load(return_state=True).is_failed()
    assert len(calls) == runs


@pytest.mark.parametrize(("days", "symbol", "expected"), [
    (0, "VCB", EmptyStoreError),
    (400, "FPT", UnknownSymbolError),
    (40, "VCB", InsufficientHistoryError),
    (400, "../x", InvalidSymbolError),
    (None, "VCB", PriceStoreError),  # VCB's prices file is not Parquet
])
def test_errors_that_will_not_heal_are_not_retried(days: int | None, symbol: str, expected: type[Exception],
                                                   tmp_path: Path) -> None:
    store = ParquetPriceStore(tmp_path / "prices")
    if days != 0:
        store.upsert("VCB", random_walk_prices(days or 400),
                     SourceInfo(kind="synthetic", detail="random walk", synthetic=True))
    if days is None:
        (tmp_path / "prices" / "symbol=VCB" / "prices.parquet").write_bytes(b"not parquet")
    data = DataSettings(prices_path=tmp_path / "prices")
    runs, error = attempts(load_prices, symbol, data, ParquetPriceStore(data.prices_path), refresh_cache=True)
    assert type(error) is expected and runs == 1, error
