"""portfolio: the engine that trades a strategy (tasks/evaluation/strategies.py: a ranking's top-k, the equal-weight
universe, its buy-and-hold) over a universe under its exchanges' rules; one numpy step per session, all symbols at
once.

The rules, shared by every strategy (docs/metrics.md, "Portfolio backtest"):
- scores known after the close of session d - 1 decide the orders filled at the open of d; session 0 only marks;
- every order is a whole number of the symbol's lots; commission on the value of every fill, the market's sell tax
  on the value of every sale; sales fill before purchases, which spend only the cash there is;
- a symbol whose close of d - 1 sits at its ceiling (close / previous close - 1 >= band - 0.001) is not bought at
  d, one at its floor is not sold; shares bought at session b may be sold from session b + settlement_days;
- a symbol without a bar at d does not trade at d and is marked at its last close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

from settings import MarketSettings

__all__ = ["LIMIT_TOLERANCE", "Panel", "Rules", "Run", "Session", "Strategy", "limits", "simulate"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

LIMIT_TOLERANCE = 0.001
"""a close this close to the band (as a fraction of the previous close) is at the limit: exchanges round the
ceiling and floor prices to a tick."""


@dataclass(frozen=True, eq=False)
class Panel:
    """A universe's bars and scores on the run's shared calendar: (sessions, symbols) arrays, NaN where absent."""

    dates: npt.NDArray[Any]
    symbols: tuple[str, ...]
    open: FloatArray
    close: FloatArray
    score: FloatArray
    """known after the close of its session; higher = expected to do better."""

    @classmethod
    def of(cls, rows: pl.DataFrame, score: str = "predicted") -> Panel:
        """The panel of `rows` (date, symbol, open, close, `score`; one row per symbol and date)."""
        if rows.select(pl.struct("date", "symbol").is_duplicated().any()).item():
            raise ValueError("rows repeat a (date, symbol)")
        dates = rows["date"].unique().sort()
        symbols = tuple(sorted(rows["symbol"].unique().to_list()))
        day = dates.search_sorted(rows["date"]).to_numpy()
        column = np.searchsorted(np.array(symbols, dtype=object), rows["symbol"].to_numpy())

        def grid(name: str) -> FloatArray:
            out = np.full((len(dates), len(symbols)), np.nan)
            out[day, column] = rows[name].cast(pl.Float64).to_numpy()
            return out

        panel = cls(dates.to_numpy(), symbols, grid("open"), grid("close"), grid(score))
        bars = np.isfinite(panel.open) & np.isfinite(panel.close)
        if (bars & ~((np.nan_to_num(panel.open) > 0) & (np.nan_to_num(panel.close) > 0))).any():
            raise ValueError("open and close must be positive")
        return panel


@dataclass(frozen=True, eq=False)
class Rules:
    """The account and each symbol's exchange rules; arrays have one entry per symbol of the panel."""

    capital: float
    commission: float
    """fraction of the value of every fill."""
    lot: FloatArray
    band: FloatArray
    """daily limit as a fraction of the previous close; inf where there is none."""
    sell_tax: FloatArray
    settlement: IntArray
    """sessions after a purchase before its shares may be sold."""

    @classmethod
    def of(cls, symbols: Sequence[str], markets: MarketSettings, commission: float, capital: float,
           band: bool = True, lots: bool = True) -> Rules:
        """The rules of `symbols`' markets; `band` and `lots` False switch those rules off (lots of one share)."""
        each = [markets.of(s) for s in symbols]
        return cls(capital, commission,
                   np.array([m.lot_size if lots else 1 for m in each], dtype=np.float64),
                   np.array([m.price_band if band and m.price_band is not None else np.inf for m in each]),
                   np.array([m.sell_tax for m in each], dtype=np.float64),
                   np.array([m.settlement_days for m in each], dtype=np.int64))


@dataclass(frozen=True, eq=False)
class Run:
    """One strategy's simulation; (sessions,) and (sessions, symbols) arrays."""

    equity: FloatArray
    """cash plus holdings at each session's close (the last close for a symbol without a bar)."""
    cash: FloatArray
    shares: FloatArray
    """held after each session's fills."""
    bought: FloatArray
    """shares bought at each session's open."""
    sold: FloatArray
    commission: FloatArray
    """paid per session."""
    tax: FloatArray
    traded: FloatArray
    """value of all fills per session, both sides."""
    unaffordable: int
    """purchases the strategy left out because one lot cost more than its part of the cash."""


def limits(close: FloatArray, band: FloatArray) -> tuple[BoolArray, BoolArray]:
    """Whether each close sits at its ceiling, and at its floor: its move from the symbol's previous close is
    within LIMIT_TOLERANCE of the band; never on a symbol's first bar or where there is no bar."""
    last = _forward_filled(close)
    previous = np.full_like(close, np.nan)
    previous[1:] = last[:-1]
    with np.errstate(invalid="ignore"):
        move = close / previous - 1.0
        reach = band[None, :] - LIMIT_TOLERANCE
        return np.nan_to_num(move, nan=0.0) >= reach, np.nan_to_num(move, nan=0.0) <= -reach


