"""Scale: the data flow, the model flow (small CatBoost and ARIMA) and the evaluation flow on 100 and 500
synthetic symbols (1,600 with --full): wall time, task runs, the share of wall time not spent in the work
itself, peak memory, and the fitted scaling exponent of cost against symbol count.

    python -m benchmarks.scale [--sizes 100 500] [--full] [--days 2500] [--no-models]
    python -m benchmarks.scale --with-models [--sizes 50 150 500] [--days 2500] [--watch 30]

"Work" is the same steps called as plain functions in one loop, without Prefect: the share not in the work
is 1 - work / wall, shown as 0 when the flow's batches, side by side on several cores, beat that one loop.
The bare polars feature engine on the same long frame is printed beside the data flow, as the yardstick of
what the data flow should cost (a ratio of 1: orchestration and the other steps free).

`--with-models`: the whole `training` flow instead, at each size with a universe of all the symbols
(benchmarks/scale_models.py): wall time per phase, peak memory, and each phase's exponent.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@dataclass
class Measured:
    label: str
    symbols: int
    wall: float
    task_runs: int
    ran: int
    work: float | None = None

    def line(self) -> str:
        share = "" if self.work is None else f"   not in work {max(0.0, 1 - self.work / self.wall):6.1%}"
        return (f"  {self.label:<24} {self.symbols:>5} symbols  wall {self.wall:8.1f} s  task runs "
                f"{self.task_runs:>5} (ran {self.ran:>5}){share}   peak rss {_peak_mb():6.0f} MB")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _task_runs(flow_run_id: Any) -> tuple[int, int]:
    """(task runs of the flow run and its subflows, those that were not served from the cache)."""
    from benchmarks.scale_models import flow_and_task_runs

    _, runs = flow_and_task_runs(flow_run_id)
    return len(runs), sum(r.state is not None and r.state.name != "Cached" for r in runs)


def _timed(label: str, symbols: int, run: Any, work: float | None = None) -> tuple[Measured, Any]:
    started = time.perf_counter()
    state = run()
    wall = time.perf_counter() - started
    total, ran = _task_runs(state.state_details.flow_run_id)
    return Measured(label, symbols, wall, total, ran, work), state.result(raise_on_failure=False)


def _bare_data_work(symbols: list[str], settings: Any) -> tuple[float, float]:
    """(seconds of the data steps as plain functions, seconds of the bare feature engine on a long frame,
    the best of three calls)."""
    import polars as pl

    from stores.factory import open_price_store
    from stores.features import FeatureStore
    from tasks.data.calendar import run_calendar
    from tasks.data.clean import clean
    from tasks.data.engineer import engineer
    from tasks.data.features import compute_features
    from tasks.data.load import load_prices
    from tasks.data.select import select
    from tasks.data.split import split
    from tasks.data.store import store

    data = settings.data
    prices, root = open_price_store(data), FeatureStore(Path(tempfile.mkdtemp(prefix="bare-features-")))
    started = time.perf_counter()
    cleaned_frames = []
    calendar = run_calendar({s: prices.load(s, data.start_date, data.end_date)["date"].to_list() for s in symbols},
                            data.features, data.split)
    for symbol in symbols:
        cleaned = clean.fn(load_prices.fn(symbol, data, prices), symbol, data.cleaning, settings.markets.of(symbol))
        selected = select.fn(engineer.fn(cleaned, symbol, data.features, data.split), symbol, data.features,
                             calendar, data.selection)
        store.fn(split.fn(selected, symbol, data.features, data.split, calendar), symbol, cleaned, selected, root,
                 data.features.horizon, calendar=calendar)
        cleaned_frames.append(cleaned.frame.with_columns(pl.lit(symbol).alias("symbol")))
    work = time.perf_counter() - started
    long = pl.concat(cleaned_frames)
    engine = []
    for _ in range(3):  # the yardstick: its best of three, so that a slow first call does not flatter the flow
        started = time.perf_counter()
        compute_features(long, data.features)
        engine.append(time.perf_counter() - started)
    return work, min(engine)


def _exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(cost) on log(symbols)."""
    if len(points) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [math.log(c) for _, c in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def run_size(n: int, days: int, models: bool) -> list[Measured]:
    import yaml

    from flows.data_pipeline import data_pipeline
    from flows.evaluation_pipeline import evaluation_pipeline
    from flows.model_pipeline import model_pipeline
    from settings import load_settings
    from stores.base import SourceInfo
    from stores.parquet import ParquetPriceStore
    from tasks.data.ingest import synthetic_market

    symbols = [f"S{i:04d}" for i in range(n)]
    out: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix=f"scale-{n}-") as tmp:
        root = Path(tmp)
        config = root / "scale.yml"
        config.write_text(yaml.safe_dump({
            "data": {"prices_path": str(root / "prices"), "feature_store_path": str(root / "features"),
                     "symbols": symbols[:3]},
            "models": {"registry_path": str(root / "registry"), "model_types": ["arima", "catboost"],
                       "params": {"arima": {"p": 1, "q": 0, "n_exog": 0}, "catboost": {"iterations": 30, "depth": 4}}},
            "optimization": {"enabled": False}, "deployment": {"enabled": False},
            "evaluation": {"cross_validation": {"cv_folds": 2}},
            "monitoring": {"history_path": str(root / "history.sqlite")},
            "execution": {"cache_dir": str(root / "cache"), "reports_dir": str(root / "reports")},
        }), encoding="utf-8")
        settings = load_settings(config)
        store = ParquetPriceStore(settings.data.prices_path)
        print(f"{n} symbols x {days} days: writing the synthetic market ...", flush=True)
        market = synthetic_market(symbols, days, seed=11, end=date(2026, 10, 30))
        for symbol, bars in market.items():
            store.upsert(symbol, bars, SourceInfo(kind="synthetic", synthetic=True))

        work, engine = _bare_data_work(symbols, settings)
        first, summaries = _timed("data flow, first run", n, lambda: data_pipeline(
            symbols=symbols, settings=settings, return_state=True), work)
        out.append(first)
        print(first.line(), f"  bare feature engine {engine:.1f} s (flow / engine {first.wall / engine:.0f}x)",
              flush=True)
        rerun, _ = _timed("data flow, unchanged", n, lambda: data_pipeline(
            symbols=symbols, settings=settings, return_state=True))
        out.append(rerun)
        print(rerun.line(), f"  ({rerun.wall / first.wall:.0%} of the first run)", flush=True)
        changed = market[symbols[0]].with_columns(close=market[symbols[0]]["close"] * 1.0001)
        store.upsert(symbols[0], changed, SourceInfo(kind="synthetic", synthetic=True))
        one, _ = _timed("data flow, one changed", n, lambda: data_pipeline(
            symbols=symbols, settings=settings, return_state=True))
        out.append(one)
        print(one.line(), flush=True)
        if models:
            refs = {s.ref.symbol: s.ref for s in summaries}
            trained, _ = _timed("model flow", n, lambda: model_pipeline(
                settings=settings, refs=refs, retrain_all=True, return_state=True))
            out.append(trained)
            print(trained.line(), flush=True)
            evaluated, _ = _timed("evaluation flow", n, lambda: evaluation_pipeline(
                refs, settings, return_state=True))
            out.append(evaluated)
            print(evaluated.line(), flush=True)
    return out


