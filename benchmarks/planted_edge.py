"""The demo market's planted reversal, measured as a trader would: the mean daily cross-sectional Spearman IC of
minus the past return against the forward return, from closes only, with the effect on and off side by side.

    python -m benchmarks.planted_edge [--symbols 50] [--days 1500] [--seed 7] [--horizon 1] [--lookback 1]
        [--reversal R] [--structure]

Without --structure the market holds nothing else to predict (the demo's `--edge reversal` and `null`); with it the
market keeps its betas under regime drifts and its level pull (`--edge none` when off).

The t-statistic is the mean IC over its standard error across dates (Newey-West with horizon - 1 lags, since
forward returns over several days overlap). docs/synthetic_market.md quotes its output.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
from scipy.stats import rankdata

from tasks.data.ingest import DEMO_REVERSAL, synthetic_market

__all__ = ["ICSummary", "daily_ic", "main", "summarize", "universe"]

END = date(2024, 6, 28)


def universe(count: int) -> list[str]:
    """`count` symbol names that carry no special price level."""
    return [f"S{i:03d}" for i in range(count)]


def daily_ic(frames: Mapping[str, pl.DataFrame], horizon: int = 1, lookback: int = 1) -> np.ndarray:
    """Per date t, the Spearman correlation across symbols of -ln(close[t] / close[t-lookback]) with the
    label ln(close[t+horizon] / close[t]); dates where either side is constant are left out.

    The frames must share their dates (as synthetic_market's do).
    """
    log_close = np.log(np.stack([frame["close"].to_numpy() for frame in frames.values()], axis=1))  # (days, symbols)
    days = log_close.shape[0]
    t = np.arange(lookback, days - horizon)
    signal = log_close[t - lookback] - log_close[t]
    forward = log_close[t + horizon] - log_close[t]
    ranks = [rankdata(values, axis=1) for values in (signal, forward)]
    a, b = (r - r.mean(axis=1, keepdims=True) for r in ranks)
    scale = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    keep = scale > 0
    return np.asarray((a * b).sum(axis=1)[keep] / scale[keep])


@dataclass(frozen=True)
class ICSummary:
    """The mean of daily ICs and how far it lies from zero."""

    mean: float
    t_stat: float
    """mean / its Newey-West standard error."""
    dates: int


def summarize(ics: np.ndarray, horizon: int = 1) -> ICSummary:
    """Mean daily IC and its t-statistic; `horizon - 1` Bartlett-weighted lags cover overlapping labels."""
    centred = ics - ics.mean()
    n = len(ics)
    variance = centred @ centred / n
    for lag in range(1, horizon):
        variance += 2 * (1 - lag / horizon) * (centred[lag:] @ centred[:-lag]) / n
    return ICSummary(float(ics.mean()), float(ics.mean() / math.sqrt(variance / n)), n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.planted_edge", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50, help="symbols in the market (default: 50)")
    parser.add_argument("--days", type=int, default=1500, help="business days (default: 1500)")
    parser.add_argument("--seed", type=int, default=7, help="market seed (default: 7)")
    parser.add_argument("--horizon", type=int, default=1, help="label horizon in days (default: 1)")
    parser.add_argument("--lookback", type=int, default=1, help="days of past return in the signal (default: 1)")
    parser.add_argument("--reversal", type=float, default=DEMO_REVERSAL,
                        help=f"planted reversal when on (default: the demo's {DEMO_REVERSAL})")
    parser.add_argument("--structure", action="store_true",
                        help="keep the market's own structure (betas under regime drifts, level pull)")
    args = parser.parse_args(argv)

    structure = "on" if args.structure else "off"
    print(f"{args.symbols} symbols x {args.days} days, seed {args.seed}, structure {structure}; "
          f"signal -r over {args.lookback} day(s), label r over the next {args.horizon} day(s)")
    print(f"{'':<22}{'mean daily IC':>14}{'t-stat':>9}{'dates':>7}{'seconds':>9}")
    for label, reversal in (("off (reversal 0)", 0.0), (f"on (reversal {args.reversal})", args.reversal)):
        start = time.perf_counter()
        frames = synthetic_market(universe(args.symbols), args.days, args.seed, END, reversal=reversal,
                                  structure=args.structure)
        seconds = time.perf_counter() - start
        summary = summarize(daily_ic(frames, args.horizon, args.lookback), args.horizon)
        print(f"{label:<22}{summary.mean:>14.4f}{summary.t_stat:>9.1f}{summary.dates:>7}{seconds:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
