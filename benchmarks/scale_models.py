"""The whole `training` flow at market scale: a universe of every symbol for the pooled CatBoost, LSTM and
Transformer, per-symbol ARIMA and CatBoost for a watch list, evaluation with walk-forward CV and the top-k
portfolio backtest, the report; no tuning, no deployment. Run by `python -m benchmarks.scale --with-models`.

Each size runs in a child process of its own (`python -m benchmarks.scale_models N`), so that its peak memory
is its own. Peak memory is the largest sum of the resident memory of that process and every process it started
(the networks' training worker processes; the temporary Prefect server's is not counted), sampled every 0.2 s,
beside the flow process's own peak. A phase's wall time is
the time any of its task runs was running (the union of their intervals, read back from the Prefect API):
phases that overlap (pooled CV runs inside evaluation) each count their own time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

WATCH_LIST = 30
POOLED_TYPES = ["catboost", "lstm", "transformer"]
PER_SYMBOL_TYPES = ["arima", "catboost"]
PHASES = ["data", "tuning", "per-symbol training", "pooled training", "evaluation", "pooled CV", "report", "total"]


def _union_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    """Seconds covered by any of `intervals`."""
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total


def flow_and_task_runs(flow_run_id: Any) -> tuple[list[Any], list[Any]]:
    """(the subflow runs of `flow_run_id`, the task runs of it and its subflows), once every task run is final."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    def read() -> tuple[list[Any], list[Any]]:
        with get_client(sync_client=True) as client:
            subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
            ids = [flow_run_id] + [r.id for r in subflows]
            runs: list[Any] = []
            while True:  # the API pages by at most 200
                page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
                                             limit=200, offset=len(runs))
                runs += page
                if len(page) < 200:
                    return subflows, runs

    subflows, runs = read()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # task runs reach the API through events, a little after the flow ends
        if all(r.state is not None and r.state.is_final() and r.end_time for r in runs):
            break
        time.sleep(1.0)
        subflows, runs = read()
    return subflows, runs


def phase_seconds(subflows: list[Any], tasks: list[Any], total: float) -> dict[str, float]:
    """Wall seconds per phase of PHASES."""
    def covered(matches: Any) -> float:
        return _union_seconds([(r.start_time, r.end_time) for r in tasks
                               if r.start_time and r.end_time and matches(r.name)])

    walls: dict[str, float] = {}
    for flow_name, phase in (("data-pipeline", "data"), ("evaluation-pipeline", "evaluation")):
        walls[phase] = sum((r.end_time - r.start_time).total_seconds() for r in subflows
                           if r.start_time and r.end_time and _flow_name(r) == flow_name)
    walls["tuning"] = covered(lambda name: name.startswith("tune-"))
    walls["per-symbol training"] = covered(lambda name: name.startswith("train-") and "-pooled-" not in name)
    walls["pooled training"] = covered(lambda name: name.startswith("train-") and "-pooled-" in name)
    walls["pooled CV"] = covered(lambda name: name.startswith("crossval-") and "-pooled-" in name)
    walls["report"] = covered(lambda name: name == "report" or name.startswith("report-"))
    walls["total"] = total
    return walls


_FLOW_NAMES: dict[Any, str] = {}


def _flow_name(run: Any) -> str:
    """The name of the flow a flow run ran."""
    if run.flow_id not in _FLOW_NAMES:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            _FLOW_NAMES[run.flow_id] = client.read_flow(run.flow_id).name
    return _FLOW_NAMES[run.flow_id]


