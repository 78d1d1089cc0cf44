"""Prediction metrics and walk-forward cross-validation: refit on an expanding window, score the next block.

Folds are cut by date (tasks/data/calendar.py): a pooled model's folds share their dates across its symbols, so no
fold fits one symbol on dates another symbol is scored on. A pooled fold with fewer symbols than a pooled model
needs is skipped and said; a symbol without rows in a fold's scored block has no score for that fold.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date
from typing import TypeVar

import numpy as np
import polars as pl
from scipy.stats import rankdata

from models.base import LABEL, ModelParams
from models.pooled import MIN_SYMBOLS, CrossSection, PooledForecaster
from models.registry import model_class
from tasks.data.calendar import DateFold, date_folds
from tasks.operations.slots import LongestFirst

__all__ = [
    "EARLY_STOPPING_FRACTION",
    "CVSummary",
    "PredictionMetrics",
    "pooled_walk_forward_metrics",
    "prediction_metrics",
    "summarize",
    "walk_forward_metrics",
]

T = TypeVar("T")
R = TypeVar("R")

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


def _fold_parts(frame: pl.DataFrame, fold: DateFold, horizon: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One symbol's fitted, early-stopping and scored rows of `fold`: slices of `frame` (rows in date order, one per
    date), no copies (a universe's folds are gigabytes when copied).

    A row is fitted when its label window (to the date `horizon` rows later) ends before `stop_start`; stops early
    when it is dated from `stop_start` to before `fit_end` and its label window ends before `score_start`; is scored
    when it is dated from `score_start` to before `score_end`. In date order each set is one run of rows, found by
    binary search: rows before the i-th date boundary number `before(boundary)`, and a label window ends before it
    for the rows up to `horizon` fewer.
    """
    dates = frame["date"]

    def before(day: date) -> int:
        return int(dates.search_sorted(day, side="left"))

    stop_start, fit_end, score_start = before(fold.stop_start), before(fold.fit_end), before(fold.score_start)
    score_end = before(fold.score_end) if fold.score_end is not None else frame.height
    stop_end = min(fit_end, score_start - horizon)
    return (frame.slice(0, max(stop_start - horizon, 0)), frame.slice(stop_start, max(stop_end - stop_start, 0)),
            frame.slice(score_start, max(score_end - score_start, 0)))


def walk_forward_metrics(model_type: str, params: ModelParams, frame: pl.DataFrame, features: Sequence[str],
                         horizon: int, folds: int, seed: int, threads: int) -> list[PredictionMetrics]:
    """Fit a fresh model per expanding-window fold of `frame` and score the block after it.

    Args:
        frame: labelled rows in date order (embargo rows stay in: they are history).
        horizon: label horizon; also the embargo between fitted and scored rows, and between the
            fitted rows and the early-stopping rows inside each fit window.
        folds: number of folds (see tasks.data.calendar.date_folds, over the frame's dates).

    Returns:
        One PredictionMetrics per fold, oldest first. The rows before each scored block are its context.
    """
    cls = model_class(model_type)
    out = []
    for fold in date_folds(frame["date"], folds, horizon, EARLY_STOPPING_FRACTION):
        fitted, stop, scored = _fold_parts(frame, fold, horizon)
        model = cls(features, params, horizon=horizon, seed=seed, threads=threads).fit(fitted, stop)
        predicted = model.predict(scored, context=frame.filter(pl.col("date") < fold.score_start))
        out.append(prediction_metrics(predicted, scored[LABEL].to_numpy()))
    return out


