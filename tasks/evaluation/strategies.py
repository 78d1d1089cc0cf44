"""strategies: what a portfolio wants to sell and buy at each session's open (tasks/evaluation/portfolio.py trades
it under the exchanges' rules): a ranking's top-k, the equal-weight universe, its buy-and-hold."""

from __future__ import annotations

import numpy as np

from tasks.evaluation.portfolio import FloatArray, IntArray, Rules, Session

__all__ = ["BuyAndHold", "EqualWeight", "TopK", "effective_k"]


def _lots(budget: FloatArray | float, price: FloatArray, rules: Rules) -> FloatArray:
    """Whole lots whose cost, commission included, fits `budget` (per symbol); 0 where the price is 0."""
    cost = price * (1 + rules.commission)
    safe = np.where(cost > 0, cost, 1.0)
    q = np.where(cost > 0, np.floor(budget / safe / rules.lot) * rules.lot, 0.0)
    over = q * price + q * price * rules.commission > budget  # the division rounded to a lot a hair too dear
    return np.where(over, np.maximum(q - rules.lot, 0.0), q)


def effective_k(top_k: int, symbols: int) -> int:
    """The names a top-k portfolio holds: top_k, at most half the universe (holding it all would test nothing)."""
    return max(1, min(top_k, symbols // 2))


class TopK:
    """Hold the k best-ranked names at equal weight: each session sell at most `n_drop` holdings that left the top
    k (the worst-ranked first, unscored ones before all), then buy the best-ranked names not held until k are held,
    splitting the cash equally among the purchases."""

    def __init__(self, score: FloatArray, k: int, n_drop: int, rules: Rules) -> None:
        self.k, self.n_drop, self.rules = k, n_drop, rules
        # rank[d, i]: place of symbol i in the ranking after session d (0 best; ties by column; unscored last).
        order = np.argsort(np.where(np.isfinite(score), -score, np.inf), axis=1, kind="stable")
        self.rank = np.empty_like(order)
        np.put_along_axis(self.rank, order, np.arange(score.shape[1])[None, :], axis=1)
        self.scored = np.isfinite(score)
        self.unaffordable = 0

    def sells(self, s: Session) -> FloatArray:
        rank = self.rank[s.day - 1]
        held = s.shares > 0
        out = held & (rank >= self.k) & (s.sellable == s.shares)
        drop = np.flatnonzero(out)
        drop = drop[np.argsort(-rank[drop], kind="stable")[:self.n_drop]]
        sold = np.zeros_like(s.shares)
        sold[drop] = s.shares[drop]
        self._slots = self.k - int(held.sum()) + len(drop)  # read by `buys`, which the engine calls next
        return sold

    def buys(self, s: Session, cash: float) -> FloatArray:
        bought = np.zeros_like(s.shares)
        if self._slots <= 0:
            return bought
        rank = self.rank[s.day - 1]
        candidates = np.flatnonzero((s.shares == 0) & self.scored[s.day - 1] & s.buyable)
        chosen = candidates[np.argsort(rank[candidates], kind="stable")[:self._slots]]
        if len(chosen):
            bought[chosen] = _lots(cash / len(chosen), s.open[chosen], _subset(self.rules, chosen))
            self.unaffordable += int((bought[chosen] == 0).sum())
        return bought


class EqualWeight:
    """Every symbol with a bar at equal weight of the value at the open, rebalanced each session."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.unaffordable = 0

    def sells(self, s: Session) -> FloatArray:
        trading = s.open > 0
        lots = _lots(s.value / max(int(trading.sum()), 1), s.open, self.rules)
        self.unaffordable += int((trading & (lots == 0)).sum())
        self._target = np.where(trading, lots, s.shares)
        return np.minimum(np.maximum(s.shares - self._target, 0.0), s.sellable)

    def buys(self, s: Session, cash: float) -> FloatArray:
        return np.maximum(self._target - s.shares, 0.0)


class BuyAndHold:
    """Equal parts of the capital in every symbol with a bar at the first fill, held to the end."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.unaffordable = 0

    def sells(self, s: Session) -> FloatArray:
        return np.zeros_like(s.shares)

    def buys(self, s: Session, cash: float) -> FloatArray:
        trading = s.open > 0
        if s.day != 1 or not trading.any():
            return np.zeros_like(s.shares)
        lots = np.where(trading, _lots(cash / int(trading.sum()), s.open, self.rules), 0.0)
        self.unaffordable += int((trading & (lots == 0)).sum())
        return lots


def _subset(rules: Rules, columns: IntArray) -> Rules:
    return Rules(rules.capital, rules.commission, rules.lot[columns], rules.band[columns], rules.sell_tax[columns],
                 rules.settlement[columns])
