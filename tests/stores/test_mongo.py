"""MongoPriceStore against a real MongoDB-wire server: the PriceStore contract plus Mongo specifics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import MongoClient

from settings import MongoSettings
from stores.base import PriceStoreUnavailable, SourceInfo
from stores.mongo import MongoPriceStore
from tests.mongo_fixtures import free_port
from tests.stores.test_parquet import SOURCE, PriceStoreContract, make_bars


@pytest.fixture
def store(mongo_settings: MongoSettings) -> Iterator[MongoPriceStore]:
    store = MongoPriceStore(mongo_settings)
    yield store
    store.close()


class TestMongoContract(PriceStoreContract):
    pass


def test_one_document_per_symbol_and_day(store: MongoPriceStore, mongo_settings: MongoSettings) -> None:
    store.upsert("VCB", make_bars(3), SOURCE)
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_settings.uri.get_secret_value())
    with client:
        prices = client[mongo_settings.database][mongo_settings.collection]
        docs = list(prices.find({}, {"_id": 0}).sort("date", 1))
        indexes = prices.index_information()
    assert len(docs) == 3
    assert docs[0] == {"symbol": "VCB", "date": datetime(2024, 1, 1), "open": 49.8, "high": 51.0,
                       "low": 49.0, "close": 50.0, "volume": 1000.0}
    assert any(spec.get("unique") and spec["key"] == [("symbol", 1), ("date", 1)] for spec in indexes.values())


def test_revision_counts_only_changing_upserts(store: MongoPriceStore) -> None:
    bars = make_bars(5)
    store.upsert("VCB", bars, SOURCE)
    store.upsert("VCB", bars, SOURCE)
    assert store.revision("VCB") == 1
    store.upsert("VCB", bars.with_columns(volume=bars["volume"] + 1), SOURCE)
    assert store.revision("VCB") == 2


def test_synthetic_flag_is_kept(store: MongoPriceStore) -> None:
    source = SourceInfo(kind="synthetic", detail="seed=7", synthetic=True, extra={"seed": "7"})
    store.upsert("VIC", make_bars(2), source)
    assert store.source_info("VIC") == source


def test_close_then_reuse(store: MongoPriceStore) -> None:
    store.upsert("VCB", make_bars(2), SOURCE)
    store.close()
    assert store.load("VCB").height == 2


def test_unreachable_server_names_host_but_never_the_password() -> None:
    port = free_port()  # nothing listens there once the probe socket is closed
    settings = MongoSettings(uri=SecretStr(f"mongodb://alice:s3cr%40t-pw@127.0.0.1:{port}/?authSource=admin"),
                             timeout_ms=50, retries=2, backoff_seconds=0.05)
    store = MongoPriceStore(settings)
    started = time.monotonic()
    with pytest.raises(PriceStoreUnavailable) as raised:
        store.load("VCB")
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert "2 attempt" in message
    for secret in ("s3cr", "s3cr@t-pw", "alice:"):
        assert secret not in message
        assert secret not in repr(raised.value)
        assert secret not in store.location()
    assert raised.value.__cause__ is None
    assert 0.05 <= elapsed < 5


def test_retries_stop_at_the_total_bound() -> None:
    port = free_port()
    settings = MongoSettings(uri=SecretStr(f"mongodb://127.0.0.1:{port}"), timeout_ms=100, retries=50,
                             backoff_seconds=0.1, max_wait_seconds=1.0)

    with pytest.raises(PriceStoreUnavailable) as raised:
        MongoPriceStore(settings).load("VCB")

    # 100 ms attempts with 0.1, 0.2, 0.4 s pauses: the next attempt would end after 1 s, so it stops at 4.
    attempts = int(str(raised.value).split(" failed after ")[1].split(" ")[0])
    assert 2 <= attempts <= 4