def pooled_walk_forward_metrics(model_type: str, params: ModelParams, frames: Mapping[str, pl.DataFrame],
                                features: Sequence[str], horizon: int, folds: int, seed: int, threads: int,
                                normalisation: str = "symbol", log: Callable[[str], None] = print,
                                row_budget: int | None = None, scored: Collection[str] | None = None,
                                fit_seconds: float = 0.0) -> dict[str, list[PredictionMetrics]]:
    """`walk_forward_metrics` for a pooled type: fold i fits one model on fold i's fit rows of every symbol, then
    scores each symbol's block after them. The folds are cut on the union of the symbols' dates, so every symbol
    shares them, and fit side by side (a pooled fit is long). A fold where fewer than MIN_SYMBOLS symbols have fit,
    early-stopping and scored rows is skipped (`log` says so); a symbol lacking rows in a fold sits that fold out.
    `normalisation` "zscore": per-date statistics over the symbols of `frames` (each date's own rows only).
    `row_budget`: each fold's fit reads at most this many rows per pass (PooledForecaster.fit_symbols).
    `scored`: the symbols whose blocks are predicted and scored (default: all); every symbol is fitted on.
    `fit_seconds`: how long one fit is expected to take (the version's own): the longest wait least for a slot
    (`pooled_fit_slot`).

    Returns:
        symbol -> one PredictionMetrics per fold it was scored in, oldest first (empty when none), for the
        symbols of `scored`.
    """
    cls = model_class(model_type)
    wanted = set(frames if scored is None else scored)
    cross_section = CrossSection.of(frames, features) if normalisation == "zscore" else None
    cuts = date_folds(pl.concat([frame.select("date") for frame in frames.values()])["date"], folds, horizon,
                      EARLY_STOPPING_FRACTION)
    runnable = []
    for i, fold in enumerate(cuts, start=1):
        parts = {s: _fold_parts(frame, fold, horizon) for s, frame in frames.items()}
        usable = {s: p for s, p in parts.items() if all(part.height for part in p)}
        if len(usable) < MIN_SYMBOLS:
            log(f"{model_type} walk-forward fold {i} of {len(cuts)} (scoring from {fold.score_start}) skipped: "
                f"{len(usable)} symbol(s) have fit, early-stopping and scored rows, a pooled model needs "
                f"{MIN_SYMBOLS}")
        else:
            runnable.append((fold, usable))

    def one(job: tuple[DateFold, dict[str, tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]]]
            ) -> dict[str, PredictionMetrics]:
        fold, usable = job
        model = cls(features, params, horizon=horizon, seed=seed, threads=threads)
        if not isinstance(model, PooledForecaster):
            raise ValueError(f"{model_type} is not a pooled model type")
        with pooled_fit_slot(fit_seconds):
            model.fit_symbols({s: p[0] for s, p in usable.items()}, {s: p[1] for s, p in usable.items()},
                              cross_section, row_budget)
        scores = {}
        for symbol, (_, _, block) in ((s, p) for s, p in usable.items() if s in wanted):
            history = frames[symbol]
            context = history.slice(0, int(history["date"].search_sorted(fold.score_start, side="left")))
            predicted = model.bind(symbol).predict(block, context=context)
            scores[symbol] = prediction_metrics(predicted, block[LABEL].to_numpy())
        return scores

    out: dict[str, list[PredictionMetrics]] = {s: [] for s in frames if s in wanted}
    for scores in _side_by_side(one, runnable):
        for symbol, metrics in scores.items():
            out[symbol].append(metrics)
    return out


_POOLED_FITS = LongestFirst(max(2, os.cpu_count() or 1))


@contextmanager
def pooled_fit_slot(expected_seconds: float = 0.0) -> Iterator[None]:
    """One of the pooled walk-forward fits this process prepares and runs at once: as many as it has cores (at
    least 2), the longest expected of those waiting first (`expected_seconds`: the version's own fit), so that the
    longest model's folds do not end the evaluation alone on one core. A fold's fit holds normalised copies of its
    rows over the universe (gigabytes at market scale); a fold waiting for a slot holds only views of the history.
    (Tasks name this function, not the slots: Dask pickles what a task's code names, and a lock cannot be
    pickled.)"""
    with _POOLED_FITS.slot(expected_seconds):
        yield


def _side_by_side(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`work` on every item in threads, results in the items' order. The folds' fits are independent and seeded;
    networks train in worker processes (models/sequence.py), other models release the GIL while they fit."""
    if len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="fold") as pool:
        return list(pool.map(work, items))


def summarize(metrics: Sequence[PredictionMetrics]) -> CVSummary:
    """Mean and standard deviation of every metric over the folds; NaN (null in reports) without any fold."""
    names = [f.name for f in fields(PredictionMetrics)]
    if not metrics:
        missing = PredictionMetrics(**dict.fromkeys(names, math.nan))
        return CVSummary(folds=0, mean=missing, std=missing, per_fold=())
    table = np.array([[getattr(m, name) for name in names] for m in metrics], dtype=np.float64)
    mean, std = table.mean(axis=0), table.std(axis=0)
    return CVSummary(
        folds=len(metrics),
        mean=PredictionMetrics(**{n: float(v) for n, v in zip(names, mean, strict=True)}),
        std=PredictionMetrics(**{n: float(v) for n, v in zip(names, std, strict=True)}),
        per_fold=tuple(metrics),
    )
