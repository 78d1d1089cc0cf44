"""ParquetPriceStore: the embedded default, one hive partition per symbol under a local root."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from schemas import SYMBOL_PATTERN, validate_symbol
from stores.base import (
    PRICE_SCHEMA,
    PriceStoreError,
    SourceInfo,
    coerce_bars,
    empty_store_error,
    unknown_symbol_error,
)
from stores.files import atomic_write

__all__ = ["ParquetPriceStore"]

PRICES_FILE = "prices.parquet"
SOURCE_FILE = "source.json"
def _in_range(frame: pl.DataFrame, start: date | None, end: date | None) -> pl.DataFrame:
    """Rows of a PRICE_SCHEMA frame with start <= date <= end (open bounds where None)."""
    if start is not None:
        frame = frame.filter(pl.col("date") >= start)
    if end is not None:
        frame = frame.filter(pl.col("date") <= end)
    return frame


def _write_if_changed(path: Path, content: bytes) -> None:
    if path.is_file() and path.read_bytes() == content:
        return  # leaves mtime and fingerprint alone on a no-op re-ingest
    atomic_write(path, content)


class ParquetPriceStore:
    """Prices as `<root>/symbol=<SYMBOL>/prices.parquet` plus `source.json` metadata beside it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def location(self) -> str:
        return str(self.root)

    def symbols(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for directory in self.root.glob("symbol=*"):
            name = directory.name.removeprefix("symbol=")
            if SYMBOL_PATTERN.match(name) and (directory / PRICES_FILE).is_file():
                found.append(name)
        return sorted(found)

    def load(self, symbol: str, start: date | None = None, end: date | None = None) -> pl.DataFrame:
        path = self._existing(symbol)
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise PriceStoreError(f"cannot read {path}: {exc}") from exc
        return _in_range(frame.select(pl.col(n).cast(t) for n, t in PRICE_SCHEMA.items()), start, end)

    def upsert(self, symbol: str, bars: pl.DataFrame, source: SourceInfo) -> int:
        directory = self._directory(symbol)
        new = coerce_bars(bars)
        if new.is_empty():
            return 0
        path = directory / PRICES_FILE
        old = self.load(symbol) if path.is_file() else pl.DataFrame(schema=PRICE_SCHEMA)
        added = new.join(old.select("date"), on="date", how="anti").height
        kept = old.join(new.select("date"), on="date", how="anti")
        merged = pl.concat([kept, new]).sort("date")

        buffer = io.BytesIO()
        merged.write_parquet(buffer)
        directory.mkdir(parents=True, exist_ok=True)
        _write_if_changed(path, buffer.getvalue())
        meta = json.dumps(dataclasses.asdict(source), indent=2, sort_keys=True) + "\n"
        _write_if_changed(directory / SOURCE_FILE, meta.encode("utf-8"))
        return added

    def fingerprint(self, symbol: str, start: date | None = None, end: date | None = None) -> str:
        path = self._existing(symbol)
        digest = hashlib.sha256(f"parquet|{symbol}|{start}|{end}|".encode())
        digest.update(path.read_bytes())
        return digest.hexdigest()

    def source_info(self, symbol: str) -> SourceInfo | None:
        path = self._directory(symbol) / SOURCE_FILE
        if not path.is_file():
            return None
        try:
            raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in dataclasses.fields(SourceInfo)}
            return SourceInfo(**{k: v for k, v in raw.items() if k in known})
        except (ValueError, TypeError) as exc:
            raise PriceStoreError(f"unreadable price metadata {path}: {exc}") from exc

    def close(self) -> None:
        """Nothing to release; present so callers can close any store alike."""

    def _directory(self, symbol: str) -> Path:
        return self.root / f"symbol={validate_symbol(symbol)}"

    def _existing(self, symbol: str) -> Path:
        path = self._directory(symbol) / PRICES_FILE
        if path.is_file():
            return path
        known = self.symbols()
        if not known:
            raise empty_store_error(self.location())
        raise unknown_symbol_error(symbol, known, self.location())
