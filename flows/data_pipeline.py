"""Flow `data-pipeline`: load -> clean -> engineer -> select -> split -> store -> publish, mapped over symbols.

CLI: python -m flows.data_pipeline --symbols VCB,VIC,VHM [--config FILE] [--source mongodb] [--refresh-cache]
"""

from __future__ import annotations

import sys

from flows.cli import data_parser, one_line, parse_symbols, prefect_environment, quiet_server_shutdown, short_tracebacks

if __name__ == "__main__":
    data_parser().parse_args()  # answer --help and usage errors before the slow imports below
    prefect_environment()

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.futures import PrefectFuture, wait

from schemas import DataSummary, FeatureSetRef, validate_symbol
from settings import ConfigError, Settings, load_settings
from stores.base import PriceStoreError
from stores.features import FeatureStore, FeatureStoreError
from tasks.caching import cache_options, io_options
from tasks.clean import clean
from tasks.engineer import engineer
from tasks.load import check_prices, load_prices
from tasks.select import select
from tasks.split import split
from tasks.store import publish, store

__all__ = ["DataPipelineError", "data_pipeline", "main"]


class DataPipelineError(RuntimeError):
    """One or more symbols failed; the message lists each with the step and the error."""


@dataclass(frozen=True)
class _SymbolRun:
    symbol: str
    steps: dict[str, PrefectFuture]  # step name -> that step's future for this symbol


def _intact(stored: list[PrefectFuture[FeatureSetRef]], root: Path,
            store_again: Callable[[int], PrefectFuture[FeatureSetRef]]) -> list[PrefectFuture[FeatureSetRef]]:
    """Accept a stored reference only while its snapshot is intact: a cache hit may point at files deleted or
    altered since. Those symbols are stored again (`store_again(index)`, bypassing the cache)."""
    wait(stored)
    checked = []
    for i, future in enumerate(stored):
        if future.state.name == "Cached":
            ref = future.result()
            try:
                FeatureStore(root).check(ref)
            except FeatureStoreError as exc:
                get_run_logger().warning("%s: cached feature set unusable (%s): storing it again", ref.symbol, exc)
                future = store_again(i)
        checked.append(future)
    return checked


def _summarize(runs: list[_SymbolRun]) -> list[DataSummary]:
    """Wait for every symbol, then return summaries, or raise one error naming every failed symbol."""
    wait([f for run in runs for f in run.steps.values()])
    failures, summaries = [], []
    for run in runs:
        failed = next(((step, f.state) for step, f in run.steps.items() if not f.state.is_completed()), None)
        if failed is not None:
            step, state = failed
            error = state.result(raise_on_failure=False)
            failures.append(f"  {run.symbol}: {step} failed: {error}")
            continue
        result = {step: f.result() for step, f in run.steps.items()}
        cacheable = [f for step, f in run.steps.items() if step != "publish"]
        summaries.append(DataSummary(
            ref=result["publish"], cleaning=result["clean"].report, selection=result["select"].report,
            features_engineered=result["select"].engineered,
            cached_tasks=sum(f.state.name == "Cached" for f in cacheable), total_tasks=len(cacheable),
        ))
    if failures:
        raise DataPipelineError("data pipeline failed for:\n" + "\n".join(failures))
    return summaries