@contextmanager
def peak_tree_rss(exclude: set[int] | None = None) -> Iterator[list[float]]:
    """Samples the resident memory of this process and its descendants (less `exclude`'s trees) every 0.2 s;
    yields a list holding the peak seen so far, in MB, and the time it was seen (epoch seconds)."""
    import psutil

    peak = [0.0, time.time()]
    done = threading.Event()
    me = psutil.Process()

    def sample() -> None:
        while not done.wait(0.2):
            total = 0
            skip = set(exclude or ())
            for process in [me, *me.children(recursive=True)]:
                try:
                    if process.pid in skip or process.ppid() in skip:
                        skip.add(process.pid)
                        continue
                    total += process.memory_info().rss
                except psutil.Error:  # gone between listing and reading
                    continue
            if total / 2**20 > peak[0]:
                peak[:] = [total / 2**20, time.time()]

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def run_one(n: int, days: int, watch: int, workspace: Path | None = None) -> dict[str, Any]:
    """Write an n-symbol synthetic market, run `training` on it once; its phases, peak memory and report size.
    `workspace`: the folder to work in, kept afterwards (default: a temporary one)."""
    import yaml

    from flows.training import training
    from settings import load_settings
    from stores.base import SourceInfo
    from stores.parquet import ParquetPriceStore
    from tasks.data.ingest import synthetic_market

    symbols = [f"S{i:04d}" for i in range(n)]
    watch_list = symbols[:watch]
    with tempfile.TemporaryDirectory(prefix=f"scale-models-{n}-") as tmp:
        root = workspace or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        config = root / "scale.yml"
        config.write_text(yaml.safe_dump({
            "data": {"prices_path": str(root / "prices"), "feature_store_path": str(root / "features"),
                     "symbols": watch_list, "universes": {"ALL": symbols}, "universe": "ALL",
                     "start_date": "2000-01-01"},  # every day of the market, not the default window's
            "models": {"registry_path": str(root / "registry"),
                       "model_types": list(dict.fromkeys(PER_SYMBOL_TYPES + POOLED_TYPES)),
                       "per_symbol_types": PER_SYMBOL_TYPES, "scope": "both"},
            "optimization": {"enabled": False}, "deployment": {"enabled": False},
            "monitoring": {"history_path": str(root / "history.sqlite")},
            "execution": {"cache_dir": str(root / "cache"), "reports_dir": str(root / "reports")},
        }), encoding="utf-8")
        settings = load_settings(config)
        store = ParquetPriceStore(settings.data.prices_path)
        print(f"{n} symbols x {days} days: writing the synthetic market ...", flush=True)
        for symbol, bars in synthetic_market(symbols, days, seed=11, end=date(2026, 10, 30)).items():
            store.upsert(symbol, bars, SourceInfo(kind="synthetic", synthetic=True))
        print(f"{n} symbols: training (watch list {len(watch_list)}, universe {n}) ...", flush=True)
        import psutil

        servers = {p.pid for p in psutil.Process().children() if "uvicorn" in " ".join(p.cmdline())}
        started, started_at = time.perf_counter(), time.time()
        with peak_tree_rss(exclude=servers) as peak:
            state = training(symbols=watch_list, settings=settings, retrain_all=True, optimize=False, deploy=False,
                             return_state=True)
        total = time.perf_counter() - started
        outcome = state.result(raise_on_failure=False)
        subflows, tasks = flow_and_task_runs(state.state_details.flow_run_id)
        report = Path(outcome.report.html_path) if hasattr(outcome, "report") else None
        timed = [r for r in tasks if r.start_time and r.end_time]
        at_peak = sorted(r.name for r in timed if r.start_time.timestamp() <= peak[1] <= r.end_time.timestamp())
        longest = sorted(timed, key=lambda r: r.end_time - r.start_time, reverse=True)[:8]
        return {
            "symbols": n, "days": days, "watch": len(watch_list), "state": state.name,
            "phases": phase_seconds(subflows, tasks, total), "task_runs": len(tasks),
            "peak_rss_mb": peak[0], "peak_at_s": peak[1] - started_at, "running_at_peak": at_peak,
            "longest_task_runs": [(r.name, (r.end_time - r.start_time).total_seconds()) for r in longest],
            "flow_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "report_kb": sum(f.stat().st_size for f in report.parent.iterdir()) / 1024 if report else None,
            "error": None if state.is_completed() else str(outcome)[:300],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_models",
                                     description="one size of `benchmarks.scale --with-models` (JSON on stdout's "
                                                 "last line)")
    parser.add_argument("symbols", type=int, help="symbols in the universe")
    parser.add_argument("--days", type=int, default=2500, help="days of history per symbol")
    parser.add_argument("--watch", type=int, default=WATCH_LIST, help="symbols of the watch list")
    parser.add_argument("--workspace", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        measured = run_one(args.symbols, args.days, min(args.watch, args.symbols), args.workspace)
    print("RESULT " + json.dumps(measured), flush=True)
    return 0 if measured["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
