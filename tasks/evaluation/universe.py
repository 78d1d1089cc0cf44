"""The evidence a universe (pooled) model is judged on: its predictions over every symbol of its universe on the
run's test dates, as a cross-sectional ranking.

Per test date with at least `min_symbols` symbols: the Spearman correlation across symbols of predicted and
actual returns (the daily rank IC; 0 when the day's predictions do not rank, as when they are all equal). The
mean daily IC is tested against 0 with a Newey-West standard error (lags at least the label horizon), one-sided.
Beside it, the Diebold-Mariano test of the date-averaged loss differential against the zero forecast: per date,
the mean squared error over the day's symbols less the mean squared return. One symbol's test window cannot show
an effect of this size (README, "What the significance gate can see"); the universe's dates can. And what the
ranking earns: a top-k portfolio on the same dates against the equal-weight universe, after costs and taxes
(tasks/evaluation/portfolio_figures.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
from prefect import task

from models.base import LABEL
from models.pooled import POOLED_FOLDER
from schemas import FeatureSetRef
from settings import MarketSettings, PortfolioSettings
from stores.features import read_manifest, read_split
from stores.registry import ModelRegistry
from tasks.data.split import PART
from tasks.evaluation.evaluate import READ_MODULES, EvaluationError, check_unseen, loaded
from tasks.evaluation.portfolio_figures import PortfolioResult, trade_ranking
from tasks.evaluation.significance import (
    DieboldMariano,
    MeanTest,
    loss_differential_test,
    newey_west_lags,
    newey_west_mean,
)
from tasks.operations.caching import RegisteredVersionInputs
from tasks.operations.monitor import resource_logged

__all__ = ["UniverseEvidence", "daily_rank_ic", "universe_evidence", "weigh_evidence"]

if TYPE_CHECKING:
    from models.pooled import CrossSection


@dataclass(frozen=True)
class UniverseEvidence:
    """A universe model's test predictions over its symbols, summarised as a cross-sectional ranking."""

    model_type: str
    version: int
    symbols: int
    """symbols with test predictions."""
    dates: int
    """test dates that count: with predictions for `min_symbols` symbols or more."""
    skipped_dates: int
    """test dates with fewer symbols than that."""
    min_symbols: int
    first_date: str | None
    last_date: str | None
    ic: MeanTest | None
    """the mean daily rank IC and its one-sided Newey-West test; None with fewer than 3 dates that count."""
    loss: DieboldMariano | None
    """Diebold-Mariano of the date-averaged squared-error differential against the zero forecast (small p: the
    model's errors are lower); None with fewer than 3 dates."""
    portfolio: PortfolioResult | None = None
    """the ranking traded as a top-k portfolio on the test dates; None with fewer than 2 symbols or 3 dates."""

    @property
    def p_value(self) -> float:
        """The gate's raw p-value: the IC test's, 1.0 when there is no test."""
        return self.ic.p_value if self.ic is not None else 1.0

    def summary(self, adjusted: float, level: float, family: int) -> str:
        """The test in a few words, for a candidate's reason line."""
        relation = "<" if adjusted < level else ">="
        if self.ic is None:
            return f"no daily IC ({self.dates} test date(s) with {self.min_symbols} symbols or more)"
        return (f"mean daily rank IC {self.ic.mean:+.4f} (t {self.ic.statistic:+.2f}) over {self.symbols} symbols "
                f"and {self.dates} test dates, p {self.ic.p_value:.3g}, Holm-adjusted over {family} universe "
                f"model(s) {adjusted:.3g} {relation} {level:g}")

    def line(self, adjusted: float | None = None, level: float | None = None, family: int = 1) -> str:
        """The evidence in words, with the Holm-adjusted p when given."""
        name = f"{self.model_type} v{self.version}"
        if self.ic is None:
            return (f"{name}: over {self.symbols} symbols, no daily IC: {self.dates} test date(s) with "
                    f"{self.min_symbols} symbols or more (a universe needs at least {self.min_symbols} symbols)")
        skipped = f", {self.skipped_dates} date(s) with fewer than {self.min_symbols} symbols left out" \
            if self.skipped_dates else ""
        text = (f"{name}: over {self.symbols} symbols and {self.dates} test dates ({self.first_date}.."
                f"{self.last_date}{skipped}), mean daily rank IC {self.ic.mean:+.4f} (Newey-West t "
                f"{self.ic.statistic:+.2f}, {self.ic.lags} lags), p {self.ic.p_value:.3g}")
        if adjusted is not None:
            verdict = "" if level is None else (" < " if adjusted < level else " >= ") + f"{level:g}"
            text += f", Holm-adjusted over {family} universe model(s) {adjusted:.3g}{verdict}"
        if self.loss is not None:
            text += (f"; date-averaged squared error vs the zero forecast: DM {self.loss.statistic:+.2f}, "
                     f"p {self.loss.p_value:.3g}")
        if self.portfolio is not None:
            text += f". {self.portfolio.line()}"
        return text


