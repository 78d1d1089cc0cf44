"""MongoPriceStore: one document per symbol per day, through plain pymongo (runs on real MongoDB)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import unquote

import polars as pl
from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, PyMongoError

from schemas import validate_symbol
from settings import MongoSettings
from stores.base import (
    PRICE_COLUMNS,
    PriceStoreError,
    PriceStoreUnavailable,
    SourceInfo,
    coerce_bars,
    empty_store_error,
    unknown_symbol_error,
)

__all__ = ["MongoPriceStore"]

T = TypeVar("T")
_VALUES = PRICE_COLUMNS[1:]
_EPOCH = datetime(1970, 1, 1)
_MS_PER_DAY = 86_400_000


def _split_uri(uri: str) -> tuple[str, str]:
    """(host list, password) of a MongoDB URI, without parsing that could resolve DNS (mongodb+srv)."""
    rest = uri.split("://", 1)[-1]
    # The last '@' ends the credentials even when the password holds an unescaped '/' or '@'.
    credentials, _, hosts = rest.rpartition("@")
    hosts = hosts.split("/", 1)[0].split("?", 1)[0] or "localhost:27017"
    return hosts, credentials.partition(":")[2]


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day)


class MongoPriceStore:
    """Daily bars in `<database>.<collection>`; SourceInfo and a revision per symbol in `<collection>.symbols`."""

    def __init__(self, settings: MongoSettings) -> None:
        self._settings = settings
        self._hosts, self._password = _split_uri(settings.uri.get_secret_value())
        self._client: MongoClient[dict[str, Any]] | None = None
        self._indexed = False

    def location(self) -> str:
        return f"mongodb://{self._hosts}/{self._settings.database}.{self._settings.collection}"

    def symbols(self) -> list[str]:
        return self._retrying("list symbols", lambda: sorted(self._prices().distinct("symbol")))

    def load(self, symbol: str, start: date | None = None, end: date | None = None) -> pl.DataFrame:
        query = self._query(symbol, start, end)
        projection = {"_id": 0, **{name: 1 for name in PRICE_COLUMNS}}

        def find() -> list[dict[str, Any]]:
            docs = list(self._prices().find(query, projection, sort=[("date", ASCENDING)]))
            if not docs:
                self._require_symbol(symbol)
            return docs

        docs = self._retrying(f"load {symbol}", find)
        columns = [pl.Series("date", [d.get("date") for d in docs], dtype=pl.Datetime("us"), strict=False)]
        columns += [pl.Series(n, [d.get(n) for d in docs], dtype=pl.Float64, strict=False) for n in _VALUES]
        return pl.DataFrame(columns).with_columns(pl.col("date").cast(pl.Date))

    def upsert(self, symbol: str, bars: pl.DataFrame, source: SourceInfo) -> int:
        validate_symbol(symbol)
        frame = coerce_bars(bars).with_columns(pl.col("date").cast(pl.Datetime("us")))
        if frame.is_empty():
            return 0
        ops = [
            UpdateOne({"symbol": symbol, "date": row["date"]},
                      {"$set": {name: row[name] for name in _VALUES}}, upsert=True)
            for row in frame.iter_rows(named=True)
        ]

        def write() -> int:
            prices = self._prices()
            if not self._indexed:
                prices.create_index([("symbol", ASCENDING), ("date", ASCENDING)], unique=True)
                self._indexed = True
            result = prices.bulk_write(ops, ordered=False)
            changed = result.upserted_count + result.modified_count
            meta: dict[str, Any] = {"kind": source.kind, "detail": source.detail,
                                    "synthetic": source.synthetic, "extra": dict(source.extra)}
            if changed:
                meta["updated_at"] = datetime.now(UTC)
            self._meta().update_one(
                {"_id": symbol}, {"$set": meta, "$inc": {"revision": 1 if changed else 0}}, upsert=True
            )
            return result.upserted_count

        return self._retrying(f"upsert {symbol}", write)

    def fingerprint(self, symbol: str, start: date | None = None, end: date | None = None) -> str:
        query = self._query(symbol, start, end)
        day = {"$divide": [{"$subtract": ["$date", _EPOCH]}, _MS_PER_DAY]}
        # Plain sums miss values swapped between days; the day-weighted sums catch that.
        group: dict[str, Any] = {"_id": None, "n": {"$sum": 1}, "first": {"$min": "$date"},
                                 "last": {"$max": "$date"}}
        for name in _VALUES:
            group[f"sum_{name}"] = {"$sum": f"${name}"}
            group[f"day_{name}"] = {"$sum": {"$multiply": [f"${name}", day]}}

        def aggregate() -> list[dict[str, Any]]:
            rows = list(self._prices().aggregate([{"$match": query}, {"$group": group}]))
            if not rows:
                self._require_symbol(symbol)
            return rows

        rows = self._retrying(f"fingerprint {symbol}", aggregate)
        payload = json.dumps([symbol, str(start), str(end), rows], sort_keys=True, default=str)
        return hashlib.sha256(f"mongo|{payload}".encode()).hexdigest()

    def source_info(self, symbol: str) -> SourceInfo | None:
        doc = self._meta_doc(symbol)
        if doc is None:
            return None
        extra = doc.get("extra") or {}
        return SourceInfo(kind=str(doc.get("kind", "")), detail=str(doc.get("detail", "")),
                          synthetic=bool(doc.get("synthetic", False)),
                          extra={str(k): str(v) for k, v in extra.items()})

    def revision(self, symbol: str) -> int:
        """How many upserts changed the symbol's bars (0 if none recorded)."""
        doc = self._meta_doc(symbol)
        return int(doc.get("revision", 0)) if doc else 0

    def close(self) -> None:
        """Close the client; a later call opens a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._indexed = False

    def _connect(self) -> MongoClient[dict[str, Any]]:
        if self._client is None:
            timeout = self._settings.timeout_ms
            try:
                self._client = MongoClient(
                    self._settings.uri.get_secret_value(),
                    serverSelectionTimeoutMS=timeout, connectTimeoutMS=timeout, appname="stock-ai-training",
                )
            except PyMongoError as exc:
                raise PriceStoreError(f"invalid MongoDB settings for {self.location()}: "
                                      f"{self._redact(str(exc))}") from None
        return self._client

    def _prices(self) -> Collection[dict[str, Any]]:
        return self._connect()[self._settings.database][self._settings.collection]

    def _meta(self) -> Collection[dict[str, Any]]:
        return self._connect()[self._settings.database][f"{self._settings.collection}.symbols"]

    def _meta_doc(self, symbol: str) -> dict[str, Any] | None:
        validate_symbol(symbol)
        return self._retrying(f"read metadata of {symbol}", lambda: self._meta().find_one({"_id": symbol}))

    def _query(self, symbol: str, start: date | None, end: date | None) -> dict[str, Any]:
        query: dict[str, Any] = {"symbol": validate_symbol(symbol)}
        bounds = {op: day for op, day in (("$gte", _midnight(start)), ("$lte", _midnight(end)))
                  if day is not None}
        if bounds:
            query["date"] = bounds
        return query

    def _require_symbol(self, symbol: str) -> None:
        """Raise the clear error if the store holds no bars for `symbol` at all."""
        prices = self._prices()
        if prices.find_one({"symbol": symbol}, {"_id": 1}) is not None:
            return
        known = sorted(prices.distinct("symbol"))
        if not known:
            raise empty_store_error(self.location())
        raise unknown_symbol_error(symbol, known, self.location())

    def _redact(self, text: str) -> str:
        for secret in {self._password, unquote(self._password)} - {""}:
            text = text.replace(secret, "***")
        return text

    def _retrying(self, action: str, operation: Callable[[], T]) -> T:
        """Run `operation`, retrying connection failures with exponential backoff, for at most `retries`
        attempts and `max_wait_seconds` in all. The only retry layer for an outage: callers do not retry it."""
        attempts, delay = self._settings.retries, self._settings.backoff_seconds
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                return operation()
            except ConnectionFailure as exc:
                next_attempt_ends = time.monotonic() - started + delay + self._settings.timeout_ms / 1000
                if attempt == attempts or next_attempt_ends > self._settings.max_wait_seconds:
                    # pymongo's text carries the whole topology description; its first clause is enough.
                    reason = self._redact(str(exc).split(", Timeout:")[0])[:300]
                    raise PriceStoreUnavailable(
                        f"MongoDB at {self._hosts} is unreachable: {action} failed after {attempt} "
                        f"attempt(s) of {self._settings.timeout_ms} ms in {time.monotonic() - started:.0f} s "
                        f"({reason})"
                    ) from None
                time.sleep(delay)
                delay *= 2
            except PyMongoError as exc:
                raise PriceStoreError(
                    f"MongoDB at {self._hosts}: {action} failed: {self._redact(str(exc))[:300]}"
                ) from None
        raise AssertionError("unreachable: settings.retries >= 1")
