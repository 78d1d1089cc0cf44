"""Time evaluation's backtest-and-metrics stage: one backtest per candidate against one run for all of them.

Run from the repository root: `python -m benchmarks.evaluation --help`. Candidates are synthetic predictions
(a noisy next-day return) on the synthetic market, 2 per symbol; no model is trained.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import TypeVar

import numpy as np

from settings import EvaluationSettings, Market, WeightSettings
from tasks.data.ingest import synthetic_market
from tasks.evaluation.backtest import backtest, backtest_each
from tasks.evaluation.baselines import naive_baselines
from tasks.evaluation.crossval import prediction_metrics, summarize
from tasks.evaluation.evaluate import Predicted, backtest_settings, score_one
from tasks.evaluation.score import backtest_candidates
from tasks.evaluation.significance import diebold_mariano

__all__ = ["candidates", "main"]

_MODEL_TYPES = ("catboost", "lstm")
T = TypeVar("T")


def candidates(symbols: int, days: int, seed: int) -> list[Predicted]:
    """Two candidates per symbol of the synthetic market: noisy forecasts of the next day's log return."""
    market = synthetic_market([f"S{i:04d}" for i in range(symbols)], days + 1, seed, date(2025, 12, 31))
    rng = np.random.default_rng(seed)
    out = []
    for symbol, bars in market.items():
        close, open_ = bars["close"].to_numpy(), bars["open"].to_numpy()
        actual = np.log(close[1:] / close[:-1])  # the label of row t: tomorrow's log return
        for model_type in _MODEL_TYPES:
            predicted = 0.3 * actual + rng.normal(0, 0.01, days)
            metrics = prediction_metrics(predicted, actual)
            baselines = naive_baselines(actual, close[:-1], close[:0], 1)
            out.append(Predicted(
                symbol=symbol, model_type=model_type, version=1, data_hash="synthetic", horizon=1,
                dates=tuple(bars["date"].to_list()[:-1]), open=tuple(open_[:-1].tolist()),
                close=tuple(close[:-1].tolist()), actual=tuple(actual.tolist()), predicted=tuple(predicted.tolist()),
                prediction=metrics, baselines=baselines,
                against_baseline=diebold_mariano(predicted - actual, -actual, 1), cv=summarize([metrics])))
    return out


def _best(run: Callable[[], list[T]], repeat: int) -> tuple[float, list[T]]:
    """The fastest of `repeat` runs (their console lines swallowed), and what the last one returned."""
    best, results = float("inf"), []
    for _ in range(repeat):
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            results = run()
            best = min(best, time.perf_counter() - start)
    return best, results


def main(argv: Sequence[str] | None = None) -> int:
    """Print both timings side by side with their ratio; exit 1 when any result differs."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100, help="symbols in the synthetic market")
    parser.add_argument("--days", type=int, default=250, help="test rows per candidate")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the market and the predictions")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the best time counts")
    args = parser.parse_args(argv)

    cands = candidates(args.symbols, args.days, args.seed)
    evaluation, weights, market = EvaluationSettings(), WeightSettings(), Market()
    markets, cfg, windows = [market] * len(cands), backtest_settings(evaluation, market), [c.window for c in cands]
    backtests = (_best(lambda: [backtest(w.dates, w.open, w.close, w.predictions, cfg) for w in windows], args.repeat),
                 _best(lambda: backtest_each(windows, cfg), args.repeat))
    scores = (_best(lambda: [score_one(c, evaluation, weights, market) for c in cands], args.repeat),
              _best(lambda: backtest_candidates.fn(cands, evaluation, weights, markets).results, args.repeat))
    print(f"{len(cands)} candidates ({args.symbols} symbols x {len(_MODEL_TYPES)}) x {args.days} days, "
          f"{sum(r.trades.height for r in backtests[0][1])} trades; best of {args.repeat} runs")
    print(f"{'stage':<40}{'per candidate s':>16}{'batched s':>12}{'speed-up':>10}")
    for name, ((one, _), (many, _)) in (("backtests only", backtests),
                                        ("backtests + metrics (EvaluationResult)", scores)):
        print(f"{name:<40}{one:>16.3f}{many:>12.3f}{one / many:>9.1f}x")
    singles, scored = scores[0][1], scores[1][1]
    differ = [f"{s.model_type} {s.symbol}" for r, s in zip(scored, singles, strict=True) if r != s]
    print(f"check: {len(cands) - len(differ)} of {len(cands)} EvaluationResults identical (==)" + (
        f"; DIFFERENT: {', '.join(differ[:10])}" if differ else ""))
    return 1 if differ or len(scored) != len(singles) else 0

if __name__ == "__main__":
    raise SystemExit(main())
