"""Training speed: fit time per model type on one demo symbol, and the model subflow with 1 worker vs
the default task runner, printed side by side.

    python -m benchmarks.training [--days 1500] [--symbols VCB,VIC,VHM] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1500, help="days of synthetic history per symbol")
    parser.add_argument("--symbols", default="VCB,VIC,VHM", help="comma-separated symbols")
    parser.add_argument("--quick", action="store_true", help="small models and few epochs (smoke run)")
    args = parser.parse_args(argv)

    import yaml
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.data_pipeline import data_pipeline
    from flows.model_pipeline import model_pipeline
    from models.registry import model_class
    from settings import load_settings
    from stores.base import SourceInfo
    from stores.features import history_before, read_split
    from stores.parquet import ParquetPriceStore
    from tasks.data.ingest import synthetic_market
    from tasks.modeling.tune import configured_params

    symbols = args.symbols.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        overrides: dict[str, dict] = {
            "data": {"prices_path": str(root / "prices"), "feature_store_path": str(root / "features")},
            "models": {"registry_path": str(root / "registry")},
            "execution": {"cache_dir": str(root / "cache")},
            "optimization": {"enabled": False},
        }
        if args.quick:
            overrides["models"]["params"] = {
                "arima": {"p": 1, "q": 0}, "catboost": {"iterations": 100},
                "lstm": {"max_epochs": 3, "hidden_size": 16}, "transformer": {"max_epochs": 3, "d_model": 16}}
        config = root / "bench.yml"
        config.write_text(yaml.safe_dump(overrides), encoding="utf-8")
        settings = load_settings(config)
        store = ParquetPriceStore(settings.data.prices_path)
        for symbol, bars in synthetic_market(symbols, args.days, seed=7, end=date(2026, 10, 30)).items():
            store.upsert(symbol, bars, SourceInfo(kind="synthetic", synthetic=True))
        refs = {s.ref.symbol: s.ref for s in data_pipeline(symbols=symbols, settings=settings)}

        ref = refs[symbols[0]]
        train, val = read_split(ref, "train"), read_split(ref, "val")
        print(f"\nfit time on {symbols[0]} ({train.height} train rows, {val.height} val rows, "
              f"{len(ref.features)} features, config params):")
        for model_type in settings.models.model_types:
            cls = model_class(model_type)
            started = time.perf_counter()
            model = cls(ref.features, configured_params(model_type, settings.models), seed=1).fit(train, val)
            fitted = time.perf_counter() - started
            started = time.perf_counter()
            model.predict(val, context=history_before(ref, val))
            print(f"  {model_type:<11} fit {fitted:7.2f} s   predict {1000 * (time.perf_counter() - started):7.1f} ms")

        timings = {}
        runners: tuple[tuple[str, Any], ...] = (("1 worker", ThreadPoolTaskRunner(max_workers=1)), ("default", None))
        for label, runner in runners:
            flow = model_pipeline.with_options(task_runner=runner) if runner else model_pipeline
            started = time.perf_counter()
            outcome = flow(settings=settings, refs=refs, retrain_all=True)
            timings[label] = time.perf_counter() - started
            assert not outcome.failures, outcome.failures
        jobs = len(symbols) * len(settings.models.model_types)
        print(f"\nmodel subflow, {len(symbols)} symbols x {len(settings.models.model_types)} models = {jobs} jobs "
              f"(cores: {os.cpu_count()}):")
        print(f"  1 worker {timings['1 worker']:7.1f} s   default runner {timings['default']:7.1f} s   "
              f"speed-up {timings['1 worker'] / timings['default']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
