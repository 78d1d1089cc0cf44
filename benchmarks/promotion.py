"""The promotion gate's error rates: over many seeds, how often a training run promotes anything on a market with
nothing to find, and how often it promotes the universe model on a market with a planted effect.

    python -m benchmarks.promotion [--seeds 20] [--shapes demo large] [--first-seed 0] [--out FILE.jsonl]
    python -m benchmarks.promotion --report FILE.jsonl ...     (the table of runs written earlier)

Each run is the `training` flow as make demo runs it, in a folder of its own: the synthetic market of a universe
(`--edge null`: nothing to predict; planted: a 1-day reversal and a slow pull toward each symbol's level, nothing
else, as `--edge reversion`), the watch list
VCB, VIC, VHM (the universe's first three symbols in the large shape), universe models over every symbol, tuning
and deployment off. Shapes:

- demo: the VN30 universe, make demo's days and planted effects, every model type of the shipped configuration;
- large: 100 symbols x 2,500 days with reversal 0.04 and the demo's pull, ARIMA and CatBoost (per symbol and
  universe): the networks over 100 symbols would take hours per seed on two cores.

Per shape and market it prints the share of runs in which a universe model passes the IC test alone, the share that
promote anything (the shipped gate: the IC test and a top-k portfolio beating the equal-weight universe after
costs), the share that promote a universe model (for any watch-list symbol, and for every one), the universe models'
test IC (the best universe candidate's mean daily rank IC), that IC as a share of the planted reversal's own (-RET1
against the label, over the same symbols and test dates) and the best universe candidate's portfolio excess return.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

END = date(2026, 11, 27)
WATCH = ("VCB", "VIC", "VHM")


@dataclass(frozen=True)
class Shape:
    name: str
    symbols: tuple[str, ...]
    watch: tuple[str, ...]
    days: int
    reversal: float
    pull: float
    model_types: tuple[str, ...] | None
    """None: the shipped configuration's."""


@dataclass(frozen=True)
class Run:
    shape: str
    market: str
    seed: int
    seconds: float
    promoted: dict[str, str]
    """watch-list symbol -> the model type promoted (absent: none)."""
    universe_p: float | None
    """the smallest Holm-adjusted p of the universe candidates."""
    model_ic: float | None
    """the best universe candidate's mean daily rank IC on the test dates."""
    signal_ic: float | None
    """the planted reversal's (-RET1) mean daily rank IC over the same symbols and test dates."""
    failed: str = ""
    ic_passed: bool | None = None
    """whether a universe candidate passed the IC test alone (Holm-adjusted p below the level)."""
    excess: float | None = None
    """the best universe candidate's top-k portfolio excess return over the equal-weight universe, after costs."""

    @property
    def any(self) -> bool:
        return bool(self.promoted)

    @property
    def universe(self) -> bool:
        return any(t.endswith("-pooled") for t in self.promoted.values())

    @property
    def universe_everywhere(self) -> bool:
        return len(self.promoted) == len(WATCH) and all(t.endswith("-pooled") for t in self.promoted.values())


def shapes() -> dict[str, Shape]:
    from settings import VN30
    from tasks.data.ingest import DEMO_PULL, DEMO_REVERSAL

    demo_days = int(os.environ.get("DAYS", 0)) or _makefile_days()
    large = tuple(f"S{i:03d}" for i in range(100))
    return {"demo": Shape("demo", VN30, WATCH, demo_days, DEMO_REVERSAL, DEMO_PULL, None),
            "large": Shape("large", large, large[:3], 2500, 0.04, DEMO_PULL, ("arima", "catboost"))}


def _makefile_days() -> int:
    """make demo's DAYS, read from the Makefile so the two cannot drift apart."""
    for line in (Path(__file__).resolve().parent.parent / "Makefile").read_text().splitlines():
        if line.startswith("DAYS ?="):
            return int(line.split("=", 1)[1])
    raise RuntimeError("no DAYS in the Makefile")


