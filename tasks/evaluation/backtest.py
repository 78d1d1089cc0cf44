"""backtest: trade predicted returns with next-open fills, whole lots and commission, vectorized across symbols.

The execution model and every output are defined in docs/metrics.md. `sizing` says whether whole lots of a
market fit the capital at all: when one lot costs more than the capital, no trade is possible and the
backtest's numbers mean nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from settings import BacktestSettings
from tasks.evaluation.risk import TRADING_DAYS

__all__ = ["BacktestResult", "ManyResult", "Sizing", "Window", "backtest", "backtest_each", "backtest_many", "signals",
           "sizing"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BacktestResult:
    """One symbol's backtest; arrays have one entry per input row."""

    dates: npt.NDArray[Any]
    """The input dates, chronological."""
    equity: FloatArray
    """Cash plus position marked at each close; equity[0] is the initial capital."""
    returns: FloatArray
    """Daily simple returns of equity; returns[0] = equity[0] / initial_capital - 1, which is 0."""
    position: FloatArray
    """Shares held at each close: positive long, negative short, 0 flat (whole lots unless fractional)."""
    trades: pl.DataFrame
    """One row per executed trade: entry_date, exit_date (null while open), side ("long"/"short"), shares,
    entry_price, exit_price (null while open), pnl (after both commissions; null while open), commission."""
    turnover: float
    """Traded value of all fills / mean equity, per year of 252 rows."""
    exposure: float
    """Fraction of rows that end with a position."""
    total_commission: float
    """Commission paid on all fills."""
    benchmark_equity: FloatArray
    """Buy and hold on the same rows: all capital in whole lots at open[1], held to the end."""
    benchmark_returns: FloatArray
    """Daily simple returns of benchmark_equity, defined like `returns`."""


@dataclass(frozen=True)
class ManyResult:
    """Backtests of many symbols at once; 2-D arrays are (symbols, days)."""

    equity: FloatArray
    """As BacktestResult.equity, per symbol."""
    returns: FloatArray
    """As BacktestResult.returns, per symbol."""
    position: FloatArray
    """As BacktestResult.position, per symbol."""
    trades: IntArray
    """Executed trades per symbol, the one still open at the end included."""
    turnover: FloatArray
    """As BacktestResult.turnover, per symbol."""
    exposure: FloatArray
    """As BacktestResult.exposure, per symbol."""
    total_commission: FloatArray
    """As BacktestResult.total_commission, per symbol."""


@dataclass(frozen=True)
class _Run:
    """The raw simulation: row arrays (symbols, days) and one entry per trade in the flat trade arrays."""

    equity: FloatArray
    position: FloatArray
    symbol: IntArray
    side: FloatArray
    shares: FloatArray
    entry_row: IntArray
    exit_row: IntArray  # == days while the trade is still open
    entry_price: FloatArray
    exit_price: FloatArray  # nan while open
    commission: FloatArray
    pnl: FloatArray  # nan while open


@dataclass(frozen=True)
class Sizing:
    """Whether the market's lots fit the capital over a window, and what that does to the backtest."""

    lot_size: int
    fractional: bool
    capital: float
    fill_days: int
    """days with a fill price (every day but the first)."""
    unaffordable_days: int
    """fill days on which one lot, commission included, costs more than the capital."""
    max_lot_cost: float
    """the dearest lot of the window, commission included."""
    buy_and_hold_invested: float
    """the fraction of the capital buy-and-hold puts into whole lots at its first fill."""

    @property
    def meaningful(self) -> bool:
        """False when no lot fits the capital on any day: no trade is possible, not even buy-and-hold."""
        return self.fractional or self.unaffordable_days < self.fill_days

    @property
    def note(self) -> str:
        """A warning in words, or "" when every lot fits."""
        if not self.meaningful:
            return (f"one lot of {self.lot_size} shares costs more than the capital of {self.capital:,.0f} on every "
                    f"day (up to {self.max_lot_cost:,.0f}): no trade is possible, the backtest is not meaningful; "
                    f"set the market's lot_size (e.g. 1) or evaluation.backtesting.fractional")
        notes = []
        if self.unaffordable_days:
            notes.append(f"one lot of {self.lot_size} shares costs more than the capital on {self.unaffordable_days} "
                         f"of {self.fill_days} days (up to {self.max_lot_cost:,.0f}): no position opens then")
        if self.buy_and_hold_invested < 0.9:
            notes.append(f"whole lots leave {1 - self.buy_and_hold_invested:.0%} of the capital in cash at "
                         f"buy-and-hold's first fill")
        return "; ".join(notes)


