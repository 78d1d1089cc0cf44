"""evaluate: score one registered model on the test split against naive baselines, backtest it, cross-validate it.

Every number is computed on the same test rows: the model, the `zero` and `last_return` baselines, the
strategy that trades on the predictions and buy-and-hold over the same bars, in the lots of the symbol's
market. A Diebold-Mariano test says whether the model's edge over the better baseline is more than noise.

Two steps, so that many candidates share one backtest: `predict_test` here (one task run per model:
predictions, prediction metrics, baselines, Diebold-Mariano, cross-validation) and `backtest_candidates`
(tasks/evaluation/score.py: one vectorised backtest for all of them, then each candidate's metrics). `evaluate` does
both for one model with its own backtest, and gives the same EvaluationResult bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

import numpy as np
import polars as pl
from prefect import task

from models.base import LABEL, Forecaster
from models.pooled import CrossSection, PooledForecaster, is_pooled
from models.registry import MODEL_MODULES, model_class
from schemas import FeatureSetRef
from settings import (
    BacktestSettings,
    CrossValidationSettings,
    EvaluationSettings,
    Market,
    WeightSettings,
)
from stores.features import history_before, read_manifest, read_split, stored_features
from stores.registry import ModelRegistry
from tasks.evaluation.backtest import BacktestResult, Sizing, Window, backtest, sizing
from tasks.evaluation.baselines import Baselines, last_return_baseline, naive_baselines
from tasks.evaluation.crossval import CVSummary, PredictionMetrics, prediction_metrics, summarize, walk_forward_metrics
from tasks.evaluation.histories import CV_PARTS, cv_history
from tasks.evaluation.risk import PerformanceMetrics, performance
from tasks.evaluation.significance import DieboldMariano, diebold_mariano
from tasks.operations.caching import RegisteredVersionInputs
from tasks.operations.monitor import resource_logged

__all__ = [
    "CV_PARTS",
    "PSR_MIN_DAYS_IN_POSITION",
    "PSR_MIN_TRADES",
    "READ_MODULES",
    "Curves",
    "EvaluationError",
    "EvaluationResult",
    "Predicted",
    "PredictionMetrics",
    "Traded",
    "backtest_settings",
    "buy_and_hold",
    "check_unseen",
    "composite_score",
    "cv_history",
    "evaluate",
    "evaluation_result",
    "predict_test",
    "prediction_metrics",
    "score_one",
    "trade_and_score",
    "traded",
]

_EPOCH = date(1970, 1, 1).toordinal()
PSR_MIN_DAYS_IN_POSITION = 30
PSR_MIN_TRADES = 5
"""a strategy's probabilistic Sharpe ratio is shown only with at least this many days in a position and trades:
with fewer, its returns are mostly flat days and the ratio says nothing about skill."""

class EvaluationError(RuntimeError):
    """A model cannot be evaluated on a feature set; the message says why."""


@dataclass(frozen=True)
class Traded:
    """A prediction series traded on its bars, and the composite score it earns."""

    run: BacktestResult
    sizing: Sizing
    strategy: PerformanceMetrics
    composite: float


@dataclass(frozen=True)
class Curves:
    """Per test row series for the report, all of equal length and in date order."""

    dates: tuple[date, ...]
    actual: tuple[float, ...]
    predicted: tuple[float, ...]
    equity: tuple[float, ...]
    benchmark_equity: tuple[float, ...]
    """buy-and-hold equity over the same bars."""


@dataclass(frozen=True)
class EvaluationResult:
    """Everything measured about one registered model version on one feature set."""

    symbol: str
    model_type: str
    version: int
    data_hash: str
    """content hash of the feature set evaluated on: results are comparable only on the same one."""
    test_start: date
    test_end: date
    rows: int
    horizon: int
    prediction: PredictionMetrics
    baselines: Baselines
    against_baseline: DieboldMariano
    """Diebold-Mariano test of the model's squared errors against the better baseline's (Baselines.best_name)."""
    sizing: Sizing
    """how the market's lots fit the capital; when not `meaningful`, the backtest terms are left out of the
    composite and every backtest number is 0 because nothing could trade."""
    price_move: float
    """close of the last test row / open of the second (buy-and-hold's first fill) - 1."""
    strategy: PerformanceMetrics
    buy_and_hold: PerformanceMetrics
    turnover: float
    exposure: float
    trades: int
    """executed trades of the strategy, the one still open at the end included."""
    total_commission: float
    cv: CVSummary
    """walk-forward folds over the train, embargo and val rows up to the last val row, refitted with this
    version's params, seed and features."""
    composite: float
    """composite_score(prediction.r2, strategy.sharpe, strategy.max_drawdown, weights, sizing.meaningful)."""
    curves: Curves


@dataclass(frozen=True)
class Predicted:
    """A model version's predictions on its test window, and every measure of them but the backtest."""

    symbol: str
    model_type: str
    version: int
    data_hash: str
    horizon: int
    dates: tuple[date, ...]
    """the test rows' dates; the tuples below have one entry per row."""
    open: tuple[float, ...]
    close: tuple[float, ...]
    actual: tuple[float, ...]
    predicted: tuple[float, ...]
    prediction: PredictionMetrics
    baselines: Baselines
    against_baseline: DieboldMariano
    cv: CVSummary

    def __str__(self) -> str:
        return f"{self.model_type:<11} {self.symbol:<8} v{self.version}"

    @property
    def window(self) -> Window:
        """The bars and predictions to backtest."""
        days = np.fromiter((d.toordinal() for d in self.dates), np.int64, len(self.dates)) - _EPOCH
        return Window(days.astype("datetime64[D]"), np.asarray(self.open), np.asarray(self.close),
                      np.asarray(self.predicted))


def composite_score(r2: float, sharpe: float, max_drawdown: float, weights: WeightSettings,
                    backtest_meaningful: bool = True) -> float:
    """w_r2 * r2 + w_sharpe * max(0, sharpe) + w_drawdown * (1 - |max_drawdown|).

    When the backtest is not meaningful (no lot fits the capital), only the w_r2 * r2 term: a strategy that
    could not trade must not score the drawdown term of a perfect, flat equity curve.
    """
    if not all(math.isfinite(v) for v in (r2, sharpe, max_drawdown)):
        raise ValueError(f"composite needs finite inputs, got r2={r2}, sharpe={sharpe}, "
                         f"max_drawdown={max_drawdown}")
    if not backtest_meaningful:
        return weights.r2 * r2
    return weights.r2 * r2 + weights.sharpe * max(0.0, sharpe) + weights.drawdown * (1.0 - abs(max_drawdown))


def backtest_settings(evaluation: EvaluationSettings, market: Market) -> BacktestSettings:
    """The backtest settings of a symbol: the configured ones in its market's lots."""
    return evaluation.backtesting.model_copy(update={"lot_size": market.lot_size})


def traded(run: BacktestResult, open_: np.ndarray, r2: float, cfg: BacktestSettings,
            weights: WeightSettings) -> Traded:
    strategy = performance(run.returns, run.equity, run.trades["pnl"].to_numpy(), cfg.risk_free_rate)
    if int(np.count_nonzero(run.position)) < PSR_MIN_DAYS_IN_POSITION or run.trades.height < PSR_MIN_TRADES:
        strategy = dataclasses.replace(strategy, psr=None)
    fit = sizing(open_, cfg)
    return Traded(run, fit, strategy,
                  composite_score(r2, strategy.sharpe, strategy.max_drawdown, weights, fit.meaningful))


def trade_and_score(window: Window, r2: float, cfg: BacktestSettings, weights: WeightSettings) -> Traded:
    """Backtest the predictions of `window` on its bars and score them with the composite."""
    run = backtest(window.dates, window.open, window.close, window.predictions, cfg)
    return traded(run, np.asarray(window.open), r2, cfg, weights)


def _require(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvaluationError(f"{what} lacks column(s) {', '.join(missing)}")


def loaded(registry: ModelRegistry, model_type: str, symbol: str, version: int, threads: int,
           cross_section: CrossSection | None = None) -> Forecaster:
    """A registered version, ready for `symbol`: a cross-sectional pooled one extended by `cross_section` (the
    statistics of dates after its training, tasks.evaluation.pooled.cross_section_updates)."""
    model, _ = registry.load(model_type, symbol, version, threads=threads)
    if cross_section is not None and isinstance(model, PooledForecaster) and model.cross_section is not None:
        model.extend(cross_section)
    return model


def check_unseen(model_type: str, version: int, details: dict[str, Any], symbol: str, test: pl.DataFrame) -> None:
    """Refuse test rows a universe version fitted or stopped early on (feature sets cut by another calendar than
    the version's): the run that trains and the run that judges it share one calendar.

    Raises:
        EvaluationError: the first test date is on or before the last date the version fitted on.
    """
    fitted = (details.get("fit_dates") or {}).get("val")
    first = str(cast(date, test["date"].min())) if test.height else None
    if fitted and first is not None and first <= fitted[1]:
        raise EvaluationError(
            f"{model_type} v{version} fitted and stopped early on dates up to {fitted[1]}; {symbol}'s test rows "
            f"start on {first}: its feature set was cut by another calendar. Build the watch list and the "
            "universe together (python -m flows.training --symbols ... --universe ...)")


def _predict(symbol: str, model_type: str, version: int, ref: FeatureSetRef,
             cross_validation: CrossValidationSettings, threads: int, registry: ModelRegistry,
             pooled_cv: dict[str, CVSummary] | None = None, cross_section: CrossSection | None = None) -> Predicted:
    entry = registry.get(model_type, symbol, version)
    horizon = int(read_manifest(ref)["horizon"])
    if entry.metadata.horizon != horizon:
        raise EvaluationError(f"{model_type} v{version} for {symbol} predicts {entry.metadata.horizon}-day "
                              f"returns; feature set {ref.content_hash[:12]} labels {horizon}-day returns")
    model = loaded(registry, model_type, symbol, version, threads, cross_section)
    available = set(stored_features(ref))  # a universe model reads features the symbol did not select itself
    missing = [f for f in model.features if f not in available]
    if missing:
        raise EvaluationError(
            f"{model_type} v{version} for {symbol} reads feature(s) missing from feature set "
            f"{ref.content_hash[:12]}: {', '.join(missing)}; retrain it on the current features")

    test = read_split(ref, "test")
    check_unseen(model_type, version, entry.metadata.details, symbol, test)
    context = history_before(ref, test)
    _require(test, ("date", "open", "close", LABEL), f"test split of {symbol}")
    _require(context, ("close",), f"rows before the test split of {symbol}")
    predicted = model.predict(test, context=context)
    actual = test[LABEL].to_numpy().astype(np.float64)
    close = test["close"].to_numpy().astype(np.float64)

    if is_pooled(model_type):
        if pooled_cv is None or symbol not in pooled_cv:
            raise EvaluationError(f"{model_type} v{version}: its walk-forward CV is one run over all its symbols "
                                  f"(pooled_cross_validation); pass it in, with {symbol}'s")
        cv = pooled_cv[symbol]
    else:
        cv = summarize(walk_forward_metrics(
            model_type, model_class(model_type).params_type(**entry.metadata.params), cv_history(ref),
            model.features, horizon, cross_validation.cv_folds, entry.metadata.seed, threads))

    context_close = context["close"].to_numpy()
    baselines = naive_baselines(actual, close, context_close, horizon)
    best = np.zeros(len(actual)) if baselines.best_name == "zero" else last_return_baseline(
        close, context_close, horizon)
    return Predicted(
        symbol=symbol, model_type=model_type, version=version, data_hash=ref.content_hash, horizon=horizon,
        dates=tuple(test["date"].to_list()), open=tuple(test["open"].to_numpy().astype(np.float64).tolist()),
        close=tuple(close.tolist()), actual=tuple(actual.tolist()), predicted=tuple(predicted.tolist()),
        prediction=prediction_metrics(predicted, actual), baselines=baselines,
        against_baseline=diebold_mariano(predicted - actual, best - actual, horizon), cv=cv)


def buy_and_hold(run: BacktestResult, cfg: BacktestSettings) -> PerformanceMetrics:
    # Buy-and-hold's one trade is still open at the end, and open trades count in no trade statistic.
    return performance(run.benchmark_returns, run.benchmark_equity, np.empty(0), cfg.risk_free_rate)


def evaluation_result(candidate: Predicted, trade: Traded, hold: PerformanceMetrics) -> EvaluationResult:
    """The EvaluationResult of a candidate traded on its test window."""
    run, c = trade.run, candidate
    return EvaluationResult(
        symbol=c.symbol, model_type=c.model_type, version=c.version, data_hash=c.data_hash,
        test_start=min(c.dates), test_end=max(c.dates), rows=len(c.dates), horizon=c.horizon,
        prediction=c.prediction, baselines=c.baselines, against_baseline=c.against_baseline,
        sizing=trade.sizing, price_move=float(c.close[-1] / c.open[min(1, len(c.open) - 1)] - 1),
        strategy=trade.strategy, buy_and_hold=hold, turnover=float(run.turnover),
        exposure=float(run.exposure), trades=run.trades.height, total_commission=float(run.total_commission),
        cv=c.cv, composite=trade.composite,
        curves=Curves(dates=c.dates, actual=c.actual, predicted=c.predicted, equity=tuple(run.equity.tolist()),
                      benchmark_equity=tuple(run.benchmark_equity.tolist())),
    )


READ_MODULES = ("tasks.evaluation.evaluate", "tasks.evaluation.histories", "tasks.data.split", "stores.features",
                *MODEL_MODULES)
"""modules whose code shapes what an evaluation reads: a registered version, loaded, and its feature sets."""

_CACHE = RegisteredVersionInputs(modules=(
    *READ_MODULES, "tasks.evaluation.crossval", "tasks.data.calendar", "tasks.evaluation.baselines",
    "tasks.evaluation.significance", "tasks.evaluation.backtest", "tasks.evaluation.risk"))


@task(name="predict-test", task_run_name="predict-test-{model_type}-{symbol}", cache_policy=_CACHE)
@resource_logged
def predict_test(symbol: str, model_type: str, version: int, ref: FeatureSetRef,
                 cross_validation: CrossValidationSettings, threads: int,
                 registry: ModelRegistry, pooled_cv: dict[str, CVSummary] | None = None,
                 cross_section: CrossSection | None = None) -> Predicted:
    """Predict the test split of `ref` with registered `model_type` v`version` of `symbol`; score everything
    but the backtest (backtest_candidates does that for many candidates at once).

    `pooled_cv`: a pooled model's walk-forward summaries by symbol (pooled_cross_validation); a per-symbol model's
    is computed here. `cross_section`: a cross-sectional pooled model's statistics of later dates (`loaded`).
    Cached on the version's metadata, every other input by content (the feature set's content hash among them) and
    the code it runs: a new version, feature set, CV setting or code computes it again.

    Raises:
        EvaluationError: the model reads features the feature set lacks, or was trained for another horizon.
    """
    return _predict(symbol, model_type, version, ref, cross_validation, threads, registry, pooled_cv, cross_section)


@task(name="evaluate", task_run_name="evaluate-{model_type}-{symbol}", cache_policy=_CACHE)
@resource_logged
def evaluate(symbol: str, model_type: str, version: int, ref: FeatureSetRef, evaluation: EvaluationSettings,
             threads: int, weights: WeightSettings, market: Market,
             registry: ModelRegistry, cross_section: CrossSection | None = None) -> EvaluationResult:
    """Score registered `model_type` v`version` of `symbol` on the test split of `ref`, in `market`'s lots.

    One candidate with its own backtest: evaluation-pipeline runs predict_test and backtest_candidates
    instead, which give the same result for many candidates at once.

    Raises:
        EvaluationError: the model reads features the feature set lacks, or was trained for another horizon.
    """
    return score_one(_predict(symbol, model_type, version, ref, evaluation.cross_validation, threads, registry,
                              cross_section=cross_section), evaluation, weights, market)


def score_one(candidate: Predicted, evaluation: EvaluationSettings, weights: WeightSettings,
              market: Market) -> EvaluationResult:
    """Backtest one candidate on its own (`backtest`) and score it: what backtest_candidates does for many."""
    cfg = backtest_settings(evaluation, market)
    trade = trade_and_score(candidate.window, candidate.prediction.r2, cfg, weights)
    return evaluation_result(candidate, trade, buy_and_hold(trade.run, cfg))