def _forward_filled(values: FloatArray) -> FloatArray:
    """Each column's last finite value at or before each row; NaN before its first."""
    rows = np.where(np.isfinite(values), np.arange(len(values))[:, None], 0)
    np.maximum.accumulate(rows, axis=0, out=rows)
    return values[rows, np.arange(values.shape[1])[None, :]]


@dataclass(frozen=True, eq=False)
class Session:
    """What a strategy sees at the open of session `day`."""

    day: int
    open: FloatArray
    """the session's open, 0 where a symbol has no bar."""
    shares: FloatArray
    """held before the session's fills."""
    sellable: FloatArray
    """shares that may be sold now: settled, the symbol trading and not at its floor at the last close."""
    buyable: BoolArray
    """trading now and not at its ceiling at the last close."""
    value: float
    """cash plus holdings at the open (the last close where a symbol has no bar)."""


class Strategy(Protocol):
    unaffordable: int
    """purchases the strategy left out because one lot cost more than their part of the cash."""

    def sells(self, s: Session) -> FloatArray: ...

    def buys(self, s: Session, cash: float) -> FloatArray: ...


def _affordable(buy: FloatArray, price: FloatArray, cash: float, rules: Rules) -> FloatArray:
    """`buy` cut down, in whole lots and in proportion, to what `cash` pays for, commission included."""
    cost = float((buy * price * (1 + rules.commission)).sum())
    if cost <= cash:
        return buy
    buy = np.floor(buy * (max(cash, 0.0) / cost) / rules.lot) * rules.lot
    while float((buy * price + buy * price * rules.commission).sum()) > cash and buy.any():
        biggest = int(np.argmax(buy * price))  # a rounding hair: one lot less of the largest purchase
        buy[biggest] -= rules.lot[biggest]
    return buy


def simulate(panel: Panel, rules: Rules, strategies: Sequence[Strategy]) -> list[Run]:
    """Run each strategy over `panel` under `rules` (the module docstring's), sharing the per-panel work."""
    bar = np.isfinite(panel.open) & np.isfinite(panel.close)
    closes = np.where(bar, panel.close, np.nan)
    mark = np.nan_to_num(_forward_filled(closes))
    ceiling, floor = limits(closes, rules.band)
    return [_simulate(np.where(bar, panel.open, 0.0), bar, mark, ceiling, floor, rules, s) for s in strategies]


def _simulate(open_: FloatArray, bar: BoolArray, mark: FloatArray, ceiling: BoolArray, floor: BoolArray,
              rules: Rules, strategy: Strategy) -> Run:
    """One strategy, session by session; open_ is 0 and bar False where a symbol has no bar, mark the last close."""
    days, n = open_.shape
    settle = int(rules.settlement.max(initial=0))
    shares, cash = np.zeros(n), float(rules.capital)
    out = {name: np.zeros((days, n)) for name in ("shares", "bought", "sold")}
    per_day = {name: np.zeros(days) for name in ("equity", "cash", "commission", "tax", "traded")}
    per_day["equity"][0] = per_day["cash"][0] = cash
    for d in range(1, days):
        first = min(max(d - settle + 1, 0), d)  # purchases of sessions first..d-1 may not have settled
        age = d - np.arange(first, d)
        unsettled = (out["bought"][first:d] * (age[:, None] < rules.settlement[None, :])).sum(axis=0)
        trading = bar[d]
        sellable = np.where(trading & ~floor[d - 1], np.maximum(shares - unsettled, 0.0), 0.0)
        value = cash + float((shares * np.where(trading, open_[d], mark[d - 1])).sum())
        session = Session(d, open_[d], shares, sellable, trading & ~ceiling[d - 1], value)
        sold = np.minimum(strategy.sells(session), sellable)
        proceeds = sold * open_[d]
        commission, tax = proceeds * rules.commission, proceeds * rules.sell_tax
        cash += float((proceeds - commission - tax).sum())
        wanted = np.where(session.buyable, strategy.buys(session, cash), 0.0)
        bought = _affordable(wanted, open_[d], cash, rules)
        spent = bought * open_[d]
        fee = spent * rules.commission
        cash -= float((spent + fee).sum())
        shares = shares - sold + bought
        out["shares"][d], out["bought"][d], out["sold"][d] = shares, bought, sold
        per_day["cash"][d] = cash
        per_day["equity"][d] = cash + float((shares * mark[d]).sum())
        per_day["commission"][d] = float((commission + fee).sum())
        per_day["tax"][d] = float(tax.sum())
        per_day["traded"][d] = float((proceeds + spent).sum())
    return Run(per_day["equity"], per_day["cash"], out["shares"], out["bought"], out["sold"], per_day["commission"],
               per_day["tax"], per_day["traded"], strategy.unaffordable)
