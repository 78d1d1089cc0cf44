"""The run's per-symbol champions taken together: their test predictions traded as one top-k portfolio over the
watch list (tasks/evaluation/portfolio_figures.py), for the report beside the universe models' portfolios."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas import FeatureSetRef
from settings import EvaluationSettings, MarketSettings
from stores.features import read_split
from tasks.evaluation.choose import Decision
from tasks.evaluation.evaluate import EvaluationResult
from tasks.evaluation.portfolio_figures import PortfolioResult, trade_ranking
from tasks.operations.monitor import resource_logged

__all__ = ["champion_rows", "champions_portfolio"]


def champion_rows(champions: Sequence[EvaluationResult], refs: Mapping[str, FeatureSetRef]) -> pl.DataFrame:
    """date, symbol, open, close, predicted: each champion's test predictions on its symbol's test bars."""
    frames = []
    for r in champions:
        bars = read_split(refs[r.symbol], "test").select("date", pl.col("open").cast(pl.Float64),
                                                         pl.col("close").cast(pl.Float64))
        predicted = pl.DataFrame({"date": list(r.curves.dates), "predicted": list(r.curves.predicted)},
                                 schema={"date": pl.Date, "predicted": pl.Float64})
        frames.append(bars.join(predicted, on="date", how="inner").with_columns(symbol=pl.lit(r.symbol)))
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()


@task(name="champions-portfolio", cache_policy=NO_CACHE)
@resource_logged
def champions_portfolio(decisions: list[Decision], results: list[EvaluationResult],
                        production: dict[str, EvaluationResult | None], refs: dict[str, FeatureSetRef],
                        evaluation: EvaluationSettings, markets: MarketSettings) -> PortfolioResult | None:
    """The run's per-symbol champions (promoted or kept) taken together: their test predictions traded as one
    top-k portfolio over the watch list; None with fewer than two champions."""
    evaluated = {(r.symbol, r.model_type, r.version): r for r in [*results, *(p for p in production.values() if p)]}
    champions = [evaluated[key] for d in decisions
                 if (key := (d.symbol, d.model_type or "", d.version or 0)) in evaluated and d.symbol in refs]
    result = trade_ranking("the per-symbol champions", champion_rows(champions, refs), evaluation.portfolio, markets,
                           evaluation.backtesting.commission)
    if result is not None:
        print(result.line())
    return result
