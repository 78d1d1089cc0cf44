"""select-universe: the features of models fitted across a universe, chosen on the universe's train dates.

A feature's evidence is its mean daily cross-sectional rank IC: per train date, the Spearman correlation across
the universe's symbols of the feature with the label, averaged over dates, with a Newey-West t. Candidates are
ranked by |mean IC| after `selection.always_keep`; a candidate nearly a copy of one already kept (|Pearson corr|
of the two features' daily cross-sectional ranks above `max_correlation`) is dropped; at most `max_features` are
kept. One symbol's ranking of a weak feature is noise; across many symbols a weak shared effect shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

import numpy as np
import polars as pl
from prefect import task

from models.pooled import MIN_SYMBOLS
from schemas import FeatureSetRef
from settings import FeatureSettings, SelectionSettings
from stores.features import read_split, stored_features
from tasks.data.features import LABEL, feature_names
from tasks.evaluation.significance import newey_west_lags, newey_west_mean
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

__all__ = ["CORRELATION_ROWS", "FeatureEvidence", "UniverseSelection", "select_universe", "universe_selection"]

CORRELATION_ROWS = 200_000
"""rows (every k-th, in a fixed order) the near-duplicate correlations are measured on: enough for a stable
correlation, bounded for a market of hundreds of symbols."""
_SYMBOL = "__symbol"


@dataclass(frozen=True)
class FeatureEvidence:
    """How one feature ranks the universe's symbols against their labels on train dates."""

    name: str
    mean_ic: float
    """mean over dates of the cross-sectional Spearman correlation with the label."""
    t: float
    """mean_ic over its Newey-West standard error."""
    dates: int


@dataclass(frozen=True)
class UniverseSelection:
    """The features a universe model reads, with the evidence they were chosen on."""

    symbols: tuple[str, ...]
    kept: tuple[str, ...]
    evidence: tuple[FeatureEvidence, ...]
    """of the kept features, in their order."""
    dropped: dict[str, str] = field(default_factory=dict)
    """feature -> why it was left out."""
    train_dates: tuple[date, date] | None = None
    """the first and last train date the evidence was measured on."""

    def to_json(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "kept": list(self.kept),
                "evidence": [{"feature": e.name, "mean_ic": e.mean_ic, "t": e.t, "dates": e.dates}
                             for e in self.evidence],
                "dropped": self.dropped,
                "train_dates": [str(d) for d in self.train_dates] if self.train_dates else None}

    def line(self) -> str:
        top = ", ".join(f"{e.name} {e.mean_ic:+.4f} (t {e.t:+.1f})" for e in self.evidence[:5])
        return (f"universe selection over {len(self.symbols)} symbols: {len(self.kept)} features kept by mean daily "
                f"rank IC on train dates; first {top}")


def select_universe(frames: Mapping[str, pl.DataFrame], names: Sequence[str], cfg: SelectionSettings,
                    max_features: int, horizon: int = 1) -> UniverseSelection:
    """Choose up to `max_features` of `names` from the train rows of every symbol of a universe (`frames`: symbol ->
    rows with `date`, the features and the label).

    Raises:
        ValueError: fewer than MIN_SYMBOLS symbols, or no date that MIN_SYMBOLS of them share.
    """
    if len(frames) < MIN_SYMBOLS:
        raise ValueError(f"a universe selection needs {MIN_SYMBOLS} symbols or more, got {len(frames)}")
    dropped: dict[str, str] = {}
    candidates = []
    for name in dict.fromkeys(names):
        missing = [s for s, frame in frames.items() if name not in frame.columns]
        if missing:
            dropped[name] = f"missing from {len(missing)} symbol(s)' feature sets, e.g. {missing[0]}"
        else:
            candidates.append(name)
    if not candidates:
        raise ValueError("none of the features is in every symbol's feature set")
    long = pl.concat([frame.select("date", *candidates, LABEL).with_columns(pl.lit(s).alias(_SYMBOL))
                      for s, frame in sorted(frames.items())], how="vertical_relaxed")
    shared = long.group_by("date").len().filter(pl.col("len") >= MIN_SYMBOLS).select("date")
    long = long.join(shared, on="date", how="semi").sort("date", _SYMBOL)
    if not long.height:
        raise ValueError(f"no train date is shared by {MIN_SYMBOLS} of the universe's {len(frames)} symbols")
    stds = long.select(pl.col(candidates).std()).row(0)
    for name, std in zip(list(candidates), stds, strict=True):
        if not (std or 0.0) > cfg.min_std:
            dropped[name] = "constant on the universe's train rows"
            candidates.remove(name)
    if not candidates:
        raise ValueError("every feature is constant on the universe's train rows")

    ranked = long.select("date", *(pl.col(c).rank().over("date").alias(c) for c in [*candidates, LABEL]))
    daily = ranked.group_by("date").agg(*(pl.corr(c, LABEL).alias(c) for c in candidates)).sort("date")
    evidence = {}
    for name in candidates:
        ics = daily[name].fill_nan(None).drop_nulls().to_numpy()
        if ics.size < 3:
            evidence[name] = FeatureEvidence(name, 0.0, 0.0, int(ics.size))
            continue
        test = newey_west_mean(ics, newey_west_lags(ics.size, horizon))
        evidence[name] = FeatureEvidence(name, test.mean, test.statistic, test.n)

    first = {name: i for i, name in enumerate(cfg.always_keep)}
    order = sorted(range(len(candidates)), key=lambda j: (first.get(candidates[j], len(first)),
                                                          -abs(evidence[candidates[j]].mean_ic), j))
    step = max(1, math.ceil(ranked.height / CORRELATION_ROWS))
    values = ranked.select(candidates).gather_every(step).to_numpy().astype(np.float64)  # (rows, candidates)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.nan_to_num(np.corrcoef(values, rowvar=False)).reshape(len(candidates), len(candidates))
    kept: list[int] = []
    for j in order:
        twins = [k for k in kept if abs(corr[j, k]) > cfg.max_correlation]
        name = candidates[j]
        if twins:
            dropped[name] = f"|corr| {abs(corr[j, twins[0]]):.3f} with {candidates[twins[0]]} across the universe"
        elif len(kept) >= max_features:
            dropped[name] = f"beyond models.pooled_max_features={max_features} (|IC| {abs(evidence[name].mean_ic):.4f})"
        else:
            kept.append(j)
    span = cast(date, long["date"].min()), cast(date, long["date"].max())
    return UniverseSelection(tuple(sorted(frames)), tuple(candidates[j] for j in kept),
                             tuple(evidence[candidates[j]] for j in kept), dropped, span)


@task(name="select-universe", task_run_name="select-universe",
      cache_policy=ContentInputs() + ModuleSources(modules=("tasks.data.select_universe", "stores.features")))
@resource_logged
def universe_selection(refs: dict[str, FeatureSetRef], features: FeatureSettings, cfg: SelectionSettings,
                       max_features: int) -> UniverseSelection:
    """`select_universe` over the train rows of every feature set of `refs` (a universe), read from the store; the
    candidates are the features the sets hold (every engineered one, in the engineered order)."""
    engineered = feature_names(features)
    stored = list(dict.fromkeys(f for ref in refs.values() for f in stored_features(ref)))
    names = [f for f in engineered if f in stored] + [f for f in stored if f not in engineered]
    frames = {s: read_split(ref, "train") for s, ref in refs.items()}
    selection = select_universe(frames, names, cfg, max_features, features.horizon)
    print(selection.line())
    return selection
