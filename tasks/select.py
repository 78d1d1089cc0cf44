"""select: choose features on the train split only, then apply the choice to every row.

Drops features that are mostly null, constant, or nearly a copy of a stronger one (by |Spearman IC| with
the label on train), and keeps at most `max_features`. Pure: no I/O, inputs untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from prefect import task

from schemas import SelectionReport
from settings import FeatureSettings, SelectionSettings, SplitSettings
from stores.base import PRICE_COLUMNS
from tasks.caching import ContentInputs, ModuleSources
from tasks.features import LABEL, feature_names
from tasks.monitor import resource_logged
from tasks.split import bounds_or_raise

__all__ = ["MAX_NULL_FRACTION", "Selected", "select", "select_features"]

MAX_NULL_FRACTION = 0.05


@dataclass(frozen=True)
class Selected:
    """Warm-up-free rows with the kept features (nulls filled causally) and the selection report."""

    frame: pl.DataFrame
    report: SelectionReport
    engineered: int
    """how many features were engineered before selection."""


def select_features(train: pl.DataFrame, names: list[str], cfg: SelectionSettings) -> SelectionReport:
    """Fit the selection on `train` rows only and report what was kept and why the rest was dropped."""
    dropped: dict[str, str] = {}
    candidates: list[str] = []
    for name in names:
        column = train[name]
        if column.null_count() > MAX_NULL_FRACTION * max(train.height, 1):
            dropped[name] = f"null in {column.null_count()}/{train.height} train rows"
        elif float(column.drop_nulls().std() or 0.0) <= cfg.min_std:  # type: ignore[arg-type]
            dropped[name] = "constant on train"
        else:
            candidates.append(name)
    if not candidates:
        return SelectionReport(kept=(), dropped=dropped)

    filled = train.select(pl.col(candidates).fill_null(strategy="forward").fill_null(0.0))
    values = filled.to_numpy().astype(np.float64)                     # (rows, candidates)
    ranks = filled.select(pl.all().rank()).to_numpy().astype(np.float64)
    label_rank = train[LABEL].rank().to_numpy().astype(np.float64)
    ic = np.nan_to_num(np.array([np.corrcoef(ranks[:, j], label_rank)[0, 1] for j in range(ranks.shape[1])]))
    corr = np.nan_to_num(np.corrcoef(values, rowvar=False))           # (candidates, candidates)

    order = sorted(range(len(candidates)), key=lambda j: (-abs(ic[j]), j))
    kept: list[int] = []
    for j in order:
        twin = next((k for k in kept if abs(corr[j, k]) > cfg.max_correlation), None)
        if twin is not None:
            dropped[candidates[j]] = f"|corr| {abs(corr[j, twin]):.3f} with {candidates[twin]}"
        elif len(kept) >= cfg.max_features:
            dropped[candidates[j]] = f"beyond max_features={cfg.max_features} (|IC| {abs(ic[j]):.4f})"
        else:
            kept.append(j)
    return SelectionReport(kept=tuple(candidates[j] for j in kept), dropped=dropped)


@task(
    name="select",
    task_run_name="select-{symbol}",
    cache_policy=ContentInputs() + ModuleSources(modules=("tasks.select",)),
)
@resource_logged
def select(engineered: pl.DataFrame, symbol: str, features: FeatureSettings, split: SplitSettings,
           cfg: SelectionSettings) -> Selected:
    """Drop the warm-up rows, fit the selection on the train part, keep the chosen features everywhere."""
    names = feature_names(features)
    frame = engineered.slice(features.warmup)
    labelled = frame.filter(pl.col(LABEL).is_not_null())
    bounds = bounds_or_raise(labelled.height, symbol, features, split)
    report = select_features(labelled.slice(0, bounds.train[1]), names, cfg)
    kept = list(report.kept)
    # Forward fill is causal, so a filled value at day t still uses only data <= t.
    out = frame.select(*PRICE_COLUMNS, pl.col(kept).fill_null(strategy="forward").fill_null(0.0), LABEL)
    return Selected(frame=out, report=report, engineered=len(names))