def sizing(open_: npt.ArrayLike, cfg: BacktestSettings) -> Sizing:
    """How the lots of `cfg` fit its capital at the fill prices `open_[1:]` of one symbol's window."""
    fills = np.asarray(open_, dtype=np.float64)[1:]
    lot_cost = cfg.lot_size * fills * (1 + cfg.commission)
    capital = float(cfg.initial_capital)
    if cfg.fractional or not len(fills):
        invested = 1.0 / (1 + cfg.commission) if len(fills) else 0.0
    else:
        invested = float(np.floor(capital / lot_cost[0]) * cfg.lot_size * fills[0] / capital)
    return Sizing(lot_size=cfg.lot_size, fractional=cfg.fractional, capital=capital, fill_days=len(fills),
                  unaffordable_days=0 if cfg.fractional else int((lot_cost > capital).sum()),
                  max_lot_cost=float(lot_cost.max(initial=0.0)), buy_and_hold_invested=invested)


def signals(predictions: npt.ArrayLike, cfg: BacktestSettings) -> npt.NDArray[np.int8]:
    """+1 (long) where prediction > threshold, -1 (short, if allowed) where < -threshold, else 0; NaN is flat."""
    pred = np.asarray(predictions, dtype=np.float64)
    signal = (pred > cfg.threshold).astype(np.int8)
    if cfg.allow_short:
        signal[pred < -cfg.threshold] = -1
    return signal


