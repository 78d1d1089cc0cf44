"""Time feature selection per symbol: the per-column reference against tasks.data.select, and check they agree.

    python -m benchmarks.select [--symbols 50] [--days 2500] [--seed 7] [--repeat 3]

`reference_select_features` is the implementation tasks.data.select replaced, kept verbatim: the tests compare
the two decision for decision. Times are wall times; on a busy machine, OPENBLAS_NUM_THREADS=1 and
POLARS_MAX_THREADS=1 measure the single-thread cost without thread pools fighting over the cores.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from datetime import date
from functools import partial

import numpy as np
import polars as pl

from benchmarks.features import _timed
from schemas import SelectionReport
from settings import DEFAULT_CONFIG_FILE, SelectionSettings, load_settings
from tasks.data.calendar import run_calendar
from tasks.data.features import LABEL, feature_names
from tasks.data.select import MAX_NULL_FRACTION, fit_rows, select, select_features

__all__ = ["main", "reference_select_features"]

STEPS = {"engineer": "engineer (for scale)", "reference": "select_features, reference (old)",
         "numpy": "select_features, numpy (new)", "task": "select task body (new)"}


def reference_select_features(train: pl.DataFrame, names: list[str], cfg: SelectionSettings) -> SelectionReport:
    """Fit the selection on `train` rows only and report what was kept and why the rest was dropped."""
    dropped: dict[str, str] = {}
    candidates: list[str] = []
    for name in names:
        column = train[name]
        if column.null_count() > MAX_NULL_FRACTION * max(train.height, 1):
            dropped[name] = f"null in {column.null_count()}/{train.height} train rows"
        elif float(column.drop_nulls().std() or 0.0) <= cfg.min_std:  # type: ignore[arg-type]
            dropped[name] = "constant on train"
        else:
            candidates.append(name)
    if not candidates:
        return SelectionReport(kept=(), dropped=dropped)

    filled = train.select(pl.col(candidates).fill_null(strategy="forward").fill_null(0.0))
    values = filled.to_numpy().astype(np.float64)                     # (rows, candidates)
    ranks = filled.select(pl.all().rank()).to_numpy().astype(np.float64)
    label_rank = train[LABEL].rank().to_numpy().astype(np.float64)
    ic = np.nan_to_num(np.array([np.corrcoef(ranks[:, j], label_rank)[0, 1] for j in range(ranks.shape[1])]))
    corr = np.nan_to_num(np.corrcoef(values, rowvar=False))           # (candidates, candidates)

    forced = [j for name in cfg.always_keep for j, c in enumerate(candidates) if c == name]
    order = forced + sorted((j for j in range(len(candidates)) if j not in forced), key=lambda j: (-abs(ic[j]), j))
    kept: list[int] = []
    for j in order:
        twin = next((k for k in kept if abs(corr[j, k]) > cfg.max_correlation), None)
        if twin is not None:
            dropped[candidates[j]] = f"|corr| {abs(corr[j, twin]):.3f} with {candidates[twin]}"
        elif len(kept) >= cfg.max_features:
            dropped[candidates[j]] = f"beyond max_features={cfg.max_features} (|IC| {abs(ic[j]):.4f})"
        else:
            kept.append(j)
    return SelectionReport(kept=tuple(candidates[j] for j in kept), dropped=dropped)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code (1 when a selection differs)."""
    from tasks.data.clean import clean
    from tasks.data.engineer import engineer
    from tasks.data.ingest import synthetic_market

    parser = argparse.ArgumentParser(prog="python -m benchmarks.select", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50, help="symbols in the synthetic market")
    parser.add_argument("--days", type=int, default=2500, help="business days per symbol")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the market")
    parser.add_argument("--repeat", type=int, default=3, help="runs per symbol and step; the best time counts")
    args = parser.parse_args(argv)

    settings = load_settings(DEFAULT_CONFIG_FILE)
    data = settings.data
    names = feature_names(data.features)
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    market = synthetic_market(symbols, args.days, seed=args.seed, end=date(2026, 10, 30))
    seconds: dict[str, list[float]] = {step: [] for step in STEPS}
    differ: list[str] = []
    rows = 0
    for symbol in symbols:
        cleaned = clean.fn(market[symbol], symbol, data.cleaning, settings.markets.of(symbol))
        engineered, engineer_s = _timed(partial(engineer.fn, cleaned, symbol, data.features, data.split),
                                        args.repeat)
        calendar = run_calendar({symbol: engineered["date"].to_list()}, data.features, data.split)
        _, train = fit_rows(engineered, data.features, calendar)
        rows = train.height
        old, old_s = _timed(partial(reference_select_features, train, names, data.selection), args.repeat)
        new, new_s = _timed(partial(select_features, train, names, data.selection), args.repeat)
        # The task body without Prefect or the resource logger: what a pipeline run pays per symbol.
        body = select.fn.__wrapped__  # type: ignore[attr-defined]
        _, task_s = _timed(partial(body, engineered, symbol, data.features, calendar, data.selection),
                           args.repeat)
        for step, one in zip(STEPS, (engineer_s, old_s, new_s, task_s), strict=True):
            seconds[step].append(one)
        if old != new or list(old.dropped) != list(new.dropped):
            differ.append(symbol)

    print(f"{args.symbols} symbols x {args.days} days ({rows} train rows, {len(names)} features), "
          f"best of {args.repeat} per symbol")
    print(f"{'step':<34}{'mean ms/symbol':>16}{'median':>10}{'total s':>10}")
    for step, spent in seconds.items():
        print(f"{STEPS[step]:<34}{1e3 * statistics.fmean(spent):>16.1f}{1e3 * statistics.median(spent):>10.1f}"
              f"{sum(spent):>10.2f}")
    print(f"speed-up of select_features: {sum(seconds['reference']) / sum(seconds['numpy']):.1f}x "
          "(total reference time / total new time)")
    print("check: " + ("every selection identical (kept, order, dropped reasons)" if not differ
                       else f"selection differs for {len(differ)} symbol(s): {', '.join(differ[:10])}"))
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
