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
from settings import FeatureSettings, SelectionSettings
from stores.base import PRICE_COLUMNS
from tasks.data.calendar import InsufficientHistoryError, RunCalendar, assign_parts
from tasks.data.features import LABEL, feature_names
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

__all__ = ["MAX_NULL_FRACTION", "Selected", "fit_rows", "select", "select_features"]

MAX_NULL_FRACTION = 0.05


@dataclass(frozen=True)
class Selected:
    """Warm-up-free rows with every engineered feature (nulls filled causally) and the selection report (the
    features this symbol keeps for its own models)."""

    frame: pl.DataFrame
    report: SelectionReport
    engineered: int
    """how many features were engineered before selection."""


def select_features(train: pl.DataFrame, names: list[str], cfg: SelectionSettings) -> SelectionReport:
    """Fit the selection on `train` rows only and report what was kept and why the rest was dropped.

    Candidates are ranked by |Spearman IC| with the label (ties: the earlier name first), after those of
    `always_keep` (in its order); each is kept unless its |Pearson corr| with an already kept one exceeds
    `max_correlation` (named as its twin), or `max_features` are already kept. NaN correlations count as 0.
    """
    if not names:
        return SelectionReport(kept=(), dropped={})
    unique = list(dict.fromkeys(names))
    # One polars pass per statistic over all columns, with the kernels a per-column loop would call.
    nulls = dict(zip(unique, train.select(pl.col(unique).null_count()).row(0), strict=True))
    stds = dict(zip(unique, train.select(pl.col(unique).drop_nulls().std()).row(0), strict=True))
    dropped: dict[str, str] = {}
    candidates: list[str] = []
    for name in names:
        if nulls[name] > MAX_NULL_FRACTION * max(train.height, 1):
            dropped[name] = f"null in {nulls[name]}/{train.height} train rows"
        elif float(stds[name] or 0.0) <= cfg.min_std:
            dropped[name] = "constant on train"
        else:
            candidates.append(name)
    if not candidates:
        return SelectionReport(kept=(), dropped=dropped)

    filled = train.select(pl.col(candidates).fill_null(strategy="forward").fill_null(0.0))
    values = filled.to_numpy().astype(np.float64)                     # (rows, candidates)
    ranks = filled.select(pl.all().rank()).to_numpy().astype(np.float64, copy=False)
    label_rank = train[LABEL].rank().to_numpy().astype(np.float64, copy=False)  # (rows,)
    with np.errstate(divide="ignore", invalid="ignore"):              # 0/0 -> NaN -> 0 below
        ic = np.nan_to_num(_rank_ic(ranks, label_rank))               # (candidates,)
        corr = np.nan_to_num(np.corrcoef(values, rowvar=False))       # (candidates, candidates)
    twins = np.abs(corr) > cfg.max_correlation                        # (candidates, candidates)

    abs_ic = np.abs(ic).tolist()
    first = {name: i for i, name in enumerate(cfg.always_keep)}
    order = sorted(range(len(candidates)), key=lambda j: (first.get(candidates[j], len(first)), -abs_ic[j], j))
    kept: list[int] = []
    for j in order:
        hits = twins[j, kept] if kept else None                       # in kept order
        if hits is not None and hits.any():
            twin = kept[int(hits.argmax())]
            dropped[candidates[j]] = f"|corr| {abs(corr[j, twin]):.3f} with {candidates[twin]}"
        elif len(kept) >= cfg.max_features:
            dropped[candidates[j]] = f"beyond max_features={cfg.max_features} (|IC| {abs_ic[j]:.4f})"
        else:
            kept.append(j)
    return SelectionReport(kept=tuple(candidates[j] for j in kept), dropped=dropped)


def _rank_ic(ranks: np.ndarray, label_rank: np.ndarray) -> np.ndarray:
    """Pearson corr of every rank column with the label's ranks: `np.corrcoef(ranks[:, j], label_rank)[0, 1]`.

    The same operations np.corrcoef does per pair, for all columns at once. Average ranks are half-integers,
    so the means, centred ranks and their products and sums (below 2**51 for fewer than ~300k rows) are
    exact in float64 whatever the summation order: the result matches the per-pair call bit for bit.
    """
    rows = ranks.shape[0]
    scale = np.true_divide(1, rows - 1 if rows > 1 else 0.0)          # np.cov's 1 / (rows - ddof)
    centred = ranks - ranks.mean(axis=0)                              # (rows, candidates)
    label = label_rank - label_rank.mean()                            # (rows,)
    cov = (label @ centred) * scale
    var = np.einsum("ij,ij->j", centred, centred) * scale
    var_label = (label @ label) * scale
    return np.clip(cov / np.sqrt(var) / np.sqrt(var_label), -1, 1)


def fit_rows(engineered: pl.DataFrame, features: FeatureSettings,
             calendar: RunCalendar) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The warm-up-free rows, and of those the train rows of the run's calendar that the selection is fitted on."""
    frame = engineered.slice(features.warmup)
    parts = assign_parts(frame.select("date", LABEL), calendar, features.horizon, label=LABEL)["part"]
    return frame, frame.filter(parts == "train")


@task(
    name="select",
    task_run_name="select-{symbol}",
    cache_policy=ContentInputs() + ModuleSources(modules=("tasks.data.select",)),
)
@resource_logged
def select(engineered: pl.DataFrame, symbol: str, features: FeatureSettings, calendar: RunCalendar,
           cfg: SelectionSettings) -> Selected:
    """Drop the warm-up rows, fit the selection on the train part, keep every feature (nulls filled causally).

    The report's `kept` are this symbol's own choice, what its per-symbol models read; the other features stay
    in the frame for models fitted across a universe, which select their own (tasks/data/select_universe.py).
    """
    names = feature_names(features)
    unknown = [name for name in cfg.always_keep if name not in names]
    if unknown:
        raise ValueError(f"selection.always_keep names feature(s) that are not engineered: {', '.join(unknown)}")
    frame, train = fit_rows(engineered, features, calendar)
    if not train.height:
        raise InsufficientHistoryError(f"{symbol} has no train rows on the run's calendar ({calendar.describe()})")
    report = select_features(train, names, cfg)
    # Forward fill is causal, so a filled value at day t still uses only data <= t.
    out = frame.select(*PRICE_COLUMNS, pl.col(names).fill_null(strategy="forward").fill_null(0.0), LABEL)
    return Selected(frame=out, report=report, engineered=len(names))
