"""Time the vectorised top-k portfolio backtest against an event-driven loop that trades order by order, and check
both give the same equity.

Run from the repository root: `python -m benchmarks.portfolio --help`.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import numpy as np

from settings import MarketSettings, PortfolioSettings
from tasks.evaluation.portfolio import LIMIT_TOLERANCE, Panel, Rules, simulate
from tasks.evaluation.strategies import BuyAndHold, EqualWeight, TopK

__all__ = ["main", "random_panel", "reference_top_k"]


def random_panel(symbols: int, days: int, seed: int, holes: float = 0.005) -> Panel:
    """Fat-tailed prices (some daily moves reach a +-7 % band), opens gapping from the last close, a share
    `holes` of missing bars, a tenth of the symbols listed late, and scores that foresee a little of the next
    open-to-open return."""
    rng = np.random.default_rng(seed)
    moves = np.clip(rng.standard_t(3, (days, symbols)) * 0.015, -0.0699, 0.0699)
    moves[rng.random((days, symbols)) < 0.01] = 0.07  # days locked at the ceiling
    moves[rng.random((days, symbols)) < 0.005] = -0.07
    close = 20.0 * rng.uniform(0.5, 5.0, symbols) * np.exp(np.cumsum(np.log1p(moves), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.004, (days, symbols)))
    open_[1:] = np.minimum(open_[1:], close[:-1] * 1.0699)
    open_[1:] = np.maximum(open_[1:], close[:-1] * 0.9301)
    missing = rng.random((days, symbols)) < holes
    late = rng.random(symbols) < 0.1
    missing[: days // 4, late] = True
    forward = np.full_like(close, 0.0)
    forward[:-2] = open_[2:] / open_[1:-1] - 1
    score = forward + rng.normal(0, 0.2, close.shape)
    for grid in (open_, close, score):
        grid[missing] = np.nan
    dates = np.datetime64("2015-01-01") + np.arange(days)
    return Panel(dates, tuple(f"S{i:04d}" for i in range(symbols)), open_, close, score)


def reference_top_k(panel: Panel, rules: Rules, k: int, n_drop: int) -> list[float]:
    """The top-k strategy traded order by order in plain Python (the rules of tasks/evaluation/portfolio.py):
    equity at each session's close."""
    days, n = panel.open.shape
    shares = [0.0] * n
    bought_on = [-1] * n
    last_close = [math.nan] * n
    at_ceiling, at_floor = [False] * n, [False] * n
    cash = rules.capital
    equity = []
    for d in range(days):
        bar = [math.isfinite(panel.open[d, i]) and math.isfinite(panel.close[d, i]) for i in range(n)]
        if d >= 1:
            scored = {i for i in range(n) if math.isfinite(panel.score[d - 1, i])}
            ranking = sorted(scored, key=lambda i: (-panel.score[d - 1, i], i))
            ranking += [i for i in range(n) if i not in scored]
            place = {symbol: p for p, symbol in enumerate(ranking)}
            held = [i for i in range(n) if shares[i] > 0]
            may_sell = [i for i in held if place[i] >= k and bar[i] and not at_floor[i]
                        and d - bought_on[i] >= rules.settlement[i]]
            for i in sorted(may_sell, key=lambda i: -place[i])[:n_drop]:
                value = shares[i] * panel.open[d, i]
                cash += value - value * rules.commission - value * rules.sell_tax[i]
                shares[i] = 0.0
            slots = k - sum(1 for i in range(n) if shares[i] > 0)
            if slots > 0:
                wanted = [i for i in ranking if shares[i] == 0 and i in scored and bar[i] and not at_ceiling[i]][:slots]
                budget = cash / len(wanted) if wanted else 0.0
                for i in wanted:
                    price, lot = panel.open[d, i], rules.lot[i]
                    q = math.floor(budget / (price * (1 + rules.commission)) / lot) * lot
                    if q * price + q * price * rules.commission > budget:
                        q = max(q - lot, 0.0)
                    if q > 0:
                        cash -= q * price + q * price * rules.commission
                        shares[i], bought_on[i] = q, d
        for i in range(n):
            if bar[i]:
                move = panel.close[d, i] / last_close[i] - 1 if math.isfinite(last_close[i]) else 0.0
                at_ceiling[i] = move >= rules.band[i] - LIMIT_TOLERANCE
                at_floor[i] = move <= -(rules.band[i] - LIMIT_TOLERANCE)
                last_close[i] = panel.close[d, i]
            else:
                at_ceiling[i] = at_floor[i] = False
        equity.append(cash + sum(shares[i] * last_close[i] for i in range(n) if shares[i]))
    return equity


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.portfolio", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--reference-symbols", type=int, default=500,
                        help="symbols of the (slow) event-driven comparison run")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    markets, shipped = MarketSettings(), PortfolioSettings()
    k, n_drop, capital = shipped.top_k, shipped.n_drop, shipped.initial_capital
    print(f"top-{k} portfolio (replacing at most {n_drop} a day), HOSE rules (lots of 100, 0.1 % commission, 0.1 % "
          f"sell tax, +-7 % band, T+2), capital {capital:g}")
    panel = random_panel(args.symbols, args.days, args.seed)
    rules = Rules.of(panel.symbols, markets, 0.001, capital)
    started = time.perf_counter()
    run, _, _ = simulate(panel, rules, [TopK(panel.score, k, n_drop, rules), EqualWeight(rules), BuyAndHold(rules)])
    vectorised = time.perf_counter() - started
    print(f"vectorised: {args.symbols} symbols x {args.days} days in {vectorised:.2f} s (target < 2 s) for the "
          f"portfolio, the equal-weight universe and its buy-and-hold; {int((run.bought > 0).sum())} purchases")
    small = random_panel(args.reference_symbols, args.days, args.seed)
    small_rules = Rules.of(small.symbols, markets, 0.001, capital)
    started = time.perf_counter()
    fast = simulate(small, small_rules, [TopK(small.score, k, n_drop, small_rules)])[0].equity
    fast_s = time.perf_counter() - started
    started = time.perf_counter()
    slow = np.array(reference_top_k(small, small_rules, k, n_drop))
    slow_s = time.perf_counter() - started
    gap = float(np.max(np.abs(fast / slow - 1)))
    print(f"{args.reference_symbols} symbols x {args.days} days: vectorised {fast_s:.2f} s, event-driven loop "
          f"{slow_s:.2f} s, ratio {slow_s / fast_s:.1f}x; largest relative equity difference {gap:.1e}")
    if gap > 1e-9:
        print("FAIL: the two implementations disagree")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
