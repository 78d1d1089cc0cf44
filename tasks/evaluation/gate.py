"""The significance gate: which candidates may become a symbol's champion, with the p-values behind it.

- A per-symbol candidate: its test RMSE below the better naive baseline's, with the Diebold-Mariano p-value of that
  edge, Holm-adjusted across the symbol's own per-symbol candidates, below the level.
- A universe (pooled) candidate: its mean daily cross-sectional rank IC over the universe's test dates above 0
  (tasks/evaluation/universe.py), the p-value Holm-adjusted across the run's universe candidates, below the level;
  its top-k portfolio's annual return above the equal-weight universe's after costs and taxes (unless
  model_selection.require_positive_excess is off); then, for each symbol of its universe, a test RMSE not
  significantly worse than the zero forecast's there.

Each family's chance of promoting anything by chance stays at or below the level; benchmarks/promotion.py
measures what the whole run does on a market with nothing to find and on one with a planted effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.pooled import is_pooled
from tasks.evaluation.evaluate import EvaluationResult
from tasks.evaluation.significance import diebold_mariano, holm
from tasks.evaluation.universe import UniverseEvidence

__all__ = ["Verdict", "gate_verdicts", "universe_verdicts"]

Key = tuple[str, str, int]
"""(symbol, model type, version)."""


@dataclass(frozen=True)
class Verdict:
    """What the gate says of one candidate on one symbol."""

    passed: bool
    p_value: float
    """the raw p-value of the family's test: DM against the better baseline, or the universe IC test."""
    adjusted: float
    """Holm-adjusted across the family."""
    family: int
    """tests in the family: the symbol's per-symbol candidates, or the run's universe candidates."""
    text: str
    """the numbers behind the verdict, for reason lines."""
    detail: str = ""
    """a universe candidate's whole evidence in words (the report's universe section)."""
    ineligible: bool = False
    """a universe candidate that passes its gate but not on this symbol: its test RMSE here is significantly worse
    than the zero forecast's."""


def _money(evidence: UniverseEvidence, required: bool) -> tuple[bool, str]:
    """Whether the candidate's top-k portfolio beat the equal-weight universe after costs (or need not), in words."""
    portfolio = evidence.portfolio
    if portfolio is None:
        return not required, "no top-k portfolio (fewer than 2 symbols or 3 test dates)"
    beats = portfolio.excess_return > 0
    text = (f"its top-{portfolio.k} portfolio {portfolio.excess_return:+.1%} a year against the equal-weight universe "
            f"after costs")
    if not beats:
        text += ": not positive" + ("" if required else " (not required: model_selection.require_positive_excess)")
    return beats or not required, text


def universe_verdicts(evidence: Mapping[tuple[str, int], UniverseEvidence], level: float,
                      family: Sequence[tuple[str, int]] | None = None,
                      require_excess: bool = True) -> dict[tuple[str, int], Verdict]:
    """Holm across the universe candidates `family` ((model type, version); default: those of `evidence`); one
    without evidence (its evaluation failed) counts in the family with p = 1 and fails. With `require_excess` a
    candidate whose top-k portfolio does not beat the equal-weight universe after costs fails too."""
    keys = sorted(set(family) if family is not None else set(evidence))
    raw = [evidence[k].p_value if k in evidence else 1.0 for k in keys]
    adjusted = holm(raw) if keys else []
    verdicts = {}
    for k, p, a in zip(keys, raw, adjusted, strict=True):
        found = evidence.get(k)
        money = False
        if found is None:
            text = detail = f"{k[0]} v{k[1]}: no universe evidence (its evaluation failed)"
        else:
            money, in_words = _money(found, require_excess)
            text, detail = f"{found.summary(a, level, len(keys))}; {in_words}", found.line(a, level, len(keys))
        verdicts[k] = Verdict(found is not None and found.ic is not None and a < level and money, p, a, len(keys),
                              text, detail)
    return verdicts


def _worse_than_zero(r: EvaluationResult, level: float) -> tuple[bool, float]:
    """Whether r's squared errors are significantly above the zero forecast's on its test rows, and the p-value."""
    actual = np.asarray(r.curves.actual)
    p = diebold_mariano(-actual, np.asarray(r.curves.predicted) - actual, r.horizon).p_value
    return p < level, p


def gate_verdicts(results: Sequence[EvaluationResult], evidence: Mapping[tuple[str, int], UniverseEvidence],
                  level: float, require_excess: bool = True) -> dict[Key, Verdict]:
    """A Verdict per candidate of `results` (any symbols); universe candidates without evidence fail, saying so."""
    verdicts: dict[Key, Verdict] = {}
    family = sorted({(r.model_type, r.version) for r in results if is_pooled(r.model_type)})
    universe = universe_verdicts(evidence, level, family, require_excess)
    for symbol in sorted({r.symbol for r in results}):
        own = [r for r in results if r.symbol == symbol and not is_pooled(r.model_type)]
        adjusted = holm([r.against_baseline.p_value for r in own]) if own else []
        for r, a in zip(own, adjusted, strict=True):
            below = r.prediction.rmse < r.baselines.best_rmse
            relation = "<" if below else ">="
            text = (f"rmse {r.prediction.rmse:.6g} {relation} best baseline {r.baselines.best_rmse:.6g} "
                    f"({r.baselines.best_name}), DM p={r.against_baseline.p_value:.3g}, Holm-adjusted over "
                    f"{len(own)} per-symbol candidate(s) {a:.3g} {'<' if a < level else '>='} {level:g}")
            verdicts[(symbol, r.model_type, r.version)] = Verdict(below and a < level, r.against_baseline.p_value,
                                                                  a, len(own), text)
    for r in results:
        if not is_pooled(r.model_type):
            continue
        key = (r.model_type, r.version)
        gate = universe[key]
        worse, p_worse = _worse_than_zero(r, level)
        on_symbol = (f"on {r.symbol} rmse {r.prediction.rmse:.6g} vs zero forecast {r.baselines.zero.rmse:.6g}, "
                     f"{'significantly' if worse else 'not significantly'} worse (DM p={p_worse:.3g})")
        verdicts[(r.symbol, *key)] = Verdict(gate.passed and not worse, gate.p_value, gate.adjusted, gate.family,
                                             f"universe gate: {gate.text}; {on_symbol}",
                                             ineligible=gate.passed and worse)
    return verdicts
