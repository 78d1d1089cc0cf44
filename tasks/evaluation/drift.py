"""drift: a production model measured on the newest sessions: its composite, and how its symbol's volatility moved.

Drift is measured on a stationary transform of the bars every feature is built from, the daily range
ln(high / low), never on the features' levels: a feature over 60 sessions moves so slowly that comparing its
newest weeks with the train split measures where the window happens to sit (a PSI of 3.7 to 4.2 on a stationary
market), not a change of the process. The bound on the shift is calibrated by `python -m benchmarks.monitoring`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.base import LABEL, Forecaster
from models.pooled import CrossSection
from schemas import FeatureSetRef
from settings import BacktestSettings, EvaluationSettings, Market, ModelsSettings, WeightSettings
from stores.features import read_split, stored_features
from stores.registry import ModelRegistry
from tasks.data.split import PART
from tasks.evaluation.backtest import Window
from tasks.evaluation.crossval import PredictionMetrics, prediction_metrics
from tasks.evaluation.evaluate import EvaluationError, backtest_settings, loaded, trade_and_score
from tasks.evaluation.risk import PerformanceMetrics
from tasks.operations.monitor import resource_logged

__all__ = ["MARKET_MIN_SYMBOLS", "VolatilityShift", "WindowAssessment", "assess", "assess_window", "market_shift",
           "market_volatility", "volatility_shift"]


MARKET_MIN_SYMBOLS = 5
"""fewest symbols whose median is taken as the market's volatility shift."""


@dataclass(frozen=True)
class VolatilityShift:
    """How a symbol's daily range moved: its newest `recent_days` sessions against the `reference_days` before."""

    recent_days: int
    reference_days: int
    log_ratio: float
    """mean ln(ln(high / low)) of the recent sessions minus that of the reference sessions."""

    @property
    def ratio(self) -> float:
        """The recent daily range as a multiple of the reference one (geometric means)."""
        return math.exp(self.log_ratio)


def volatility_shift(bars: pl.DataFrame, recent_days: int, reference_days: int) -> VolatilityShift:
    """The shift of the daily range ln(high / low) over the newest `recent_days` bars of `bars` (chronological)
    against the `reference_days` bars before them. Bars without a range (high equal to low: no trade, or a
    price locked at its limit) are left out of both means.

    Raises:
        ValueError: fewer than recent_days + reference_days bars, or a side with no bar that has a range.
    """
    if recent_days < 1 or reference_days < 1:
        raise ValueError(f"recent_days and reference_days must be at least 1, got {recent_days}, {reference_days}")
    if bars.height < recent_days + reference_days:
        raise ValueError(f"{bars.height} bars, need {recent_days + reference_days} to measure a volatility shift")
    span = bars.tail(recent_days + reference_days)
    ranges = np.log(span["high"].to_numpy().astype(np.float64) / span["low"].to_numpy().astype(np.float64))
    reference, recent = ranges[:reference_days], ranges[reference_days:]
    reference, recent = reference[reference > 0], recent[recent > 0]
    if reference.size == 0 or recent.size == 0:
        raise ValueError("no bar with a daily range (high above low) on one side of the volatility shift")
    return VolatilityShift(recent_days, reference_days, float(np.log(recent).mean() - np.log(reference).mean()))


def market_shift(shifts: list[VolatilityShift]) -> VolatilityShift:
    """The market's volatility shift: the median of its symbols' log ratios (one symbol's news moves it little, a
    change of the whole market moves every symbol).

    Raises:
        ValueError: no shift given.
    """
    if not shifts:
        raise ValueError("no symbol's volatility shift to take the market's from")
    first = shifts[0]
    return VolatilityShift(first.recent_days, first.reference_days,
                           float(np.median([s.log_ratio for s in shifts])))