def _per_kind(names: list[str]) -> str:
    """Task run names with their symbol dropped, counted: "predict-test-arima x 28, report"."""
    import re
    from collections import Counter

    kinds = Counter(re.sub(r"-(?:[A-Z0-9]{2,}|_POOLED_)$", "", name) for name in names)
    return ", ".join(kind if n == 1 else f"{kind} x {n}" for kind, n in kinds.items()) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500], help="symbol counts")
    parser.add_argument("--full", action="store_true", help="add 1,600 symbols (the whole Vietnamese market)")
    parser.add_argument("--days", type=int, default=2500, help="days of history per symbol")
    parser.add_argument("--no-models", action="store_true", help="the data flow only")
    parser.add_argument("--with-models", action="store_true",
                        help="the whole training flow: pooled models over a universe of every symbol, per-symbol "
                             "models for a watch list (default sizes 50 150 500)")
    parser.add_argument("--watch", type=int, default=30, help="with --with-models: symbols of the watch list")
    args = parser.parse_args(argv)
    if args.with_models:
        return with_models(args.sizes if "--sizes" in (argv or sys.argv) else [50, 150, 500], args.days, args.watch)

    from prefect.testing.utilities import prefect_test_harness

    sizes = sorted(set(args.sizes + ([1600] if args.full else [])))
    results: list[Measured] = []
    with prefect_test_harness(server_startup_timeout=120):
        for n in sizes:
            results += run_size(n, args.days, not args.no_models)
        logging.getLogger("prefect.server").setLevel(logging.CRITICAL)  # its shutdown noise, not ours
    print("\nscaling exponent of wall time against symbols (1.0 = linear):")
    for label in dict.fromkeys(r.label for r in results):
        points = [(r.symbols, r.wall) for r in results if r.label == label]
        slope = _exponent(points)
        print(f"  {label:<24} {'n/a (one size)' if slope is None else f'{slope:.2f}'}")
    return 0


