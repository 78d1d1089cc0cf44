"""Time our vectorized backtest against backtesting.py on the same long/flat signals, then check both agree.

Run from the repository root: `python -m benchmarks.backtest --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import backtesting
import numpy as np
import numpy.typing as npt
import pandas as pd
from backtesting import Backtest, Strategy

from benchmarks.features import synthetic_market
from settings import BacktestSettings
from tasks.evaluation.backtest import backtest, backtest_many, signals
from tasks.evaluation.risk import performance

__all__ = ["Reference", "main", "market_arrays", "reference_backtest"]

# backtesting.py sizes an order as a fraction of equity only when the fraction is below 1.
_ALL_IN = 1 - 1e-12


def market_arrays(symbols: int, days: int, seed: int) -> tuple[npt.NDArray[Any], np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Dates (days,), open and close (symbols, days), and predictions: a noisy next-day return."""
    frame = synthetic_market(symbols, days, seed)
    open_ = frame["open"].to_numpy().reshape(symbols, days)
    close = frame["close"].to_numpy().reshape(symbols, days)
    forward = np.zeros_like(close)
    forward[:, :-1] = close[:, 1:] / close[:, :-1] - 1
    noise = np.random.default_rng(seed + 1).normal(0, 0.02, close.shape)
    predictions = 0.5 * forward + noise
    # backtesting.py never sees row 0's signal (its first Strategy.next is on row 1): keep it flat.
    predictions[:, 0] = -1.0
    return frame["date"].to_numpy()[:days], open_, close, predictions


class _Replay(Strategy):
    """Go long while the precomputed signal is 1, flat while it is 0."""

    signal: Any = None

    def init(self) -> None:
        """Nothing to precompute: the signal is given."""

    def next(self) -> None:
        """Send the order for the signal decided at this close; it fills at the next open."""
        if self.signal[len(self.data) - 1] > 0:
            if not self.position:
                self.buy(size=_ALL_IN)
        elif self.position:
            self.position.close()


@dataclass(frozen=True)
class Reference:
    """One backtesting.py run."""

    equity: npt.NDArray[np.float64]
    closed_trades: int
    seconds: float


def reference_backtest(dates: npt.NDArray[Any], open_: np.ndarray, close: np.ndarray, signal: np.ndarray,
                       cfg: BacktestSettings) -> Reference:
    """Run backtesting.py on one symbol; prices are scaled by the lot size so one of its units is one lot."""
    lot = cfg.lot_size
    frame = pd.DataFrame({"Open": open_ * lot, "High": np.maximum(open_, close) * lot,
                          "Low": np.minimum(open_, close) * lot, "Close": close * lot},
                         index=pd.DatetimeIndex(dates))
    start = time.perf_counter()
    # Silence its progress bar and its warnings (trades open at the end: we mark them too; a lot priced
    # above the cash: such symbols are left out of the check).
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        engine = Backtest(frame, _Replay, cash=cfg.initial_capital, commission=cfg.commission, margin=1.0,
                          trade_on_close=False, hedging=False, exclusive_orders=True, finalize_trades=False)
        stats = engine.run(signal=signal)
    seconds = time.perf_counter() - start
    return Reference(equity=stats["_equity_curve"]["Equity"].to_numpy(dtype=np.float64),
                     closed_trades=int(stats["# Trades"]), seconds=seconds)


def _ours_per_symbol(dates: npt.NDArray[Any], open_: np.ndarray, close: np.ndarray, predictions: np.ndarray,
                     cfg: BacktestSettings) -> float:
    """Seconds for `backtest` plus `performance` per symbol: trades frame, benchmark and metrics included."""
    start = time.perf_counter()
    for i in range(open_.shape[0]):
        result = backtest(dates, open_[i], close[i], predictions[i], cfg)
        performance(result.returns, result.equity, result.trades["pnl"].to_numpy(), cfg.risk_free_rate)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code (1 when the engines disagree)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500, help="symbols in the synthetic market")
    parser.add_argument("--days", type=int, default=2500, help="trading days per symbol")
    parser.add_argument("--check-symbols", type=int, default=20,
                        help="symbols run through backtesting.py: compared, and timed to extrapolate")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the market")
    parser.add_argument("--repeat", type=int, default=3, help="runs of backtest_many; the best time counts")
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance on final equity")
    parser.add_argument("--lot-size", type=int, default=BacktestSettings().lot_size, help="shares per lot")
    args = parser.parse_args(argv)
    if args.check_symbols < 1:
        parser.error("--check-symbols must be at least 1: backtesting.py is timed on those symbols")
    cfg = BacktestSettings(lot_size=args.lot_size)
    dates, open_, close, predictions = market_arrays(args.symbols, args.days, args.seed)
    cells = args.symbols * args.days

    ours = float("inf")
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        many = backtest_many(open_, close, predictions, cfg)
        ours = min(ours, time.perf_counter() - start)
    ours_full = _ours_per_symbol(dates, open_, close, predictions, cfg)

    checked = min(args.check_symbols, args.symbols)
    signal = signals(predictions, cfg)
    held = np.zeros_like(signal)
    held[:, 1:] = signal[:, :-1]
    # Where a long run could not afford one lot we skip the run; backtesting.py retries: the models differ.
    skipped = ((held != 0) & (many.position == 0)).any(axis=1)
    failures, compared, worst_final, worst_curve, reference_seconds = [], 0, 0.0, 0.0, 0.0
    for i in range(checked):
        ref = reference_backtest(dates, open_[i], close[i], signal[i], cfg)
        reference_seconds += ref.seconds
        if skipped[i]:
            continue
        compared += 1
        mine = backtest(dates, open_[i], close[i], predictions[i], cfg)
        final = abs(ref.equity[-1] - mine.equity[-1]) / abs(mine.equity[-1])
        worst_final = max(worst_final, final)
        worst_curve = max(worst_curve, float(np.max(np.abs(ref.equity - mine.equity) / np.abs(mine.equity))))
        closed = int(mine.trades["exit_date"].is_not_null().sum())
        if final > args.rtol or closed != ref.closed_trades:
            failures.append(f"symbol {i}: final equity {mine.equity[-1]:.6f} vs {ref.equity[-1]:.6f}, "
                            f"closed trades {closed} vs {ref.closed_trades}")

    per_symbol = reference_seconds / checked
    reference_total = per_symbol * args.symbols
    extrapolated = checked < args.symbols
    print(f"market: {args.symbols} symbols x {args.days} days, {int(many.trades.sum())} trades, "
          f"lot {cfg.lot_size}, commission {cfg.commission}")
    print(f"{'engine':<40}{'seconds':>10}{'symbol-days/s':>16}{'speed-up':>10}")
    rows = [(f"backtesting.py {backtesting.__version__}{' *' if extrapolated else ''}", reference_total),
            ("backtest_many (vectorized)", ours), ("backtest + performance, per symbol", ours_full)]
    for name, seconds in rows:
        print(f"{name:<40}{seconds:>10.3f}{cells / seconds:>16,.0f}{reference_total / seconds:>10.1f}x")
    if extrapolated:
        print(f"* backtesting.py (its run and stats) timed on {checked} symbols, "
              f"{per_symbol:.3f} s each, extrapolated to {args.symbols}")
    print(f"check: {compared} of {checked} symbols compared ({int(skipped[:checked].sum())} left out: "
          f"a long run could not afford a lot); max relative difference: final equity {worst_final:.2e}, "
          f"whole equity curve {worst_curve:.2e}")
    for failure in failures:
        print("MISMATCH", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
