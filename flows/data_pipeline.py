"""Flow `data-pipeline`: load -> clean -> engineer -> select -> split -> store -> publish, per batch of symbols.

CLI: python -m flows.data_pipeline --symbols VCB,VIC,VHM [--universe VN30] [--config FILE] [--source mongodb]
     [--refresh-cache]
The symbols of one run share one calendar (tasks/data/calendar.py): build the watch list and its universe together.
"""

from __future__ import annotations

import os
import sys

from flows.cli import data_parser, prefect_environment, run_cli

if __name__ == "__main__":
    data_parser().parse_args()  # answer --help and usage errors before the slow imports below
    prefect_environment()

from dataclasses import dataclass
from typing import Any

from prefect import flow
from prefect.futures import PrefectFuture, wait

from schemas import DataSummary, FeatureSetRef, validate_symbol
from settings import Market, Settings, load_settings
from stores.base import PriceStore, PriceStoreError
from stores.factory import open_feature_store, open_price_store
from stores.features import FeatureStore
from tasks.data.batch import (
    STEPS,
    Batch,
    Stage,
    adopt,
    clean_batch,
    engineer_batch,
    load_batch,
    plan_batches,
    publish_batch,
    select_batch,
    split_batch,
    store_batch,
)
from tasks.data.load import check_prices
from tasks.delivery.summaries import format_summary
from tasks.operations.caching import io_options, prune_cache

__all__ = ["DataPipelineError", "data_pipeline", "main"]


class DataPipelineError(RuntimeError):
    """One or more symbols failed; the message lists each with the step and the error."""


@dataclass(frozen=True)
class _BatchRun:
    batch: Batch
    steps: dict[str, PrefectFuture[Any]]  # step name -> that step's future for the batch


def _summarize(runs: list[_BatchRun], fresh: list[Batch], feature_store: FeatureStore) -> list[DataSummary]:
    """Wait for every batch, then return a summary per symbol (in the order asked), or raise one error
    naming every failed symbol with its step."""
    wait([f for run in runs for f in run.steps.values()])
    done: dict[str, DataSummary] = {s: adopt(feature_store, ref) for batch in fresh for s, ref in batch.found.items()}
    failures: dict[str, str] = {}
    for run in runs:
        broken = next(((step, f.state) for step, f in run.steps.items() if not f.state.is_completed()), None)
        if broken is not None:  # a whole step failed (not one symbol): every symbol of the batch did
            step, state = broken
            for symbol in run.batch.symbols:
                failures[symbol] = f"{step} failed: {state.result(raise_on_failure=False)}"
            continue
        result = {step: f.result() for step, f in run.steps.items()}
        published: Stage[FeatureSetRef] = result["publish"]
        for symbol, (step, error) in published.failed.items():
            failures[symbol] = f"{step} failed: {error}"
        for symbol, ref in published.values.items():
            cleaned, selected = result["clean"].values[symbol], result["select"].values[symbol]
            done[symbol] = DataSummary(ref, cleaned.report, selected.report, selected.engineered, 0, len(STEPS))
    if failures:
        raise DataPipelineError("data pipeline failed for:\n" + "\n".join(
            f"  {symbol}: {error}" for symbol, error in failures.items()))
    return [done[s] for batch in [*fresh, *(r.batch for r in runs)] for s in batch.symbols
            if s in done and s not in failures]


@flow(name="data-pipeline", log_prints=True)
def data_pipeline(symbols: list[str] | None = None, settings: Settings | None = None,
                  refresh_cache: bool = False) -> list[DataSummary]:
    """Build and store the feature sets of `symbols` (default: data.symbols from the settings), batch by batch
    (execution.batch_size symbols per task run of each step); batches whose snapshots are current are skipped."""
    settings = settings or load_settings()
    data, execution = settings.data, settings.execution
    symbols = list(dict.fromkeys(validate_symbol(s) for s in (symbols or data.symbols)))
    pruned = prune_cache(execution.cache_dir, execution.cache_max_age_days, execution.cache_max_mb)
    if pruned.removed:
        print(f"cache: removed {pruned.removed} result(s), {pruned.freed_mb:.0f} MB, older than "
              f"{execution.cache_max_age_days:g} days or beyond {execution.cache_max_mb:g} MB; "
              f"{pruned.kept_mb:.0f} MB kept in {execution.cache_dir}")

    markets = {s: settings.markets.of(s) for s in symbols}
    price_store, feature_store = open_price_store(data), open_feature_store(data)
    try:
        return _run_batches(symbols, price_store, feature_store, markets, settings, refresh_cache)
    finally:
        price_store.close()


def _run_batches(symbols: list[str], price_store: PriceStore, feature_store: FeatureStore,
                 markets: dict[str, Market], settings: Settings, refresh_cache: bool) -> list[DataSummary]:
    data, execution = settings.data, settings.execution
    batches = plan_batches(symbols, price_store, feature_store, data, markets, execution.batch_size,
                           os.cpu_count() or 1)
    fresh = [] if refresh_cache else [b for b in batches if b.fresh]
    if fresh:
        print(f"{sum(len(b.symbols) for b in fresh)} symbol(s) in {len(fresh)} batch(es) unchanged since their "
              f"feature sets were stored: nothing to run for them")
    io = io_options(execution)
    runs = []
    for batch in (b for b in batches if b not in fresh):
        # Futures are passed on as arguments: Prefect resolves them, its typed `submit` does not say so.
        loaded: Any = load_batch.submit(batch, price_store, data)
        cleaned: Any = clean_batch.submit(loaded, data, markets)
        engineered: Any = engineer_batch.submit(cleaned, data)
        selected: Any = select_batch.submit(engineered, data)
        splits: Any = split_batch.submit(selected, data)
        stored: Any = store_batch.with_options(**io).submit(splits, cleaned, selected, feature_store, data)
        published = publish_batch.with_options(**io).submit(stored, feature_store)
        runs.append(_BatchRun(batch, {"load": loaded, "clean": cleaned, "engineer": engineered,
                                      "select": selected, "split": splits, "store": stored, "publish": published}))
    return _summarize(runs, fresh, feature_store)


def main(argv: list[str] | None = None) -> int:
    """Run the data pipeline from the command line; returns the exit code (2 on bad input)."""
    args = data_parser().parse_args(argv)

    def run(settings: Settings, symbols: list[str]) -> list[DataSummary]:
        members = settings.data.universe_symbols(args.universe or settings.data.universe) or ()
        symbols = list(dict.fromkeys([*symbols, *members]))
        check_prices(symbols, settings.data)
        return data_pipeline(symbols=symbols, settings=settings, refresh_cache=args.refresh_cache)

    def report(summaries: list[DataSummary], settings: Settings) -> int:
        print(format_summary(summaries, str(settings.data.feature_store_path)))
        return 0

    return run_cli(args, run, report, failed="data pipeline", input_errors=(PriceStoreError, DataPipelineError),
                   overrides={"data": {"source": args.source}} if args.source else {})


if __name__ == "__main__":
    sys.exit(main())
