"""Prediction metrics and walk-forward cross-validation: refit on an expanding window, score the next block."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import polars as pl
from scipy.stats import rankdata

from models.base import LABEL, ModelParams
from models.pooled import CrossSection, PooledForecaster
from models.registry import model_class
from tasks.data.split import walk_forward_folds

__all__ = [
    "EARLY_STOPPING_FRACTION",
    "CVSummary",
    "PredictionMetrics",
    "pooled_walk_forward_metrics",
    "prediction_metrics",
    "summarize",
    "walk_forward_metrics",
]

EARLY_STOPPING_FRACTION = 0.2
"""the last fifth of each fit window is the early-stopping set."""


@dataclass(frozen=True)
class PredictionMetrics:
    """How close predicted forward returns are to the actual ones, on one set of rows."""

    rmse: float
    mae: float
    r2: float
    """1 - SSE / SST, SST around the mean of the actual values (negative when worse than that mean)."""
    directional_accuracy: float
    """share of rows where sign(predicted) == sign(actual); 0 is its own sign, so a zero prediction
    counts as right only where the actual return is exactly 0."""
    ic: float
    """Pearson correlation of predicted and actual; 0.0 when either side is constant."""
    rank_ic: float
    """Spearman correlation (Pearson of average ranks); 0.0 when either side is constant."""


@dataclass(frozen=True)
class CVSummary:
    """Walk-forward fold metrics and their spread."""

    folds: int
    mean: PredictionMetrics
    """each metric averaged over the folds."""
    std: PredictionMetrics
    """each metric's standard deviation over the folds (ddof=0, numpy's default: 0.0 for one fold)."""
    per_fold: tuple[PredictionMetrics, ...]
    """fold metrics, oldest scored block first."""


def _constant(values: np.ndarray) -> bool:
    # Compared exactly: x - mean(x) of equal values can leave rounding noise that a variance test would trust.
    return bool(values.min() == values.max())


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (it carries no ordering information)."""
    if _constant(x) or _constant(y):
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    return float(dx @ dy) / math.sqrt(float(dx @ dx) * float(dy @ dy))


def prediction_metrics(predicted: np.ndarray, actual: np.ndarray) -> PredictionMetrics:
    """RMSE, MAE, R², directional accuracy, IC and rank IC of `predicted` against `actual`.

    When `actual` is constant, SST is 0 and R² is 1.0 for an exact fit, else 0.0 (scikit-learn's choice).
    """
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    if p.shape != a.shape:
        raise ValueError(f"{p.shape[0]} predictions for {a.shape[0]} actual values")
    if not p.size:
        raise ValueError("no rows to score")
    if not (np.isfinite(p).all() and np.isfinite(a).all()):
        raise ValueError("predicted and actual values must be finite")
    error = p - a
    sse = float(error @ error)
    if _constant(a):
        r2 = 1.0 if sse == 0 else 0.0
    else:
        r2 = 1.0 - sse / float((a - a.mean()) @ (a - a.mean()))
    return PredictionMetrics(
        rmse=math.sqrt(sse / a.size), mae=float(np.abs(error).mean()), r2=r2,
        directional_accuracy=float((np.sign(p) == np.sign(a)).mean()),
        ic=_correlation(p, a), rank_ic=_correlation(rankdata(p), rankdata(a)),
    )


def walk_forward_metrics(model_type: str, params: ModelParams, frame: pl.DataFrame, features: Sequence[str],
                         horizon: int, folds: int, seed: int, threads: int) -> list[PredictionMetrics]:
    """Fit a fresh model per expanding-window fold of `frame` and score the block after it.

    Args:
        frame: labelled rows in date order without gaps (embargo rows stay in: they are history).
        horizon: label horizon; also the embargo between fitted and scored rows, and between the
            fitted rows and the early-stopping rows inside each fit window.
        folds: number of folds (see tasks.data.split.walk_forward_folds).

    Returns:
        One PredictionMetrics per fold, oldest first. The rows before each scored block are its context.
    """
    cls = model_class(model_type)
    out = []
    for fit_rows, score_rows in walk_forward_folds(frame.height, folds, horizon):
        fit = frame.slice(fit_rows.start, len(fit_rows))
        cut = int(fit.height * (1 - EARLY_STOPPING_FRACTION))
        model = cls(features, params, horizon=horizon, seed=seed, threads=threads)
        # `horizon` rows before the early-stopping set are dropped so no fitted label window overlaps it.
        model.fit(fit.head(cut - horizon), fit.slice(cut))
        scored = frame.slice(score_rows.start, len(score_rows))
        predicted = model.predict(scored, context=frame.head(score_rows.start))
        out.append(prediction_metrics(predicted, scored[LABEL].to_numpy()))
    return out


def pooled_walk_forward_metrics(model_type: str, params: ModelParams, frames: Mapping[str, pl.DataFrame],
                                features: Sequence[str], horizon: int, folds: int, seed: int, threads: int,
                                normalisation: str = "symbol") -> dict[str, list[PredictionMetrics]]:
    """`walk_forward_metrics` for a pooled type: fold i fits one model on fold i's fit rows of every symbol
    (each symbol's rows cut into folds on its own), then scores each symbol's block after them.
    `normalisation` "zscore": per-date statistics over the symbols of `frames` (each date's own rows only).

    Returns:
        symbol -> one PredictionMetrics per fold, oldest first.
    """
    cls = model_class(model_type)
    cross_section = CrossSection.of(frames, features) if normalisation == "zscore" else None
    cuts = {s: walk_forward_folds(frame.height, folds, horizon) for s, frame in frames.items()}
    out: dict[str, list[PredictionMetrics]] = {s: [] for s in frames}
    for i in range(folds):
        fit_parts: dict[str, pl.DataFrame] = {}
        stop_parts: dict[str, pl.DataFrame] = {}
        for symbol, frame in frames.items():
            fit_rows = cuts[symbol][i][0]
            fit = frame.slice(fit_rows.start, len(fit_rows))
            cut = int(fit.height * (1 - EARLY_STOPPING_FRACTION))
            fit_parts[symbol], stop_parts[symbol] = fit.head(cut - horizon), fit.slice(cut)
        model = cls(features, params, horizon=horizon, seed=seed, threads=threads)
        if not isinstance(model, PooledForecaster):
            raise ValueError(f"{model_type} is not a pooled model type")
        model.fit_symbols(fit_parts, stop_parts, cross_section)
        for symbol, frame in frames.items():
            score_rows = cuts[symbol][i][1]
            scored = frame.slice(score_rows.start, len(score_rows))
            predicted = model.bind(symbol).predict(scored, context=frame.head(score_rows.start))
            out[symbol].append(prediction_metrics(predicted, scored[LABEL].to_numpy()))
    return out


def summarize(metrics: Sequence[PredictionMetrics]) -> CVSummary:
    """Mean and standard deviation of every metric over the folds."""
    if not metrics:
        raise ValueError("no folds to summarise")
    names = [f.name for f in fields(PredictionMetrics)]
    table = np.array([[getattr(m, name) for name in names] for m in metrics], dtype=np.float64)
    mean, std = table.mean(axis=0), table.std(axis=0)
    return CVSummary(
        folds=len(metrics),
        mean=PredictionMetrics(**{n: float(v) for n, v in zip(names, mean, strict=True)}),
        std=PredictionMetrics(**{n: float(v) for n, v in zip(names, std, strict=True)}),
        per_fold=tuple(metrics),
    )
