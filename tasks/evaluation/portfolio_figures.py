"""What a ranking earns as a top-k portfolio, against the equal-weight universe and its buy-and-hold on the same
sessions, after costs and taxes (tasks/evaluation/portfolio.py runs them; formulas in docs/metrics.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from settings import MarketSettings, PortfolioSettings
from tasks.evaluation.portfolio import Panel, Rules, Run, simulate
from tasks.evaluation.risk import TRADING_DAYS
from tasks.evaluation.significance import probabilistic_sharpe
from tasks.evaluation.strategies import BuyAndHold, EqualWeight, TopK, effective_k

__all__ = ["Figures", "PortfolioResult", "figures", "trade_ranking"]


@dataclass(frozen=True)
class Figures:
    """One strategy's figures over its sessions; rates are fractions."""

    annual_return: float
    """(final equity / capital) ** (252 / return days) - 1."""
    max_drawdown: float
    """deepest fall of equity below its running peak (<= 0)."""
    turnover: float
    """value of all fills, both sides, / mean equity, per year."""
    commission: float
    tax: float
    cost_share: float
    """commission and tax / mean equity, per year."""
    cash_share: float
    """mean fraction of equity held in cash."""
    unaffordable: int
    """purchases left out because one lot cost more than the cash for it."""


@dataclass(frozen=True)
class PortfolioResult:
    """A ranking's top-k portfolio beside the equal-weight universe (daily rebalanced) and its buy-and-hold."""

    name: str
    k: int
    n_drop: int
    symbols: int
    dates: tuple[str, ...]
    equity: tuple[float, ...]
    equal_weight_equity: tuple[float, ...]
    buy_and_hold_equity: tuple[float, ...]
    strategy: Figures
    equal_weight: Figures
    buy_and_hold: Figures
    excess_return: float
    """annual return less the equal-weight universe's, both after costs."""
    information_ratio: float | None
    """mean / std (ddof 1) of the daily excess return over the equal-weight universe * sqrt(252); None when flat."""
    psr: float | None
    """probabilistic Sharpe ratio of the daily excess return: P(its true Sharpe > 0)."""

    @property
    def label(self) -> str:
        return f"top-{self.k} of {self.name}"

    def line(self) -> str:
        """The result in one sentence."""
        s, e = self.strategy, self.equal_weight
        ir = "n/a" if self.information_ratio is None else f"{self.information_ratio:+.2f}"
        psr = "n/a" if self.psr is None else f"{self.psr:.2f}"
        lots = f"; {s.unaffordable} purchase(s) left out, one lot costing more than their cash" \
            if s.unaffordable else ""
        return (f"{self.label} (replacing at most {self.n_drop} a day) over {self.symbols} symbols and "
                f"{len(self.dates) - 1} sessions ({self.dates[0]}..{self.dates[-1]}): {s.annual_return:+.1%} a year "
                f"after costs vs the equal-weight universe's {e.annual_return:+.1%}, excess {self.excess_return:+.1%} "
                f"(information ratio {ir}, PSR {psr}); max drawdown {s.max_drawdown:.1%}, turnover "
                f"{s.turnover:.1f}x a year, commission and tax {s.cost_share:.1%} of equity a year{lots}")


def figures(run: Run, capital: float) -> Figures:
    """The figures of one simulated strategy."""
    equity = run.equity
    years = max(len(equity) - 1, 1) / TRADING_DAYS
    mean_equity = float(equity.mean())
    growth = equity[-1] / capital
    peak = np.maximum.accumulate(equity)
    per_year = 1.0 / years / mean_equity if mean_equity > 0 else 0.0
    return Figures(
        annual_return=float(growth ** (1 / years) - 1) if growth > 0 else -1.0,
        max_drawdown=float(np.min(equity / peak - 1.0)),
        turnover=float(run.traded.sum() * per_year),
        commission=float(run.commission.sum()), tax=float(run.tax.sum()),
        cost_share=float((run.commission.sum() + run.tax.sum()) * per_year),
        cash_share=float(np.mean(run.cash / np.where(equity > 0, equity, 1.0))),
        unaffordable=run.unaffordable)


def _daily(equity: np.ndarray) -> np.ndarray:
    return equity[1:] / equity[:-1] - 1.0


def trade_ranking(name: str, rows: pl.DataFrame, portfolio: PortfolioSettings, markets: MarketSettings,
                  commission: float) -> PortfolioResult | None:
    """`rows` (date, symbol, open, close, predicted) traded as a top-k portfolio; None with fewer than 2 symbols or
    3 dates (nothing to rank or no return to measure)."""
    if rows.height == 0 or rows["symbol"].n_unique() < 2 or rows["date"].n_unique() < 3:
        return None
    panel = Panel.of(rows)
    rules = Rules.of(panel.symbols, markets, commission, portfolio.initial_capital)
    k = effective_k(portfolio.top_k, len(panel.symbols))
    runs = simulate(panel, rules, [TopK(panel.score, k, portfolio.n_drop, rules), EqualWeight(rules),
                                   BuyAndHold(rules)])
    own, equal, held = (figures(r, rules.capital) for r in runs)
    excess = _daily(runs[0].equity) - _daily(runs[1].equity)
    spread = float(excess.std(ddof=1)) if len(excess) > 1 else 0.0
    return PortfolioResult(
        name=name, k=k, n_drop=portfolio.n_drop, symbols=len(panel.symbols),
        dates=tuple(str(d)[:10] for d in panel.dates), equity=tuple(runs[0].equity.tolist()),
        equal_weight_equity=tuple(runs[1].equity.tolist()), buy_and_hold_equity=tuple(runs[2].equity.tolist()),
        strategy=own, equal_weight=equal, buy_and_hold=held,
        excess_return=own.annual_return - equal.annual_return,
        information_ratio=float(excess.mean() / spread * np.sqrt(TRADING_DAYS)) if spread > 0 else None,
        psr=probabilistic_sharpe(excess))
