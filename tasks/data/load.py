"""load: read one symbol's daily bars from the configured price store (I/O: retried on outages only).

`check_prices` runs the same reads before a command line starts a flow, so that what no run could get
past is said in one line at once.
"""

from __future__ import annotations

from datetime import date
from typing import Any, cast

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from schemas import validate_symbol
from settings import DataSettings
from stores.base import PriceStore, PriceStoreUnavailable
from stores.factory import open_price_store
from tasks.data.split import check_history, required_rows
from tasks.operations.caching import PriceFingerprint
from tasks.operations.monitor import resource_logged

__all__ = ["check_prices", "describe_sources", "load_prices", "read_window"]


def _retry_on_outage(task: Any, task_run: Any, state: State) -> bool:
    """Retry a file store's transient OS errors only. An unreachable MongoDB was already retried by the store
    within data.mongodb.max_wait_seconds; a bad symbol or an empty store will not heal."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, (ConnectionError, TimeoutError)) and not isinstance(error, PriceStoreUnavailable)


@task(
    name="load",
    task_run_name="load-{symbol}",
    cache_policy=PriceFingerprint(modules=("tasks.data.load", "stores.parquet", "stores.mongo")),
    retry_condition_fn=_retry_on_outage,  # retries: execution.io_retries, set by the data pipeline
)
@resource_logged
def load_prices(symbol: str, data: DataSettings, price_store: PriceStore) -> pl.DataFrame:
    """Load `symbol`'s bars between data.start_date and data.end_date from `price_store`, sorted by date."""
    return read_window(price_store, symbol, data)


def read_window(store: PriceStore, symbol: str, data: DataSettings) -> pl.DataFrame:
    """`symbol`'s bars between data.start_date and data.end_date from an open store, sorted by date; raises
    InsufficientHistoryError naming the window and the stored range when they are too few."""
    bars = store.load(validate_symbol(symbol), data.start_date, data.end_date)
    _check_window(store, symbol, data, bars.height)
    return bars


def _check_window(store: PriceStore, symbol: str, data: DataSettings, rows: int) -> None:
    """InsufficientHistoryError naming the window and the range the store holds, when `rows` are too few."""
    if rows >= required_rows(data.features, data.split):
        return
    stored = store.load(symbol)["date"]
    first, last = cast(date, stored.min()), cast(date, stored.max())
    check_history(rows, symbol, data.features, data.split,
                  where=f"in the window data.start_date..data.end_date = {data.start_date}..{data.end_date or 'newest'}"
                        f" (the store holds {stored.len()} rows of it, {first}..{last})")


def check_prices(symbols: list[str], data: DataSettings) -> None:
    """Raise the error a run would meet: store unreachable or empty, unknown symbol, too few bars in the window.

    The `load` task makes the same check; bars are counted before cleaning, so a symbol that passes may
    still fall short after it, and the data pipeline checks again then.
    """
    store = open_price_store(data)
    try:
        for symbol in symbols:
            bars = store.load(validate_symbol(symbol), data.start_date, data.end_date)
            _check_window(store, symbol, data, bars.height)
    finally:
        store.close()


@task(name="describe-sources", cache_policy=NO_CACHE)
@resource_logged
def describe_sources(symbols: list[str], price_store: PriceStore) -> dict[str, dict[str, Any]]:
    """Where each symbol's prices came from (synthetic or imported), for the report."""
    info = {s: price_store.source_info(s) for s in symbols}
    return {s: {"kind": i.kind, "detail": i.detail, "synthetic": i.synthetic} if i else {} for s, i in info.items()}
