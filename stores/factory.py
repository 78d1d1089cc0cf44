"""Open the configured PriceStore."""

from __future__ import annotations

from settings import DataSettings
from stores.base import PriceStore

__all__ = ["open_price_store"]


def open_price_store(data: DataSettings) -> PriceStore:
    """The store `data.source` names: Parquet under `data.prices_path`, or MongoDB per `data.mongodb`."""
    # Imported here so the Parquet path never pays for loading pymongo.
    if data.source == "mongodb":
        from stores.mongo import MongoPriceStore

        return MongoPriceStore(data.mongodb)
    from stores.parquet import ParquetPriceStore

    return ParquetPriceStore(data.prices_path)
