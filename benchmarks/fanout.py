"""Fan-out scaling: the model subflow on a local Dask cluster of 1 vs N worker processes.

    python -m benchmarks.fanout [--days 1500] [--symbols VCB,VIC,VHM,FPT] [--workers 1,2] [--quick]

Prefect's share of a run is the wall time not spent fitting, as a fraction of the wall time:
(wall - sum(TrainResult.duration_seconds) / workers) / wall. It covers cluster start-up, task
orchestration, data loading, prediction and registry writes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

MODEL_TYPES = ["catboost", "lstm"]
# Config params, trimmed so one single-worker run takes about a minute on two cores.
PARAMS = {"catboost": {"iterations": 400, "depth": 6, "learning_rate": 0.05},
          "lstm": {"lookback": 20, "hidden_size": 32, "num_layers": 1, "max_epochs": 15, "patience": 5}}
QUICK_PARAMS = {"catboost": {"iterations": 100}, "lstm": {"max_epochs": 3, "hidden_size": 16}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1500, help="days of synthetic history per symbol")
    parser.add_argument("--symbols", default="VCB,VIC,VHM,FPT", help="comma-separated symbols")
    parser.add_argument("--workers", default="1,2", help="comma-separated Dask worker counts to compare")
    parser.add_argument("--quick", action="store_true", help="small models and few epochs (smoke run)")
    args = parser.parse_args(argv)

    import yaml

    from flows.data_pipeline import data_pipeline
    from flows.model_pipeline import model_pipeline
    from flows.runners import task_runner
    from settings import load_settings
    from stores.base import SourceInfo
    from stores.parquet import ParquetPriceStore
    from tasks.data.ingest import synthetic_market

    symbols = args.symbols.split(",")
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "bench.yml"
        config.write_text(yaml.safe_dump({
            "data": {"prices_path": str(root / "prices"), "feature_store_path": str(root / "features")},
            "models": {"registry_path": str(root / "registry"), "model_types": MODEL_TYPES,
                       "params": QUICK_PARAMS if args.quick else PARAMS},
            "execution": {"cache_dir": str(root / "cache"), "task_runner": "dask"},
            "optimization": {"enabled": False},
        }), encoding="utf-8")
        settings = load_settings(config)
        store = ParquetPriceStore(settings.data.prices_path)
        for symbol, bars in synthetic_market(symbols, args.days, seed=7, end=date(2026, 10, 30)).items():
            store.upsert(symbol, bars, SourceInfo(kind="synthetic", synthetic=True))
        refs = {s.ref.symbol: s.ref for s in data_pipeline(symbols=symbols, settings=settings)}

        load = os.getloadavg()[0]  # other work on the machine skews the comparison
        rows = []
        for workers in counts:
            execution = settings.execution.model_copy(update={"dask_workers": workers})
            flow = model_pipeline.with_options(task_runner=task_runner(execution))
            started = time.perf_counter()
            outcome = flow(settings=settings, refs=refs, retrain_all=True)
            wall = time.perf_counter() - started
            assert not outcome.failures, outcome.failures
            fit = sum(r.duration_seconds for r in outcome.results)
            rows.append((workers, wall, fit, (wall - fit / workers) / wall))

    print(f"\nmodel subflow on a local Dask cluster, {len(symbols)} symbols x {len(MODEL_TYPES)} models "
          f"({', '.join(MODEL_TYPES)}) = {len(symbols) * len(MODEL_TYPES)} jobs, cores: {os.cpu_count()}, "
          f"load average before: {load:.1f}:")
    base = rows[0][1]
    for workers, wall, fit, share in rows:
        print(f"  {workers} worker{'s' if workers > 1 else ' '}  wall {wall:6.1f} s   sum of fits {fit:6.1f} s   "
              f"speed-up {base / wall:4.2f}x   Prefect share {100 * share:4.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
