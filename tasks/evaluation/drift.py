"""drift: population stability of features (newest rows vs train) and a production model's score on those rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.base import LABEL
from models.pooled import CrossSection
from schemas import FeatureSetRef
from settings import EvaluationSettings, Market, ModelsSettings, WeightSettings
from stores.features import read_split, stored_features
from stores.registry import ModelRegistry
from tasks.data.split import PART
from tasks.evaluation.backtest import Window
from tasks.evaluation.crossval import PredictionMetrics, prediction_metrics
from tasks.evaluation.evaluate import EvaluationError, backtest_settings, loaded, trade_and_score
from tasks.evaluation.risk import PerformanceMetrics
from tasks.operations.monitor import resource_logged

__all__ = ["EPSILON", "FeatureDrift", "WindowAssessment", "assess_window", "feature_drift", "psi"]

EPSILON = 1e-4
"""floor of a bin's share, so an empty bin adds a large but finite term instead of infinity."""


def _finite(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError(f"{name} holds no finite values")
    return array


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`: sum over bins of (a - e) * ln(a / e).

    Bins are cut at the inner quantiles of `expected` (each holds about 1/bins of it; tied quantiles merge
    bins), bin i being (edge[i-1], edge[i]] with open outer ends. `e` and `a` are the shares of each sample
    per bin, floored at EPSILON. Non-finite values are dropped. Common reading: < 0.1 stable, 0.1-0.25 a
    moderate shift, > 0.25 a large one.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    e, a = _finite(expected, "expected"), _finite(actual, "actual")
    edges = np.unique(np.quantile(e, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    e_share = np.bincount(np.searchsorted(edges, e, side="left"), minlength=edges.size + 1) / e.size
    a_share = np.bincount(np.searchsorted(edges, a, side="left"), minlength=edges.size + 1) / a.size
    e_share, a_share = np.maximum(e_share, EPSILON), np.maximum(a_share, EPSILON)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


@dataclass(frozen=True)
class FeatureDrift:
    """PSI of each feature, newest rows against the train split."""

    psi: dict[str, float]
    """feature -> PSI, in the order the features were given."""
    worst_feature: str | None
    """the feature with the largest PSI; None when no feature was compared."""
    worst_psi: float
    """its PSI; 0.0 when no feature was compared."""


def feature_drift(train: pl.DataFrame, window: pl.DataFrame, features: Sequence[str], bins: int = 10) -> FeatureDrift:
    """PSI per feature of `window` against `train`, and the worst one.

    Raises:
        ValueError: a feature is missing from either frame or has no finite values.
    """
    missing = [f for f in features if f not in train.columns or f not in window.columns]
    if missing:
        raise ValueError(f"feature(s) missing from the frames: {', '.join(missing)}")
    values = {f: psi(train[f].to_numpy(), window[f].to_numpy(), bins) for f in features}
    if not values:
        return FeatureDrift({}, None, 0.0)
    worst = max(values, key=lambda f: values[f])
    return FeatureDrift(values, worst, values[worst])


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
    drift: FeatureDrift
    """the model's features, the newest `drift_days` rows after train against the train split."""


@task(name="assess-window", task_run_name="assess-window-{model_type}-{symbol}", cache_policy=NO_CACHE)
@resource_logged
def assess_window(symbol: str, model_type: str, version: int, ref: FeatureSetRef, window_days: int,
                  evaluation: EvaluationSettings, models: ModelsSettings, weights: WeightSettings,
                  market: Market, registry: ModelRegistry, drift_days: int = 120,
                  cross_section: CrossSection | None = None) -> WindowAssessment:
    """Score `model_type` v`version` on the newest `window_days` labelled rows of `ref`, and measure drift
    of its features over the newest `drift_days` rows against the train split. `cross_section`: a
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
    everything = read_split(ref, "all")
    labelled = everything.filter((pl.col(PART) != "latest") & pl.col(LABEL).is_not_null())
    if labelled.height < window_days + 1:
        raise EvaluationError(f"{symbol}: {labelled.height} labelled rows, need more than {window_days}")
    window = labelled.tail(window_days).drop(PART)
    context = everything.filter(pl.col("date") < window["date"].min()).drop(PART)
    train = everything.filter(pl.col(PART) == "train")

    predicted = model.predict(window, context=context)
    prediction = prediction_metrics(predicted, window[LABEL].to_numpy().astype(np.float64))
    bars = Window(window["date"].to_numpy(), window["open"].to_numpy(), window["close"].to_numpy(), predicted)
    traded = trade_and_score(bars, prediction.r2, backtest_settings(evaluation, market), weights)
    return WindowAssessment(
        symbol=symbol, model_type=model_type, version=version, data_hash=ref.content_hash,
        window_start=window["date"].min(), window_end=window["date"].max(),  # type: ignore[arg-type]
        rows=window.height, prediction=prediction, strategy=traded.strategy, composite=traded.composite,
        drift=feature_drift(train, everything.filter(pl.col(PART) != "train").tail(drift_days),
                            model.features))