@task(name="market-volatility", cache_policy=NO_CACHE)
@resource_logged
def market_volatility(refs: list[FeatureSetRef], recent_days: int, reference_days: int) -> VolatilityShift | None:
    """The market's volatility shift over the current feature sets `refs` of a universe (see `market_shift`);
    symbols with too few bars are left out, and None is returned when fewer than 5 symbols remain."""
    shifts = []
    for ref in refs:
        bars = read_split(ref, "all").select("high", "low")
        try:
            shifts.append(volatility_shift(bars, recent_days, reference_days))
        except ValueError as exc:
            print(f"{ref.symbol}: left out of the market's volatility ({exc})")
    return market_shift(shifts) if len(shifts) >= MARKET_MIN_SYMBOLS else None


@dataclass(frozen=True)
class WindowAssessment:
    """A production model measured on the newest labelled rows of the current feature set."""

    symbol: str
    model_type: str
    version: int
    data_hash: str
    window_start: date
    window_end: date
    rows: int
    prediction: PredictionMetrics
    strategy: PerformanceMetrics
    composite: float
    """composite_score of the window's R², strategy Sharpe and max drawdown."""
    volatility: VolatilityShift
    """the symbol's daily range over the newest sessions against the sessions before."""


def assess(model: Forecaster, everything: pl.DataFrame, symbol: str, model_type: str, version: int, data_hash: str,
           window_days: int, recent_days: int, reference_days: int, backtesting: BacktestSettings,
           weights: WeightSettings) -> WindowAssessment:
    """Score `model` on the newest `window_days` labelled rows of `everything` (a feature set's rows, oldest
    first, unlabelled newest rows included) and measure the volatility shift of its newest bars.

    Raises:
        EvaluationError: too few labelled rows or bars.
    """
    labelled = everything.filter(pl.col(LABEL).is_not_null())
    if labelled.height < window_days + 1:
        raise EvaluationError(f"{symbol}: {labelled.height} labelled rows, need more than {window_days}")
    window = labelled.tail(window_days)
    context = everything.filter(pl.col("date") < window["date"].min())
    try:
        shift = volatility_shift(everything, recent_days, reference_days)
    except ValueError as exc:
        raise EvaluationError(f"{symbol}: {exc}") from exc
    predicted = model.predict(window, context=context)
    prediction = prediction_metrics(predicted, window[LABEL].to_numpy().astype(np.float64))
    bars = Window(window["date"].to_numpy(), window["open"].to_numpy(), window["close"].to_numpy(), predicted)
    traded = trade_and_score(bars, prediction.r2, backtesting, weights)
    return WindowAssessment(
        symbol=symbol, model_type=model_type, version=version, data_hash=data_hash,
        window_start=window["date"].min(), window_end=window["date"].max(),  # type: ignore[arg-type]
        rows=window.height, prediction=prediction, strategy=traded.strategy, composite=traded.composite,
        volatility=shift)


@task(name="assess-window", task_run_name="assess-window-{model_type}-{symbol}", cache_policy=NO_CACHE)
@resource_logged
def assess_window(symbol: str, model_type: str, version: int, ref: FeatureSetRef, window_days: int,
                  evaluation: EvaluationSettings, models: ModelsSettings, weights: WeightSettings,
                  market: Market, registry: ModelRegistry, drift_days: int = 10, reference_days: int = 60,
                  cross_section: CrossSection | None = None) -> WindowAssessment:
    """Score `model_type` v`version` on the newest `window_days` labelled rows of `ref`, and measure the volatility
    shift of the newest `drift_days` bars against the `reference_days` before. `cross_section`: a
    cross-sectional pooled model's statistics of dates after its training.

    Raises:
        EvaluationError: the model reads features the feature set lacks, or too few labelled rows exist.
    """
    model = loaded(registry, model_type, symbol, version, models.threads, cross_section)
    available = set(stored_features(ref))  # a universe model reads features the symbol did not select itself
    missing = [f for f in model.features if f not in available]
    if missing:
        raise EvaluationError(f"{model_type} v{version} for {symbol} reads feature(s) missing from feature set "
                              f"{ref.content_hash[:12]}: {', '.join(missing)}")
    everything = read_split(ref, "all").drop(PART)
    return assess(model, everything, symbol, model_type, version, ref.content_hash, window_days, drift_days,
                  reference_days, backtest_settings(evaluation, market), weights)
