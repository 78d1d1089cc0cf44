"""The PriceStore protocol, the price frame schema, and the errors every backend raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol, runtime_checkable

import polars as pl

__all__ = [
    "FILL_HINT",
    "PRICE_COLUMNS",
    "PRICE_SCHEMA",
    "EmptyStoreError",
    "PriceStore",
    "PriceStoreError",
    "PriceStoreUnavailable",
    "SourceInfo",
    "UnknownSymbolError",
    "coerce_bars",
    "empty_store_error",
    "unknown_symbol_error",
]

PRICE_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}
PRICE_COLUMNS = tuple(PRICE_SCHEMA)


class PriceStoreError(RuntimeError):
    """Base class of price-store failures."""


class PriceStoreUnavailable(PriceStoreError):
    """The backend could not be reached (after retries). Worth retrying later."""


class UnknownSymbolError(PriceStoreError, KeyError):
    """The store holds no prices for the requested symbol."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class EmptyStoreError(PriceStoreError):
    """The store holds no prices at all."""


FILL_HINT = (
    "fill it with `python -m flows.ingest demo` (synthetic market) "
    "or `python -m flows.ingest csv FILE --symbol X` (real prices)"
)
_KNOWN_SHOWN = 20


def empty_store_error(location: str) -> EmptyStoreError:
    """The error every backend raises when it holds no prices at all."""
    return EmptyStoreError(f"no prices in {location}: {FILL_HINT}")


def unknown_symbol_error(symbol: str, known: list[str], location: str) -> UnknownSymbolError:
    """The error every backend raises for a symbol it holds no prices for; lists the known ones."""
    shown = ", ".join(known[:_KNOWN_SHOWN])
    more = f" and {len(known) - _KNOWN_SHOWN} more" if len(known) > _KNOWN_SHOWN else ""
    return UnknownSymbolError(
        f"no prices for symbol {symbol!r} in {location}; known symbols: {shown}{more}. "
        f"To add it: `python -m flows.ingest csv FILE --symbol {symbol}`"
    )


def coerce_bars(bars: pl.DataFrame) -> pl.DataFrame:
    """Bars cast to PRICE_SCHEMA, one row per date (the last one wins), sorted by date."""
    missing = [name for name in PRICE_COLUMNS if name not in bars.columns]
    if missing:
        raise ValueError(
            f"bars lack column(s) {', '.join(missing)} (columns found: {', '.join(bars.columns) or 'none'})"
        )
    frame = bars.select(pl.col(name).cast(dtype) for name, dtype in PRICE_SCHEMA.items())
    if frame["date"].null_count():
        raise ValueError(f"{frame['date'].null_count()} bar(s) have no date")
    return frame.unique("date", keep="last", maintain_order=True).sort("date")


@dataclass(frozen=True)
class SourceInfo:
    """Where a symbol's prices came from; kept with them in the store's metadata."""

    kind: str
    """"synthetic", "csv" or "parquet"."""
    detail: str = ""
    """file name, or generator parameters for synthetic data."""
    synthetic: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class PriceStore(Protocol):
    """Daily OHLCV bars per symbol. Frames follow PRICE_SCHEMA, sorted by date, one row per day."""

    def location(self) -> str:
        """Where the prices live, for messages (never includes a password)."""
        ...

    def symbols(self) -> list[str]:
        """All symbols with at least one bar, sorted."""
        ...

    def load(self, symbol: str, start: date | None = None, end: date | None = None) -> pl.DataFrame:
        """One symbol's bars in [start, end]. Raises UnknownSymbolError / EmptyStoreError."""
        ...

    def upsert(self, symbol: str, bars: pl.DataFrame, source: SourceInfo) -> int:
        """Insert or replace bars by (symbol, date); returns the number of new days. Idempotent."""
        ...

    def fingerprint(self, symbol: str, start: date | None = None, end: date | None = None) -> str:
        """A cheap digest that changes whenever the bars `load` would return change."""
        ...

    def source_info(self, symbol: str) -> SourceInfo | None:
        """The metadata recorded with the symbol's prices, if any."""
        ...

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        ...