def daily_rank_ic(rows: pl.DataFrame, min_symbols: int) -> tuple[pl.DataFrame, int]:
    """Per date with `min_symbols` symbols or more: the Spearman correlation of `predicted` with `actual` (0 where
    either does not vary that day), the day's mean squared error and mean squared return; and how many dates had
    fewer symbols. `rows`: date, predicted, actual, one row per symbol and date."""
    per_date = rows.group_by("date").agg(
        pl.len().alias("symbols"),
        pl.corr("predicted", "actual", method="spearman").alias("ic"),
        ((pl.col("predicted") - pl.col("actual")) ** 2).mean().alias("mse"),
        (pl.col("actual") ** 2).mean().alias("zero_mse"),
    ).sort("date")
    counted = per_date.filter(pl.col("symbols") >= min_symbols).with_columns(
        pl.col("ic").fill_nan(0.0).fill_null(0.0))
    return counted, per_date.height - counted.height


def weigh_evidence(model_type: str, version: int, rows: pl.DataFrame, min_symbols: int, horizon: int,
                   portfolio: PortfolioResult | None = None) -> UniverseEvidence:
    """The evidence of `rows` (date, symbol, predicted, actual: a version's test predictions over its universe),
    with the ranking's `portfolio` when it was traded."""
    daily, skipped = daily_rank_ic(rows.select("date", "predicted", "actual"), min_symbols)
    symbols = rows["symbol"].n_unique() if rows.height else 0
    first, last = (str(daily["date"].min()), str(daily["date"].max())) if daily.height else (None, None)
    if daily.height < 3:
        return UniverseEvidence(model_type, version, symbols, daily.height, skipped, min_symbols, first, last,
                                None, None, portfolio)
    ic = newey_west_mean(daily["ic"].to_numpy(), newey_west_lags(daily.height, horizon))
    loss = loss_differential_test((daily["mse"] - daily["zero_mse"]).to_numpy(), horizon)
    return UniverseEvidence(model_type, version, symbols, daily.height, skipped, min_symbols, first, last, ic, loss,
                            portfolio)


@task(name="universe-evidence", task_run_name="universe-evidence-{model_type}-v{version}",
      cache_policy=RegisteredVersionInputs(folder=POOLED_FOLDER, modules=(
          *READ_MODULES, "tasks.evaluation.universe", "tasks.evaluation.significance", "tasks.evaluation.portfolio",
          "tasks.evaluation.strategies", "tasks.evaluation.portfolio_figures", "tasks.evaluation.risk")))
@resource_logged
def universe_evidence(model_type: str, version: int, refs: dict[str, FeatureSetRef], threads: int,
                      registry: ModelRegistry, min_symbols: int, cross_section: CrossSection | None = None, *,
                      portfolio: PortfolioSettings, commission: float, markets: MarketSettings) -> UniverseEvidence:
    """Predict the test rows of every symbol of `refs` (the version's universe) with pooled `model_type`
    v`version`, weigh them as a cross-sectional ranking (`weigh_evidence`) and trade them as a top-k `portfolio`
    in the symbols' `markets`, paying `commission` per side (evaluation.backtesting.commission).

    Raises:
        EvaluationError: a feature set labels another horizon than the model predicts.
    """
    from models.pooled import PooledForecaster

    details = registry.get(model_type, POOLED_FOLDER, version).metadata.details
    model = loaded(registry, model_type, POOLED_FOLDER, version, threads, cross_section)
    if not isinstance(model, PooledForecaster):
        raise EvaluationError(f"{model_type} v{version} is not a universe model")
    tests, contexts = {}, {}
    for symbol, ref in sorted(refs.items()):
        if int(read_manifest(ref)["horizon"]) != model.horizon:
            raise EvaluationError(f"{model_type} v{version} predicts {model.horizon}-day returns; the feature set of "
                                  f"{symbol} labels {read_manifest(ref)['horizon']}-day returns")
        # one read of the snapshot: the test rows, and the rows before them as the model's context
        everything = read_split(ref, "all", ["date", LABEL, "open", "close", PART, *model.pooled])
        tests[symbol] = everything.filter(pl.col(PART) == "test").drop(PART)
        check_unseen(model_type, version, details, symbol, tests[symbol])
        context = everything.filter(pl.col("date") < tests[symbol]["date"].min()).select(
            "date", *(f for f in model.pooled if f in everything.columns))
        contexts[symbol] = context if model.context_rows is None else context.tail(model.context_rows)  # all it reads
    predicted = model.predict_many({s: (tests[s], contexts[s]) for s in tests})
    schema = {"date": pl.Date, "symbol": pl.String, "predicted": pl.Float64, "actual": pl.Float64,
              "open": pl.Float64, "close": pl.Float64}
    rows = pl.concat([test.select(
        "date", pl.lit(symbol, pl.String).alias("symbol"), pl.Series("predicted", predicted[symbol]),
        pl.col(LABEL).cast(pl.Float64).alias("actual"), pl.col("open").cast(pl.Float64),
        pl.col("close").cast(pl.Float64)) for symbol, test in tests.items()]) if tests else pl.DataFrame(schema=schema)
    traded = trade_ranking(f"{model_type} v{version}", rows, portfolio, markets, commission)
    evidence = weigh_evidence(model_type, version, rows, min_symbols, model.horizon, traded)
    print(evidence.line())
    return evidence