def _prices(open_: npt.ArrayLike, close: npt.ArrayLike, predictions: npt.ArrayLike,
            ndim: int) -> tuple[FloatArray, FloatArray]:
    o = np.asarray(open_, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    shape = np.shape(predictions)
    if o.ndim != ndim or o.shape != c.shape or o.shape != shape or o.size == 0:
        raise ValueError(f"open, close and predictions must be non-empty {ndim}-D arrays of one shape, "
                         f"got {o.shape}, {c.shape}, {shape}")
    if not (np.isfinite(o).all() and np.isfinite(c).all() and (o > 0).all() and (c > 0).all()):
        raise ValueError("open and close must be finite and positive")
    return o, c


def _ledger(cash0: float, sym: IntArray, side: FloatArray, entry_price: FloatArray, exit_value: FloatArray,
            n_sym: int, cfg: BacktestSettings) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Shares, cash after entry and cash after exit of each trade; trades are sorted by (symbol, date).

    exit_value is the exit price per share, 0 while the trade is still open. Each trade is sized from the
    cash its predecessor left, so this walks trade ordinals (1st, 2nd, ...) with all symbols at once.
    """
    rate, lot = cfg.commission, float(cfg.lot_size)
    fractional = cfg.fractional
    counts = np.bincount(sym, minlength=n_sym)
    ordinal = np.arange(len(sym)) - (np.cumsum(counts) - counts)[sym]
    order = np.argsort(ordinal, kind="stable")
    bounds = np.searchsorted(ordinal[order], np.arange(int(counts.max(initial=0)) + 1)).tolist()
    # In ordinal order every step reads and writes one contiguous slice.
    o_sym, o_side, o_price, o_exit = sym[order], side[order], entry_price[order], exit_value[order]
    o_cost = o_price * (1 + rate)
    shares, cash_in, cash_out = np.empty(len(sym)), np.empty(len(sym)), np.empty(len(sym))
    cash = np.full(n_sym, cash0)
    for a, b in itertools.pairwise(bounds):
        who, price = o_sym[a:b], o_price[a:b]
        before = cash[who]
        q = np.maximum(before / o_cost[a:b] if fractional else np.floor(before / o_cost[a:b] / lot) * lot, 0.0)
        value = q * price
        fee = value * rate
        short_of_cash = before - value - fee < 0
        if short_of_cash.any() and not fractional:  # the division rounded up to a lot that costs a hair more
            q = np.where(short_of_cash, np.maximum(q - lot, 0.0), q)
            value = q * price
            fee = value * rate
        cash_in[a:b] = after_entry = before - o_side[a:b] * value - fee
        value_out = q * o_exit[a:b]
        cash_out[a:b] = cash[who] = after_entry + o_side[a:b] * value_out - value_out * rate
        shares[a:b] = q
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return shares[back], cash_in[back], cash_out[back]


def _simulate(open_: FloatArray, close: FloatArray, signal: npt.NDArray[np.int8], cfg: BacktestSettings) -> _Run:
    """Run the ledger for (symbols, days) inputs; loops over trade ordinals, vectorized across symbols."""
    n_sym, days = close.shape
    rate = cfg.commission
    # The side held from the open of row t is the signal decided at the close of t - 1.
    held = np.zeros((n_sym, days), dtype=np.int8)
    held[:, 1:] = signal[:, :-1]
    starts = np.ones((n_sym, days), dtype=bool)
    starts[:, 1:] = held[:, 1:] != held[:, :-1]
    # Segments: maximal runs of one held side, in row-major order (by symbol, then row).
    seg = np.flatnonzero(starts)
    seg_sym, seg_row = np.divmod(seg, days)
    seg_side = held.ravel()[seg]
    seg_end = np.append(seg[1:], n_sym * days) - seg_sym * days  # the next segment's start row, or `days`
    is_trade = seg_side != 0
    t_seg = np.flatnonzero(is_trade)
    sym, entry_row, exit_row = seg_sym[t_seg], seg_row[t_seg], seg_end[t_seg]
    side = seg_side[t_seg].astype(np.float64)
    is_open = exit_row == days
    entry_price = open_[sym, entry_row]
    exit_price = np.where(is_open, np.nan, open_[sym, np.minimum(exit_row, days - 1)])

    shares, cash_in, cash_out = _ledger(float(cfg.initial_capital), sym, side, entry_price,
                                        np.where(is_open, 0.0, np.nan_to_num(exit_price)), n_sym, cfg)

    # Cash per segment: a trade holds its post-entry cash; a flat run holds what the trade before it left.
    seg_cash = np.full(len(seg), float(cfg.initial_capital))
    seg_shares = np.zeros(len(seg))
    seg_cash[t_seg] = cash_in
    seg_shares[t_seg] = side * shares
    after_trade = np.flatnonzero(~is_trade & (seg_row > 0))
    exit_cash = np.zeros(len(seg))
    exit_cash[t_seg] = cash_out
    seg_cash[after_trade] = exit_cash[after_trade - 1]
    row_seg = np.cumsum(starts.ravel()) - 1
    position = seg_shares[row_seg].reshape(n_sym, days)
    equity = seg_cash[row_seg].reshape(n_sym, days) + position * close

    # Only a short can take equity to zero: then, like backtesting.py, close at that close and stop.
    broke = equity <= 0
    if broke.any():
        ruin = np.where(broke.any(axis=1), broke.argmax(axis=1), days)
        stopped = np.arange(days)[None, :] >= ruin[:, None]
        equity[stopped] = 0.0
        position[stopped] = 0.0
        at = ruin[sym]
        hit = (entry_row <= at) & (exit_row > at)
        exit_row = np.where(hit, at, exit_row)
        exit_price = np.where(hit, close[sym, np.minimum(at, days - 1)], exit_price)
        is_open &= ~hit
        shares = np.where(entry_row > at, 0.0, shares)

    value_out = np.where(is_open, 0.0, shares * np.nan_to_num(exit_price))
    commission = (shares * entry_price + value_out) * rate
    pnl = np.where(is_open, np.nan, side * shares * (np.nan_to_num(exit_price) - entry_price) - commission)
    keep = shares > 0  # a signal whose first lot is unaffordable never trades
    return _Run(equity=equity, position=position, symbol=sym[keep], side=side[keep], shares=shares[keep],
                entry_row=entry_row[keep], exit_row=exit_row[keep], entry_price=entry_price[keep],
                exit_price=exit_price[keep], commission=commission[keep], pnl=pnl[keep])


def _returns(equity: FloatArray, capital: float) -> FloatArray:
    """Simple returns per row; the first is against the capital, and 0 after equity reached 0."""
    previous = np.empty_like(equity)
    previous[:, 0] = capital
    previous[:, 1:] = equity[:, :-1]
    safe = np.where(previous > 0, previous, 1.0)
    return np.where(previous > 0, equity / safe - 1.0, 0.0)


def _per_symbol(run: _Run, n_sym: int,
                start: IntArray | None = None) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """Trade count, annualised turnover, exposure and total commission per symbol.

    `start` is each row's first day when rows are padded on the left (backtest_each): the row's means then
    run over its own days only, the same numpy reductions `backtest` runs on an unpadded row.
    """
    traded = run.shares * run.entry_price + np.where(np.isnan(run.exit_price), 0.0,
                                                     run.shares * np.nan_to_num(run.exit_price))
    value = np.bincount(run.symbol, weights=traded, minlength=n_sym)
    if start is None:
        days: int | IntArray = run.equity.shape[1]
        mean_equity, exposure = run.equity.mean(axis=1), (run.position != 0).mean(axis=1)
    else:
        days = run.equity.shape[1] - start
        mean_equity = np.array([row[k:].mean() for row, k in zip(run.equity, start.tolist(), strict=True)])
        exposure = np.array([(row[k:] != 0).mean() for row, k in zip(run.position, start.tolist(), strict=True)])
    turnover = np.where(mean_equity > 0, value / np.where(mean_equity > 0, mean_equity, 1.0), 0.0)
    return (np.bincount(run.symbol, minlength=n_sym).astype(np.int64), turnover * TRADING_DAYS / days, exposure,
            np.bincount(run.symbol, weights=run.commission, minlength=n_sym).astype(np.float64))


def backtest_many(open_: npt.ArrayLike, close: npt.ArrayLike, predictions: npt.ArrayLike,
                  cfg: BacktestSettings) -> ManyResult:
    """Backtest every row of (symbols, days) arrays, each on its own capital; same model as `backtest`."""
    o, c = _prices(open_, close, predictions, ndim=2)
    run = _simulate(o, c, signals(predictions, cfg), cfg)
    trades, turnover, exposure, commission = _per_symbol(run, o.shape[0])
    return ManyResult(equity=run.equity, returns=_returns(run.equity, cfg.initial_capital),
                      position=run.position, trades=trades, turnover=turnover,
                      exposure=exposure, total_commission=commission)


def _dates(dates: npt.NDArray[Any]) -> pl.Series:
    return pl.Series("date", dates.tolist() if dates.dtype == object else dates)


def _trade_frame(run: _Run, dates: pl.Series, rows: int = 1, base: IntArray | None = None) -> pl.DataFrame:
    """The trades of rows 0..rows-1 as one polars frame; row r's column j is on dates[base[r] + j]."""
    a, b = np.searchsorted(run.symbol, [0, rows]).tolist()  # trades are sorted by row
    mine = slice(a, b)
    at = np.zeros(b - a, dtype=np.int64) if base is None else base[run.symbol[mine]]
    is_open = np.isnan(run.exit_price[mine])
    exit_rows = pl.Series(np.where(is_open, 0, at + run.exit_row[mine])).scatter(np.flatnonzero(is_open), None)
    return pl.DataFrame({
        "entry_date": dates.gather(at + run.entry_row[mine]),
        "exit_date": dates.gather(exit_rows),
        "side": pl.Series(np.where(run.side[mine] > 0, "long", "short"), dtype=pl.String),
        "shares": pl.Series(run.shares[mine], dtype=pl.Float64),
        "entry_price": pl.Series(run.entry_price[mine], dtype=pl.Float64),
        "exit_price": pl.Series(run.exit_price[mine], dtype=pl.Float64, nan_to_null=True),
        "pnl": pl.Series(run.pnl[mine], dtype=pl.Float64, nan_to_null=True),
        "commission": pl.Series(run.commission[mine], dtype=pl.Float64),
    })


def _checked(dates: npt.ArrayLike, open_: npt.ArrayLike, close: npt.ArrayLike,
             predictions: npt.ArrayLike) -> tuple[npt.NDArray[Any], FloatArray, FloatArray]:
    o, c = _prices(open_, close, predictions, ndim=1)
    day = np.asarray(dates)
    if day.shape != o.shape:
        raise ValueError(f"dates must have the prices' shape {o.shape}, got {day.shape}")
    if len(day) > 1 and not bool(np.all(day[1:] > day[:-1])):
        raise ValueError("dates must be strictly increasing")
    return day, o, c


def backtest(dates: npt.ArrayLike, open_: npt.ArrayLike, close: npt.ArrayLike, predictions: npt.ArrayLike,
             cfg: BacktestSettings) -> BacktestResult:
    """Backtest one symbol: chronological 1-D arrays, prediction[t] known after the close of row t."""
    day, o, c = _checked(dates, open_, close, predictions)
    # Row 1 of the stack is buy and hold: long from the first possible fill, open[1].
    signal = np.stack([signals(predictions, cfg), np.ones(len(o), dtype=np.int8)])
    run = _simulate(np.stack([o, o]), np.stack([c, c]), signal, cfg)
    _, turnover, exposure, commission = _per_symbol(run, 2)
    returns = _returns(run.equity, cfg.initial_capital)
    return BacktestResult(
        dates=day, equity=run.equity[0], returns=returns[0], position=run.position[0],
        trades=_trade_frame(run, _dates(day)), turnover=float(turnover[0]), exposure=float(exposure[0]),
        total_commission=float(commission[0]), benchmark_equity=run.equity[1], benchmark_returns=returns[1])


@dataclass(frozen=True, eq=False)
class Window:
    """One symbol's chronological bars and the predictions to trade on them: `backtest`'s inputs."""

    dates: npt.ArrayLike
    open: npt.ArrayLike
    close: npt.ArrayLike
    predictions: npt.ArrayLike


def backtest_each(windows: Sequence[Window], cfg: BacktestSettings) -> list[BacktestResult]:
    """`backtest` of every window, all in one vectorised run; each on its own capital, of any length.

    Shorter windows are padded on the left with flat rows (their first bar's prices, no signal). Nothing is
    held before a window's first row, so its rows go through the same float operations as in `backtest`
    and every result is identical to it.

    Raises:
        ValueError: a window's inputs are invalid, as `backtest` would say.
    """
    checked = [_checked(w.dates, w.open, w.close, w.predictions) for w in windows]
    n = len(checked)
    if not n:
        return []
    days = max(len(o) for _, o, _ in checked)
    start = np.array([days - len(o) for _, o, _ in checked], dtype=np.int64)
    # Rows 0..n-1 trade the predictions, rows n..2n-1 are their buy-and-holds, as in `backtest`.
    o, c = np.empty((2 * n, days)), np.empty((2 * n, days))
    signal = np.zeros((2 * n, days), dtype=np.int8)
    for i, ((_, oi, ci), window, k) in enumerate(zip(checked, windows, start.tolist(), strict=True)):
        o[[i, n + i], :k], o[[i, n + i], k:] = oi[0], oi
        c[[i, n + i], :k], c[[i, n + i], k:] = ci[0], ci
        signal[i, k:] = signals(window.predictions, cfg)
        signal[n + i, k:] = 1
    run = _simulate(o, c, signal, cfg)
    _, turnover, exposure, commission = _per_symbol(run, 2 * n, np.concatenate([start, start]))
    returns = _returns(run.equity, cfg.initial_capital)
    # One frame for every strategy row's trades, then a zero-copy slice per window.
    lengths = days - start
    trades = _trade_frame(run, pl.concat([_dates(day) for day, _, _ in checked]), n,
                          np.cumsum(lengths) - lengths - start)
    bounds = np.searchsorted(run.symbol, np.arange(n + 1)).tolist()
    return [BacktestResult(
        dates=day, equity=run.equity[i, k:], returns=returns[i, k:], position=run.position[i, k:],
        trades=trades.slice(bounds[i], bounds[i + 1] - bounds[i]), turnover=float(turnover[i]),
        exposure=float(exposure[i]), total_commission=float(commission[i]), benchmark_equity=run.equity[n + i, k:],
        benchmark_returns=returns[n + i, k:])
        for i, ((day, _, _), k) in enumerate(zip(checked, start.tolist(), strict=True))]
