"""Time the polars feature engine against the pandas reference on a synthetic market, then check both agree.

Run from the repository root: `python -m benchmarks.features --help`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import TypeVar

import numpy as np
import polars as pl

from benchmarks.reference_features import reference_features
from settings import FeatureSettings
from tasks.data.features import LABEL, SYMBOL, compute_features, feature_names

__all__ = ["compare", "main", "synthetic_market"]

T = TypeVar("T")


def synthetic_market(symbols: int, days: int, seed: int = 7) -> pl.DataFrame:
    """Geometric random walks with consistent OHLC bars; rows sorted by (symbol, date)."""
    rng = np.random.default_rng(seed)
    shape = (symbols, days)
    close = 50 * np.exp(rng.normal(0, 0.5, (symbols, 1)) + np.cumsum(rng.normal(0, 0.02, shape), axis=1))
    open_ = close * np.exp(rng.normal(0, 0.01, shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, shape)))
    volume = np.round(np.exp(rng.normal(13, 0.6, shape)))
    start = date(2015, 1, 1)
    dates = [start + timedelta(days=i) for i in range(days)]
    return pl.DataFrame({
        SYMBOL: np.repeat([f"S{i:04d}" for i in range(symbols)], days),
        "date": pl.Series(dates * symbols, dtype=pl.Date),
        "open": open_.ravel(), "high": high.ravel(), "low": low.ravel(),
        "close": close.ravel(), "volume": volume.ravel(),
    })


def _timed(run: Callable[[], T], repeat: int) -> tuple[T, float]:
    """The result of the last run and the best wall time over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return result, best


def compare(engine: pl.DataFrame, reference: pl.DataFrame, names: Sequence[str], rtol: float,
            atol: float) -> list[str]:
    """Describe every column where the two frames differ (nulls must coincide); empty when equal."""
    problems = []
    for name in names:
        a = engine[name].to_numpy().astype(np.float64)
        b = reference[name].to_numpy().astype(np.float64)
        missing_a, missing_b = np.isnan(a), np.isnan(b)
        if (missing_a != missing_b).any():
            problems.append(f"{name}: null in one engine only at {int((missing_a != missing_b).sum())} rows")
        elif not np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
            worst = float(np.nanmax(np.abs(a - b)))
            problems.append(f"{name}: values differ (max |diff| {worst:.3g})")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code (1 when the engines disagree)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500, help="symbols in the synthetic market")
    parser.add_argument("--days", type=int, default=2500, help="trading days per symbol")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the market")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the best time counts")
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance of the check")
    parser.add_argument("--atol", type=float, default=1e-9, help="absolute tolerance of the check")
    args = parser.parse_args(argv)

    cfg = FeatureSettings()
    prices = synthetic_market(args.symbols, args.days, args.seed)
    rows = prices.height
    prices_pd = prices.to_pandas()
    engine, engine_s = _timed(lambda: compute_features(prices, cfg), args.repeat)
    reference, reference_s = _timed(lambda: reference_features(prices_pd, cfg), args.repeat)

    print(f"{args.symbols} symbols x {args.days} days = {rows:,} rows, "
          f"{len(feature_names(cfg))} features + label, best of {args.repeat}")
    print(f"{'engine':<18}{'seconds':>10}{'rows/s':>14}")
    print(f"{'polars (tasks)':<18}{engine_s:>10.2f}{rows / engine_s:>14,.0f}")
    print(f"{'pandas reference':<18}{reference_s:>10.2f}{rows / reference_s:>14,.0f}")
    print(f"speed-up: {reference_s / engine_s:.1f}x")

    names = [*feature_names(cfg), LABEL]
    reference_pl = pl.from_pandas(reference)
    keys = reference_pl.select(SYMBOL, pl.col("date").cast(pl.Date))
    problems = [] if engine.select(SYMBOL, "date").equals(keys) else ["rows: order or keys differ"]
    problems += compare(engine, reference_pl, names, args.rtol, args.atol)
    for problem in problems:
        print("MISMATCH", problem)
    print(f"check (rtol={args.rtol:g}, atol={args.atol:g}): "
          + ("outputs equal" if not problems else f"{len(problems)} column(s) differ"))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
