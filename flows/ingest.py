"""Fill the price store: `demo` writes a synthetic market, `csv` imports a real CSV or Parquet file.

Usage:
    python -m flows.ingest demo --symbols VCB,VIC,VHM [--universe VN30] --days 1500 --seed 7
        [--edge reversal|null|none]
    python -m flows.ingest csv prices.csv --symbol VCB
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import polars as pl

from flows.cli import add_debug, one_line, print_traceback
from schemas import InvalidSymbolError, validate_symbol
from settings import ConfigError, Settings, load_settings
from stores.base import PriceStore, PriceStoreError, SourceInfo
from stores.factory import open_price_store
from tasks.data.ingest import (
    PLANTED_EDGES,
    check_incoming,
    planted_effect,
    read_price_file,
    synthetic_market,
    window_warning,
)

__all__ = ["main"]

_DESCRIPTION = "Fill the price store with a synthetic demo market or a real price file."


def _symbol_list(text: str) -> list[str]:
    symbols = [validate_symbol(s.strip().upper()) for s in text.split(",") if s.strip()]
    if not symbols:
        raise ValueError(f"--symbols {text!r} names no symbol (leave the flag out for data.symbols)")
    return symbols


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.ingest", description=_DESCRIPTION)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="YAML settings file (default: $STOCK_AI_CONFIG or "
                                                    "config/pipeline_config.yml)")
    common.add_argument("--source", choices=["parquet", "mongodb"], help="price store (overrides data.source)")
    add_debug(common)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,csv}")

    demo = commands.add_parser("demo", parents=[common], help="write a synthetic demo market",
                               description="Write a deterministic synthetic market, marked synthetic. By default "
                                           "it holds a planted 1-day reversal and a slow pull of each price toward "
                                           "its level for models to find, and nothing else (--edge).")
    demo.add_argument("--symbols", type=str, help="comma-separated symbols (default: data.symbols)")
    demo.add_argument("--universe", metavar="NAME", help="also every symbol of this universe (data.universes)")
    demo.add_argument("--days", type=int, default=1500, help="business days per symbol (default: 1500)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    demo.add_argument("--end", type=_iso_date, default=None, help="last day, YYYY-MM-DD (default: today)")
    demo.add_argument("--edge", choices=list(PLANTED_EDGES), default="reversion",
                      help="what there is to find (default: reversion, a 1-day reversal of each symbol's "
                           "idiosyncratic return and a slow pull of its price toward its level, nothing else; "
                           "reversal: the 1-day reversal alone; null: nothing at all; none: the market's own "
                           "structure without them; see docs/synthetic_market.md)")

    csv = commands.add_parser("csv", parents=[common], help="import a CSV or Parquet price file",
                              description="Import daily bars (date, open, high, low, close, volume) "
                                          "from a .csv or .parquet file; re-importing adds no duplicates.")
    csv.add_argument("file", type=Path, help="the .csv or .parquet file")
    csv.add_argument("--symbol", required=True, help="the symbol these prices belong to")
    return parser


def _overrides(args: argparse.Namespace) -> Mapping[str, Any]:
    return {"data": {"source": args.source}} if args.source else {}


def _check_not_mixing(store: PriceStore, symbol: str, synthetic: bool) -> None:
    """Refuse to merge synthetic and real bars under one symbol: the result would be neither."""
    current = store.source_info(symbol)
    if current is None or current.synthetic == synthetic:
        return
    held, incoming = ("real", "synthetic") if synthetic else ("synthetic", "real")
    raise ValueError(
        f"{symbol} in {store.location()} holds {held} prices ({current.kind}: {current.detail}); "
        f"refusing to merge {incoming} prices into them. Remove {symbol} from the store first, "
        f"or point --config at another store."
    )


def _today(settings: Settings, symbol: str) -> date:
    """Today's date at `symbol`'s exchange."""
    return datetime.now(ZoneInfo(settings.markets.of(symbol).timezone)).date()


def _write(store: PriceStore, symbol: str, bars: pl.DataFrame, source: SourceInfo, settings: Settings) -> None:
    incoming = check_incoming(bars, symbol, _today(settings, symbol))
    if incoming.duplicates:
        print(f"{symbol}: {incoming.duplicates} duplicate date row(s) in the input, the first on "
              f"{incoming.first_duplicate}: the last row of each date is kept")
    added = store.upsert(symbol, incoming.bars, source)
    dates = incoming.bars["date"]
    first, last = cast(date, dates.min()), cast(date, dates.max())
    print(f"{symbol}: {incoming.bars.height} rows written, {added} new days ({first} to {last})")
    warning = window_warning(symbol, store.load(symbol)["date"], settings.data.start_date, settings.data.end_date)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def _run(args: argparse.Namespace) -> None:
    settings = load_settings(args.config, _overrides(args))
    store = open_price_store(settings.data)
    try:
        if args.command == "demo":
            symbols = _symbol_list(args.symbols) if args.symbols is not None else list(settings.data.symbols)
            symbols = list(dict.fromkeys([*symbols, *(settings.data.universe_symbols(args.universe) or ())]))
            end = args.end or min(_today(settings, s) for s in symbols)
            edge = PLANTED_EDGES[args.edge]
            detail = (f"synthetic demo market, seed={args.seed} days={args.days} end={end}; "
                      f"{planted_effect(edge.reversal, edge.structure, edge.pull)}")
            source = SourceInfo(kind="synthetic", detail=detail, synthetic=True,
                                extra={"generator": "tasks.data.ingest.synthetic_market", "edge": args.edge,
                                       "reversal": str(edge.reversal), "structure": str(edge.structure),
                                       "pull": str(edge.pull)})
            for symbol in symbols:
                _check_not_mixing(store, symbol, synthetic=True)
            for symbol, bars in synthetic_market(symbols, args.days, args.seed, end, reversal=edge.reversal,
                                                 structure=edge.structure, pull=edge.pull).items():
                _write(store, symbol, bars, source, settings)
        else:
            symbol = validate_symbol(args.symbol.strip().upper())
            bars = read_price_file(args.file, symbol=symbol)
            _check_not_mixing(store, symbol, synthetic=False)
            kind = "csv" if args.file.suffix.lower() == ".csv" else "parquet"
            _write(store, symbol, bars, SourceInfo(
                kind=kind, detail=args.file.name, extra={"path": str(args.file.resolve())}), settings)
        print(f"store: {settings.data.source} at {store.location()}")
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Run the ingest CLI; returns the exit code (2 with a one-line message on bad input)."""
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except (ConfigError, InvalidSymbolError, ValueError, PriceStoreError, OSError) as exc:
        if args.debug:
            print_traceback()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            print_traceback()
        print(f"ingest failed: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
