"""ParquetPriceStore, and the PriceStore contract every backend's tests run through."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from schemas import InvalidSymbolError
from stores.base import (
    PRICE_SCHEMA,
    EmptyStoreError,
    PriceStore,
    PriceStoreError,
    SourceInfo,
    UnknownSymbolError,
)
from stores.parquet import ParquetPriceStore

SOURCE = SourceInfo(kind="csv", detail="vcb.csv")


def make_bars(days: int, start: date = date(2024, 1, 1), base: float = 50.0) -> pl.DataFrame:
    """`days` consecutive calendar days of simple, valid bars."""
    dates = [start + timedelta(days=i) for i in range(days)]
    close = [base + 0.5 * i for i in range(days)]
    return pl.DataFrame({
        "date": dates, "open": [c - 0.2 for c in close], "high": [c + 1.0 for c in close],
        "low": [c - 1.0 for c in close], "close": close, "volume": [1000.0 + i for i in range(days)],
    }, schema=PRICE_SCHEMA)


class PriceStoreContract:
    """Checks every PriceStore must pass; subclasses provide a `store` fixture over an empty store."""

    def test_is_a_price_store(self, store: PriceStore) -> None:
        assert isinstance(store, PriceStore)

    def test_round_trip(self, store: PriceStore) -> None:
        bars = make_bars(60)
        assert store.upsert("VCB", bars, SOURCE) == 60
        assert_frame_equal(store.load("VCB"), bars)
        assert store.symbols() == ["VCB"]
        assert store.source_info("VCB") == SOURCE

    def test_upsert_is_idempotent(self, store: PriceStore) -> None:
        bars = make_bars(60)
        store.upsert("VCB", bars, SOURCE)
        before = store.fingerprint("VCB")
        assert store.upsert("VCB", bars, SOURCE) == 0
        assert store.load("VCB").height == 60
        assert store.fingerprint("VCB") == before

    def test_new_values_replace_old_ones_for_the_same_date(self, store: PriceStore) -> None:
        bars = make_bars(60)
        store.upsert("VCB", bars, SOURCE)
        before = store.fingerprint("VCB")
        changed = bars.slice(10, 1).with_columns(pl.col("close") + 0.05)
        assert store.upsert("VCB", changed, SOURCE) == 0
        loaded = store.load("VCB")
        assert loaded.height == 60
        assert loaded["close"][10] == pytest.approx(bars["close"][10] + 0.05)
        assert store.fingerprint("VCB") != before

    def test_a_new_day_counts_and_changes_the_fingerprint(self, store: PriceStore) -> None:
        bars = make_bars(61)
        store.upsert("VCB", bars.head(60), SOURCE)
        before = store.fingerprint("VCB")
        # Overlapping re-delivery: only the one unseen day is new.
        assert store.upsert("VCB", bars.tail(5), SOURCE) == 1
        assert store.load("VCB").height == 61
        assert store.fingerprint("VCB") != before

    def test_duplicate_dates_in_input_keep_the_last_and_come_back_sorted(self, store: PriceStore) -> None:
        bars = make_bars(5)
        shuffled = pl.concat([bars.reverse(), bars.slice(2, 1).with_columns(pl.col("close") * 2)])
        assert store.upsert("VCB", shuffled, SOURCE) == 5
        loaded = store.load("VCB")
        assert loaded["date"].is_sorted()
        assert loaded["close"][2] == pytest.approx(bars["close"][2] * 2)

    def test_range_loading_is_inclusive(self, store: PriceStore) -> None:
        bars = make_bars(60)
        store.upsert("VCB", bars, SOURCE)
        start, end = date(2024, 1, 11), date(2024, 1, 20)
        assert_frame_equal(store.load("VCB", start, end), bars.filter(pl.col("date").is_between(start, end)))
        assert store.load("VCB", start=date(2024, 2, 25)).height == 5
        assert store.load("VCB", end=date(2024, 1, 1)).height == 1
        assert store.fingerprint("VCB", start, end) != store.fingerprint("VCB")

    def test_symbols_are_sorted(self, store: PriceStore) -> None:
        for symbol in ("VIC", "VCB", "FPT"):
            store.upsert(symbol, make_bars(3), SOURCE)
        assert store.symbols() == ["FPT", "VCB", "VIC"]

    def test_empty_store_says_how_to_fill_it(self, store: PriceStore) -> None:
        with pytest.raises(EmptyStoreError) as raised:
            store.load("VCB")
        message = str(raised.value)
        assert store.location() in message
        assert "python -m flows.ingest demo" in message
        assert "python -m flows.ingest csv FILE --symbol X" in message

    def test_unknown_symbol_names_it_and_the_known_ones(self, store: PriceStore) -> None:
        store.upsert("VCB", make_bars(3), SOURCE)
        store.upsert("VIC", make_bars(3), SOURCE)
        with pytest.raises(UnknownSymbolError, match=r"'HPG'.*known symbols: VCB, VIC"):
            store.load("HPG")
        with pytest.raises(UnknownSymbolError):
            store.fingerprint("HPG")
        assert store.source_info("HPG") is None

    def test_invalid_symbols_are_rejected(self, store: PriceStore) -> None:
        for call in (lambda: store.load("../x"), lambda: store.fingerprint("../x"),
                     lambda: store.source_info("../x"), lambda: store.upsert("../x", make_bars(2), SOURCE)):
            with pytest.raises(InvalidSymbolError, match=r"\.\./x"):
                call()

    def test_bars_without_a_required_column_are_rejected(self, store: PriceStore) -> None:
        with pytest.raises(ValueError, match=r"close"):
            store.upsert("VCB", make_bars(3).drop("close"), SOURCE)


class TestParquetContract(PriceStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ParquetPriceStore:
        return ParquetPriceStore(tmp_path / "prices")


def test_layout_is_hive_partitioned_by_symbol(tmp_path: Path) -> None:
    store = ParquetPriceStore(tmp_path)
    store.upsert("VCB", make_bars(4), SourceInfo(kind="synthetic", detail="seed=7", synthetic=True))
    directory = tmp_path / "symbol=VCB"
    assert sorted(p.name for p in directory.iterdir()) == ["prices.parquet", "source.json"]
    assert json.loads((directory / "source.json").read_text())["synthetic"] is True
    # Readers that understand hive partitions get the symbol back as a column.
    frame = pl.read_parquet(tmp_path / "**/*.parquet", hive_partitioning=True)
    assert frame["symbol"].unique().to_list() == ["VCB"]


def test_no_op_upsert_leaves_the_file_untouched(tmp_path: Path) -> None:
    store = ParquetPriceStore(tmp_path)
    store.upsert("VCB", make_bars(4), SOURCE)
    path = tmp_path / "symbol=VCB" / "prices.parquet"
    stamp = path.stat().st_mtime_ns
    store.upsert("VCB", make_bars(4), SOURCE)
    assert path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob("*.tmp"))


def test_invalid_symbol_never_becomes_a_path(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = ParquetPriceStore(root)
    with pytest.raises(InvalidSymbolError):
        store.upsert("../x", make_bars(2), SOURCE)
    assert list(tmp_path.iterdir()) == []


def test_unknown_symbol_lists_at_most_twenty_known(tmp_path: Path) -> None:
    store = ParquetPriceStore(tmp_path)
    for i in range(23):
        store.upsert(f"S{i:02d}", make_bars(1), SOURCE)
    with pytest.raises(UnknownSymbolError, match=r"S19 and 3 more"):
        store.load("VCB")


def test_corrupt_metadata_is_a_clear_error(tmp_path: Path) -> None:
    store = ParquetPriceStore(tmp_path)
    store.upsert("VCB", make_bars(2), SOURCE)
    (tmp_path / "symbol=VCB" / "source.json").write_text("{not json")
    with pytest.raises(PriceStoreError, match=r"source.json"):
        store.source_info("VCB")
