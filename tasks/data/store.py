"""store: write one symbol's splits to the Parquet feature store with a manifest; publish: make that snapshot the
current one (I/O: retried on file errors that may heal, as often and as late as execution.io_retries and
io_retry_delays say by default). `store` is cached, `publish` is not, so a cache hit still moves the current
snapshot."""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas import FeatureSetRef
from settings import ExecutionSettings
from stores.base import PRICE_COLUMNS
from stores.features import FeatureStore
from tasks.data.calendar import RunCalendar
from tasks.data.clean import Cleaned
from tasks.data.features import LABEL
from tasks.data.select import Selected
from tasks.data.split import PART, Splits
from tasks.operations.caching import ContentInputs, ModuleSources, code_version, file_system_error
from tasks.operations.monitor import resource_logged

__all__ = ["PIPELINE_MODULES", "current_feature_sets", "publish", "store"]

PIPELINE_MODULES = ("tasks.data.load", "tasks.data.clean", "tasks.data.sessions", "tasks.data.features",
                    "tasks.data.engineer", "tasks.data.select", "tasks.data.calendar", "tasks.data.split",
                    "tasks.data.store", "stores.features")

_IO = ExecutionSettings()
"""the settings' default retries; `with_options(**io_options(settings.execution))` gives the configured ones."""


@task(
    name="store",
    task_run_name="store-{symbol}",
    cache_policy=ContentInputs() + ModuleSources(modules=("tasks.data.store", "stores.features")),
    retries=_IO.io_retries,
    retry_delay_seconds=list(_IO.io_retry_delays),
    retry_condition_fn=file_system_error,
)
@resource_logged
def store(splits: Splits, symbol: str, cleaned: Cleaned, selected: Selected, feature_store: FeatureStore,
          horizon: int, input_key: str | None = None, calendar: RunCalendar | None = None) -> FeatureSetRef:
    """Write the splits atomically as a snapshot (not yet the current one) and return a small reference to it.

    `input_key` records what the snapshot was built from (tasks/data/batch.py), so an unchanged rerun can skip it;
    `calendar` the run's split dates it was cut by.
    """
    prices = cleaned.frame
    metadata = {
        "input_key": input_key,
        "horizon": horizon,
        "data_first_date": str(prices["date"].min()) if prices.height else None,
        "data_watermark": str(prices["date"].max()) if prices.height else None,
        "code_version": code_version(PIPELINE_MODULES),
        "cleaning": asdict(cleaned.report),
        "selection": {"engineered": selected.engineered, "kept": len(selected.report.kept),
                      "dropped": selected.report.dropped},
        "split_dates": {name: [str(part["date"].min()), str(part["date"].max())] if part.height else None
                        for name, part in splits.parts().items()},
        "calendar": calendar.to_json() if calendar else None,
        "engineered_features": [c for c in splits.all.columns if c not in (*PRICE_COLUMNS, LABEL, PART)],
    }
    return feature_store.write(symbol, splits.all, selected.report.kept, LABEL, metadata, publish=False)


@task(name="publish", task_run_name="publish-{ref.symbol}", cache_policy=NO_CACHE, retries=_IO.io_retries,
      retry_delay_seconds=list(_IO.io_retry_delays), retry_condition_fn=file_system_error)
def publish(ref: FeatureSetRef, feature_store: FeatureStore) -> FeatureSetRef:
    """Make the snapshot `ref` its symbol's current feature set, after checking its files."""
    return feature_store.publish(ref)


@task(name="locate-features", cache_policy=NO_CACHE)
@resource_logged
def current_feature_sets(symbols: list[str], feature_store: FeatureStore) -> dict[str, FeatureSetRef]:
    """The current feature set of every symbol; a missing one is an error naming the symbol."""
    return {symbol: feature_store.current(symbol) for symbol in symbols}