@flow(name="data-pipeline", log_prints=True)
def data_pipeline(symbols: list[str] | None = None, settings: Settings | None = None,
                  refresh_cache: bool = False) -> list[DataSummary]:
    """Build and store the feature sets of `symbols` (default: data.symbols from the settings)."""
    settings = settings or load_settings()
    data, execution = settings.data, settings.execution
    symbols = [validate_symbol(s) for s in (symbols or data.symbols)]
    cached = cache_options(execution, refresh_cache)

    prices = load_prices.with_options(**cached, **io_options(execution)).map(symbols, unmapped(data))
    cleaned = clean.with_options(**cached).map(prices, symbols, unmapped(data.cleaning),
                                               [settings.markets.of(s) for s in symbols])
    engineered = engineer.with_options(**cached).map(
        cleaned, symbols, unmapped(data.features), unmapped(data.split))
    selected = select.with_options(**cached).map(
        engineered, symbols, unmapped(data.features), unmapped(data.split), unmapped(data.selection))
    splits = split.with_options(**cached).map(selected, symbols, unmapped(data.features), unmapped(data.split))
    root, horizon = data.feature_store_path, data.features.horizon
    cached_store = store.with_options(**cached, **io_options(execution)).map(
        splits, symbols, cleaned, selected, unmapped(root), unmapped(horizon))
    store_again = store.with_options(**cache_options(execution, refresh=True), **io_options(execution))
    stored = _intact(list(cached_store), root, lambda i: store_again.submit(
        splits[i].result(), symbols[i], cleaned[i].result(), selected[i].result(), root, horizon))
    # Uncached: a cache hit of `store` (say config A after B) must still make its snapshot the current one.
    published = publish.with_options(**io_options(execution)).map(stored, unmapped(root))

    steps: dict[str, list[PrefectFuture[Any]]] = {
        "load": prices, "clean": cleaned, "engineer": engineered, "select": selected,
        "split": splits, "store": stored, "publish": published}
    return _summarize([_SymbolRun(s, {name: futures[i] for name, futures in steps.items()})
                       for i, s in enumerate(symbols)])


def format_summary(summaries: Sequence[DataSummary], location: str) -> str:
    """The per-symbol table the CLI prints."""
    lines = [f"{'symbol':<8} {'rows':>6} {'features':>9} {'train':>6} {'val':>5} {'test':>5} {'latest':>6} "
             f"{'fixes':>5} {'cached':>6}"]
    for s in summaries:
        rows = s.ref.rows
        lines.append(
            f"{s.ref.symbol:<8} {s.cleaning.rows_out:>6} {len(s.selection.kept):>4}/{s.features_engineered:<4} "
            f"{rows['train']:>6} {rows['val']:>5} {rows['test']:>5} {rows['latest']:>6} "
            f"{s.cleaning.total_fixes:>5} {s.cached_tasks:>3}/{s.total_tasks}")
        for rule, count in sorted(s.cleaning.fixes.items()):
            kept = " (the last row of each date kept)" if rule == "duplicate_dates_dropped" else ""
            lines.append(f"         clean: {rule} x{count}{kept}")
        if s.cleaning.flagged_jumps:
            lines.append(f"         clean: {len(s.cleaning.flagged_jumps)} extreme jump(s) flagged, first "
                         f"{s.cleaning.flagged_jumps[0]}")
        if s.cleaning.zero_volume_days:
            lines.append(f"         clean: {len(s.cleaning.zero_volume_days)} day(s) with zero volume flagged, first "
                         f"{s.cleaning.zero_volume_days[0]}")
        for gap in s.cleaning.gaps:
            lines.append(f"         clean: {gap.sessions} trading sessions missing between {gap.after} and "
                         f"{gap.before}")
    lines.append(f"feature store: {location}")
    return "\n".join(lines)


_INPUT_ERRORS = (ConfigError, ValueError, PriceStoreError, DataPipelineError)


def main(argv: list[str] | None = None) -> int:
    """Run the data pipeline from the command line; returns the exit code (2 on bad input)."""
    args = data_parser().parse_args(argv)

    try:
        overrides = {"data": {"source": args.source}} if args.source else {}
        settings = load_settings(args.config, overrides)
        symbols = parse_symbols(args.symbols) if args.symbols is not None else list(settings.data.symbols)
        check_prices(symbols, settings.data)
        with short_tracebacks(_INPUT_ERRORS):
            summaries = data_pipeline(symbols=symbols, settings=settings, refresh_cache=args.refresh_cache)
    except _INPUT_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        quiet_server_shutdown()
    print(format_summary(summaries, str(settings.data.feature_store_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
