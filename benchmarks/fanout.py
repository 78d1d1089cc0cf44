"""Fan-out scaling: the model subflow's per-symbol CatBoost and ARIMA jobs on a Dask cluster of 1 vs N workers.

    python -m benchmarks.fanout [--days 1500] [--symbols VCB,VIC,...] [--workers 1,2] [--runs 5] [--quick]

Each worker count gets its own cluster of single-threaded worker processes, all started before the runs and
reached through `execution.dask_address`, as an existing cluster is. The first run on each is cold: every worker
imports the task modules when its first task arrives. Then `--runs` warm runs on each, the steady state of a
long-lived cluster, taking turns so that other work on the machine slows every worker count alike; the median of
them gives the fan-out's speed-up.

The VN30 symbols by default (config/pipeline_config.yml's universe: 60 jobs), a watch list the size of the one
the product ships. A run's fixed cost (the flow run, one tuning task run per model type, the progress artifacts,
and up to 1 s at the end of every flow run waiting for Prefect's heartbeat thread, which sleeps in 1 s steps) is
about 2 s: next to the fits of 8 symbols (about 9 s) it caps their speed-up near 1.6x (`--symbols` to measure it).

Prefect's share of a run is the wall time not spent fitting, as a fraction of the wall time:
(wall - sum(TrainResult.duration_seconds) / workers) / wall. It covers task orchestration, data loading,
prediction and registry writes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

if TYPE_CHECKING:
    from schemas import FeatureSetRef
    from settings import Settings

MODEL_TYPES = ["catboost", "arima"]
# The shipped params (config/pipeline_config.yml): the fits an untuned run makes.
PARAMS = {"catboost": {"iterations": 800, "depth": 6, "learning_rate": 0.05},
          "arima": {"p": 1, "d": 0, "q": 1, "trend": "c", "n_exog": 3}}
QUICK_PARAMS = {"catboost": {"iterations": 100}, "arima": {}}


@dataclass(frozen=True)
class Run:
    """One model-subflow run: its wall time and the sum of its fits' wall times."""

    wall: float
    fits: float


@dataclass(frozen=True)
class Measured:
    """The runs on one cluster of `workers` worker processes."""

    workers: int
    startup: float
    """seconds until the scheduler saw every worker."""
    cold: Run
    warm: list[Run]

    @property
    def wall(self) -> float:
        return statistics.median(run.wall for run in self.warm)

    @property
    def fits(self) -> float:
        return statistics.median(run.fits for run in self.warm)


def timed_run(settings: Settings, refs: dict[str, FeatureSetRef]) -> Run:
    """Train every job of `refs` on the runner `settings.execution` asks for."""
    from flows.model_pipeline import model_pipeline
    from flows.runners import task_runner

    flow = model_pipeline.with_options(task_runner=task_runner(settings.execution))
    started = time.perf_counter()
    outcome = flow(settings=settings, refs=refs, retrain_all=True)
    wall = time.perf_counter() - started
    assert not outcome.failures, outcome.failures
    return Run(wall, sum(r.duration_seconds for r in outcome.results))


@contextmanager
def clusters(counts: list[int]) -> Iterator[list[tuple[int, str, float]]]:
    """A local cluster of single-threaded worker processes per worker count, all up at once: (workers, scheduler
    address, seconds until it was up)."""
    from distributed import LocalCluster

    from flows.runners import api_url, dask_cluster_kwargs

    with ExitStack() as stack:
        started = []
        for workers in counts:
            begun = time.perf_counter()
            cluster = stack.enter_context(LocalCluster(**dask_cluster_kwargs(workers, api_url())))
            cluster.wait_for_workers(workers)
            started.append((workers, cluster.scheduler_address, time.perf_counter() - begun))
        yield started


def measure(settings: Settings, refs: dict[str, FeatureSetRef], counts: list[int], runs: int) -> list[Measured]:
    """A cold run on each cluster, then `runs` rounds of one warm run on each, taking turns, so that other work on
    the machine slows every worker count alike."""
    with clusters(counts) as started:
        settings_of = [settings.model_copy(update={"execution": settings.execution.model_copy(
            update={"dask_address": address})}) for _, address, _ in started]
        cold = [timed_run(on_cluster, refs) for on_cluster in settings_of]
        warm: list[list[Run]] = [[] for _ in started]
        for _ in range(runs):
            for runs_of, on_cluster in zip(warm, settings_of, strict=True):
                runs_of.append(timed_run(on_cluster, refs))
    return [Measured(workers, startup, first, rest)
            for (workers, _, startup), first, rest in zip(started, cold, warm, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1500, help="days of synthetic history per symbol")
    parser.add_argument("--symbols", help="comma-separated symbols (default: the VN30 universe)")
    parser.add_argument("--workers", default="1,2", help="comma-separated Dask worker counts to compare")
    parser.add_argument("--runs", type=int, default=5, help="warm runs per worker count (their median counts)")
    parser.add_argument("--quick", action="store_true", help="small models (smoke run)")
    args = parser.parse_args(argv)
    load = os.getloadavg()  # other work on the machine slows the runs

    import yaml

    from flows.data_pipeline import data_pipeline
    from settings import load_settings
    from stores.base import SourceInfo
    from stores.parquet import ParquetPriceStore
    from tasks.data.ingest import synthetic_market

    symbols = args.symbols.split(",") if args.symbols else list(load_settings(None).data.universes["VN30"])
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "bench.yml"
        config.write_text(yaml.safe_dump({
            "data": {"prices_path": str(root / "prices"), "feature_store_path": str(root / "features")},
            "models": {"registry_path": str(root / "registry"), "model_types": MODEL_TYPES, "scope": "per_symbol",
                       "params": QUICK_PARAMS if args.quick else PARAMS},
            "execution": {"cache_dir": str(root / "cache"), "task_runner": "dask"},
            "optimization": {"enabled": False},
        }), encoding="utf-8")
        settings = load_settings(config)
        store = ParquetPriceStore(settings.data.prices_path)
        for symbol, bars in synthetic_market(symbols, args.days, seed=7, end=date(2026, 10, 30)).items():
            store.upsert(symbol, bars, SourceInfo(kind="synthetic", synthetic=True))
        refs = {s.ref.symbol: s.ref for s in data_pipeline(symbols=symbols, settings=settings)}
        rows = measure(settings, refs, counts, args.runs)
        after = os.getloadavg()

    print(f"\nmodel subflow on a Dask cluster, {len(symbols)} symbols x {len(MODEL_TYPES)} per-symbol models "
          f"({', '.join(MODEL_TYPES)}) = {len(symbols) * len(MODEL_TYPES)} jobs, {args.days} days, "
          f"cores: {os.cpu_count()}, load average (1, 5, 15 min) before {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, "
          f"after {after[0]:.1f} {after[1]:.1f} {after[2]:.1f}; warm: median of {args.runs} runs:")
    base = rows[0]
    for m in rows:
        share = (m.wall - m.fits / m.workers) / m.wall
        print(f"  {m.workers} worker{'s' if m.workers > 1 else ' '}  start-up {m.startup:4.1f} s   "
              f"cold {m.cold.wall:5.1f} s ({base.cold.wall / m.cold.wall:4.2f}x)   "
              f"warm {m.wall:5.1f} s ({base.wall / m.wall:4.2f}x)   sum of fits {m.fits:5.1f} s   "
              f"Prefect share {100 * share:4.1f} %   (warm runs: {', '.join(f'{r.wall:.1f}' for r in m.warm)} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