def _signal_ic(refs: dict[str, Any], min_symbols: int) -> float | None:
    """Mean daily rank IC of -RET1 against the label over `refs`' test rows."""
    import polars as pl

    from stores.features import read_split
    from tasks.evaluation.universe import daily_rank_ic

    rows = pl.concat([read_split(ref, "test").select("date", (-pl.col("RET1")).alias("predicted"),
                                                      pl.col("label").alias("actual")) for ref in refs.values()])
    daily, _ = daily_rank_ic(rows, min_symbols)
    return float(daily["ic"].mean()) if daily.height else None  # type: ignore[arg-type]


def run_once(shape: Shape, market: str, seed: int, root: Path) -> Run:
    import yaml

    from flows.training import training
    from schemas import RunFailed
    from settings import load_settings
    from stores.base import SourceInfo
    from stores.factory import open_feature_store
    from stores.parquet import ParquetPriceStore
    from tasks.data.ingest import synthetic_market

    config: dict[str, Any] = {
        "data": {"prices_path": str(root / "prices"), "feature_store_path": str(root / "features"),
                 "symbols": list(shape.watch), "universes": {"BENCH": list(shape.symbols)}, "universe": "BENCH",
                 "start_date": "2000-01-01"},
        "models": {"registry_path": str(root / "registry")},
        "optimization": {"enabled": False}, "deployment": {"enabled": False},
        "monitoring": {"history_path": str(root / "history.sqlite")},
        "execution": {"cache_dir": str(root / "cache"), "reports_dir": str(root / "reports")},
    }
    if shape.model_types:
        config["models"]["model_types"] = list(shape.model_types)
    (root / "config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = load_settings(root / "config.yml")
    store = ParquetPriceStore(settings.data.prices_path)
    reversal, pull = (shape.reversal, shape.pull) if market == "planted" else (0.0, 0.0)
    for symbol, bars in synthetic_market(shape.symbols, shape.days, seed, END, reversal=reversal,
                                         structure=False, pull=pull).items():
        store.upsert(symbol, bars, SourceInfo(kind="synthetic", synthetic=True))

    started, failed = time.perf_counter(), ""
    try:
        outcome = training(symbols=list(shape.watch), settings=settings, deploy=False, optimize=False)
    except RunFailed as exc:
        outcome, failed = exc.outcome, str(exc)
    seconds = time.perf_counter() - started
    promoted = {d.symbol: d.model_type for d in outcome.decisions if d.action == "promote" and d.model_type}
    from tasks.evaluation.gate import universe_verdicts

    level = settings.model_selection.significance_level
    verdicts = universe_verdicts({(e.model_type, e.version): e for e in outcome.evidence}, level,
                                 require_excess=False)
    best = max((e for e in outcome.evidence if e.ic is not None), key=lambda e: e.ic.mean if e.ic else 0.0,
               default=None)
    feature_store = open_feature_store(settings.data)
    refs = {s: feature_store.current(s) for s in shape.symbols}
    return Run(shape.name, market, seed, seconds, promoted,
               min((v.adjusted for v in verdicts.values()), default=None),
               best.ic.mean if best is not None and best.ic is not None else None,
               _signal_ic(refs, settings.model_selection.universe_min_symbols), failed,
               any(v.passed for v in verdicts.values()),
               best.portfolio.excess_return if best is not None and best.portfolio is not None else None)


def _share(runs: list[Run], test: Any) -> str:
    hits = sum(bool(test(r)) for r in runs)
    return f"{hits}/{len(runs)} ({hits / len(runs):.0%})" if runs else "n/a"


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def report(runs: list[Run]) -> str:
    lines = [f"{'shape':<6} {'market':<8} {'runs':>5} {'IC test passes':>15} {'promote anything':>17} "
             f"{'a universe model':>17} {'universe model for all 3':>25} {'model IC':>9} {'signal IC':>10} "
             f"{'share':>6} {'excess':>7} {'min s':>6} {'max s':>6}"]
    for shape in dict.fromkeys(r.shape for r in runs):
        for market in ("null", "planted"):
            group = [r for r in runs if (r.shape, r.market) == (shape, market)]
            if not group:
                continue
            model, signal = _mean([r.model_ic for r in group]), _mean([r.signal_ic for r in group])
            share = f"{model / signal:.2f}" if market == "planted" and model is not None and signal else "-"
            excess = _mean([r.excess for r in group])
            tested = [r for r in group if r.ic_passed is not None]
            lines.append(
                f"{shape:<6} {market:<8} {len(group):>5} {_share(tested, lambda r: r.ic_passed):>15} "
                f"{_share(group, lambda r: r.any):>17} "
                f"{_share(group, lambda r: r.universe):>17} {_share(group, lambda r: r.universe_everywhere):>25} "
                f"{'-' if model is None else f'{model:+.4f}':>9} {'-' if signal is None else f'{signal:+.4f}':>10} "
                f"{share:>6} {'-' if excess is None else f'{excess:+.1%}':>7} "
                f"{min(r.seconds for r in group):>6.0f} {max(r.seconds for r in group):>6.0f}")
    failed = [r for r in runs if r.failed]
    lines += [f"failed run: {r.shape} {r.market} seed {r.seed}: {r.failed}" for r in failed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.promotion", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per shape and market (default: 20)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default: 0)")
    parser.add_argument("--shapes", nargs="+", choices=["demo", "large"], default=["demo", "large"])
    parser.add_argument("--markets", nargs="+", choices=["null", "planted"], default=["null", "planted"])
    parser.add_argument("--out", type=Path, help="also write every run as JSON lines to this file")
    parser.add_argument("--report", type=Path, nargs="+", metavar="FILE",
                        help="print the table of runs written earlier with --out, and run nothing")
    args = parser.parse_args(argv)
    if args.report:
        loaded = [Run(**json.loads(line)) for path in args.report for line in path.read_text().splitlines() if line]
        print(report(loaded))
        return 0

    from prefect.testing.utilities import prefect_test_harness

    from flows.cli import quiet_server_shutdown

    known = shapes()
    runs: list[Run] = []
    logging.getLogger("prefect").setLevel(logging.WARNING)
    with prefect_test_harness(server_startup_timeout=120):
        for name in args.shapes:
            shape = known[name]
            print(f"{name}: {len(shape.symbols)} symbols x {shape.days} days, watch list {', '.join(shape.watch)}, "
                  f"reversal {shape.reversal} and pull {shape.pull} when planted, model types "
                  f"{', '.join(shape.model_types) if shape.model_types else 'of the shipped configuration'}",
                  flush=True)
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for market in args.markets:
                    with tempfile.TemporaryDirectory(prefix=f"promotion-{name}-{market}-{seed}-") as tmp:
                        run = run_once(shape, market, seed, Path(tmp))
                    runs.append(run)
                    promoted = ", ".join(f"{s} {t}" for s, t in sorted(run.promoted.items())) or "nothing"
                    ic = "-" if run.model_ic is None else f"{run.model_ic:+.4f}"
                    excess = "-" if run.excess is None else f"{run.excess:+.1%}"
                    print(f"  {name} {market:<7} seed {seed:>3}: promoted {promoted}; universe adj p "
                          f"{'-' if run.universe_p is None else f'{run.universe_p:.3g}'}, model IC {ic}, "
                          f"portfolio excess {excess}, {run.seconds:.0f} s"
                          f"{'; FAILED ' + run.failed if run.failed else ''}", flush=True)
                    if args.out:
                        with args.out.open("a", encoding="utf-8") as out:
                            out.write(json.dumps(asdict(run)) + "\n")
        quiet_server_shutdown()
    print()
    print(report(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