def with_models(sizes: list[int], days: int, watch: int) -> int:
    """`benchmarks.scale_models` at each size, each in a process of its own; a table per phase and the exponents."""
    import json
    import subprocess

    from benchmarks.scale_models import PHASES

    measured = []
    for n in sorted(set(sizes)):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "benchmarks.scale_models", str(n), "--days", str(days),
                               "--watch", str(watch)], capture_output=True, text=True, check=False)
        results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if not results:
            print(f"{n} symbols: the run died (exit {done.returncode}) after {time.perf_counter() - started:.0f} s:\n"
                  + "\n".join((done.stdout + done.stderr).splitlines()[-20:]))
            return 1
        one = json.loads(results[-1].removeprefix("RESULT "))
        measured.append(one)
        walls = one["phases"]
        print(f"{n} symbols x {days} days (watch list {one['watch']}): {one['state']}, total {walls['total']:.0f} s, "
              f"{one['task_runs']} task runs, peak memory {one['peak_rss_mb']:.0f} MB (flow process alone "
              f"{one['flow_process_peak_rss_mb']:.0f} MB), report {one['report_kb']:.0f} KB"
              + (f"\n  error: {one['error']}" if one["error"] else ""), flush=True)
        print(f"  at the memory peak ({one['peak_at_s']:.0f} s in): {_per_kind(one['running_at_peak'])}\n"
              "  longest task runs: " + ", ".join(f"{name} {s:.0f} s" for name, s in one["longest_task_runs"]),
              flush=True)
    print(f"\nthe training flow, {days} days, watch list {watch}; seconds of wall per phase "
          f"(cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}):")
    print(f"  {'phase':<22}" + "".join(f"{m['symbols']:>9}" for m in measured) + "   exponent")
    for phase in PHASES:
        row = [m["phases"][phase] for m in measured]
        slope = _exponent([(m["symbols"], w) for m, w in zip(measured, row, strict=True)]) if min(row) > 0.5 \
            else None
        print(f"  {phase:<22}" + "".join(f"{w:9.1f}" for w in row) + f"   {'-' if slope is None else f'{slope:.2f}'}")
    rss = [m["peak_rss_mb"] for m in measured]
    print(f"  {'peak memory (MB)':<22}" + "".join(f"{r:9.0f}" for r in rss) + "   "
          + (f"{_exponent([(m['symbols'], r) for m, r in zip(measured, rss, strict=True)]):.2f}"
             if len(measured) > 1 else "-"))
    return 0 if all(m["error"] is None for m in measured) else 1


if __name__ == "__main__":
    sys.exit(main())
