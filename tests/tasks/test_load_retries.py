"""One retry layer: an unreachable MongoDB is retried by the store (bounded), never again by the load task."""

from __future__ import annotations

import pytest
from prefect import flow

from settings import DataSettings
from stores.base import PriceStoreUnavailable
from tasks.load import load_prices

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.parametrize(("error", "runs"), [(PriceStoreUnavailable("MongoDB at db:27017 is unreachable"), 1),
                                             (ConnectionError("NFS hiccup"), 3)])
def test_only_errors_the_store_did_not_retry_are_retried_by_the_task(
        error: Exception, runs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise error

    monkeypatch.setattr("stores.parquet.ParquetPriceStore.load", failing)

    @flow
    def one_load() -> None:
        load_prices.with_options(retries=2, retry_delay_seconds=0, refresh_cache=True)("VCB", DataSettings())

    assert one_load(return_state=True).is_failed()
    assert len(calls) == runs
