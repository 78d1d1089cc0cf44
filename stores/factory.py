"""Build the stores the flows hand to their tasks, once per run, from settings: the one place that picks a
backend, so another (a MongoDB price store, a remote registry) drops in without touching a task."""

from __future__ import annotations

from settings import DataSettings, ModelsSettings
from stores.base import PriceStore
from stores.features import FeatureStore
from stores.registry import LocalModelRegistry, ModelRegistry

__all__ = ["open_feature_store", "open_price_store", "open_registry"]


def open_price_store(data: DataSettings) -> PriceStore:
    """The store `data.source` names: Parquet under `data.prices_path`, or MongoDB per `data.mongodb`."""
    # Imported here so the Parquet path never pays for loading pymongo.
    if data.source == "mongodb":
        from stores.mongo import MongoPriceStore

        return MongoPriceStore(data.mongodb)
    from stores.parquet import ParquetPriceStore

    return ParquetPriceStore(data.prices_path)


def open_feature_store(data: DataSettings) -> FeatureStore:
    """The feature store under `data.feature_store_path`."""
    return FeatureStore(data.feature_store_path)


def open_registry(models: ModelsSettings) -> ModelRegistry:
    """The model registry under `models.registry_path`."""
    return LocalModelRegistry(models.registry_path)
