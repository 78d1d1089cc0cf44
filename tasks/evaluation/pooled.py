"""Pooled models in evaluation: their walk-forward cross-validation (one run over all their symbols, scored per
symbol), the per-date statistics a cross-sectional one needs for dates after its training, and a summary of each
version over all the symbols it was evaluated for."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.base import MODEL_FILE
from models.pooled import POOLED_FOLDER, CrossSection, PooledForecaster, is_pooled, normalisation_of
from models.registry import MODEL_MODULES, model_class
from schemas import FeatureSetRef
from settings import CrossValidationSettings, ModelsSettings
from stores.features import FeatureStore, read_manifest, read_split
from stores.registry import ModelRegistry
from tasks.evaluation.crossval import CVSummary, pooled_walk_forward_metrics, summarize
from tasks.evaluation.evaluate import EvaluationResult, cv_history
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

__all__ = ["MIN_CROSS_SECTION", "PooledScore", "cross_section_updates", "newer_cross_section",
           "pooled_cross_validation", "pooled_scores"]


@task(name="crossval-pooled", task_run_name="crossval-{model_type}-v{version}",
      cache_policy=ContentInputs() + ModuleSources(modules=(
          "tasks.evaluation.pooled", "tasks.evaluation.crossval", "tasks.evaluation.evaluate", "tasks.data.split",
          *MODEL_MODULES)))
@resource_logged
def pooled_cross_validation(model_type: str, version: int, refs: dict[str, FeatureSetRef],
                            cross_validation: CrossValidationSettings, models: ModelsSettings,
                            registry: ModelRegistry) -> dict[str, CVSummary]:
    """Refit pooled `model_type` (v`version`'s params, features and normalisation) per walk-forward fold on the
    history of every symbol of `refs` at once; each symbol's summary of its own scored blocks."""
    entry = registry.get(model_type, POOLED_FOLDER, version)
    params = model_class(model_type).params_type(**entry.metadata.params)
    description = json.loads((entry.path / MODEL_FILE).read_text(encoding="utf-8"))
    scores = pooled_walk_forward_metrics(model_type, params, {s: cv_history(ref) for s, ref in refs.items()},
                                         entry.metadata.features, entry.metadata.horizon, cross_validation.cv_folds,
                                         entry.metadata.seed, models.threads, normalisation_of(description))
    return {symbol: summarize(folds) for symbol, folds in scores.items()}


def newer_cross_section(model: PooledForecaster, feature_store: FeatureStore) -> CrossSection | None:
    """The per-date statistics a cross-sectional pooled model lacks to predict the current feature sets: those of
    the dates after its own, over the current feature sets of its symbols. None when it needs none (it is
    normalised per symbol, or no feature set has a later date); a symbol without a feature set is left out."""
    if model.cross_section is None:
        return None
    known = model.cross_section.last_date
    frames = {}
    for symbol in (s for s in model.symbols if feature_store.has(s)):
        ref = feature_store.current(symbol)
        newest = (read_manifest(ref).get("split_dates") or {}).get("all")
        if newest and date.fromisoformat(newest[1]) <= known:  # nothing later: the files need not be read
            continue
        later = read_split(ref, "all").filter(pl.col("date") > known)
        if later.height:
            frames[symbol] = later
    return CrossSection.of(frames, model.pooled) if frames else None


@task(name="cross-sections", cache_policy=NO_CACHE)
@resource_logged
def cross_section_updates(versions: list[tuple[str, int]], registry: ModelRegistry,
                          feature_store: FeatureStore) -> dict[tuple[str, int], CrossSection]:
    """`newer_cross_section` of each cross-sectional pooled version of `versions` ((model type, version) pairs;
    the others are skipped), read once for every symbol that version is evaluated, tested or packaged for."""
    updates = {}
    for model_type, version in dict.fromkeys(versions):
        if not is_pooled(model_type):
            continue
        model, _ = registry.load(model_type, POOLED_FOLDER, version)
        if isinstance(model, PooledForecaster) and (update := newer_cross_section(model, feature_store)):
            updates[(model_type, version)] = update
            print(f"{model_type} v{version}: per-date statistics of {update.stats.height} date(s) after "
                  f"{model.cross_section.last_date if model.cross_section else '-'} added from the current "
                  f"feature sets of its {len(model.symbols)} symbols")
    return updates


MIN_CROSS_SECTION = 5
"""symbols a test date needs to count in a pooled version's daily IC."""


@dataclass(frozen=True)
class PooledScore:
    """One pooled version over every symbol it was evaluated for: what no single symbol's test window can show."""

    model_type: str
    version: int
    symbols: int
    dates: int
    """test dates with predictions for `min_symbols` symbols or more: those the IC is averaged over."""
    mean_ic: float | None
    """mean over those dates of the Spearman rank correlation of predicted and actual returns across symbols."""
    ic_t: float | None
    """mean_ic over its standard error across dates."""
    passing: int
    """symbols on whose own test window it beats the best naive baseline significantly (the gate)."""
    min_symbols: int = MIN_CROSS_SECTION
    """symbols a date needs to count in the IC."""

    def line(self) -> str:
        if self.mean_ic is None:
            ic = f"mean daily IC n/a (no test date with {self.min_symbols} symbols or more)"
        else:
            t = "" if self.ic_t is None else f" (t {self.ic_t:+.1f})"
            ic = f"mean daily IC {self.mean_ic:+.4f}{t} on {self.dates} test dates"
        symbols = f"{self.symbols} symbol{'' if self.symbols == 1 else 's'}"
        gate = f"passes the gate on {self.passing} of {symbols}"
        return f"{self.model_type} v{self.version}: over {symbols}, {ic}; {gate}"


def pooled_scores(results: Sequence[EvaluationResult], level: float,
                  min_symbols: int = MIN_CROSS_SECTION) -> list[PooledScore]:
    """Per pooled version evaluated: its daily cross-sectional IC over its symbols' test windows (dates with
    `min_symbols` or more), and on how many symbols it passes the gate (DM p < `level`)."""
    groups: dict[tuple[str, int], list[EvaluationResult]] = {}
    for r in results:
        if is_pooled(r.model_type):
            groups.setdefault((r.model_type, r.version), []).append(r)
    scores = []
    for (model_type, version), group in sorted(groups.items()):
        rows = pl.concat([pl.DataFrame({"date": list(r.curves.dates), "predicted": list(r.curves.predicted),
                                        "actual": list(r.curves.actual)},
                                       schema={"date": pl.Date, "predicted": pl.Float64, "actual": pl.Float64})
                          for r in group])
        daily = rows.group_by("date").agg(pl.len().alias("n"), pl.corr("predicted", "actual", method="spearman")
                                          .alias("ic")).filter((pl.col("n") >= min_symbols)
                                                               & pl.col("ic").is_not_nan() & pl.col("ic").is_not_null())
        ics = daily["ic"].to_numpy()
        mean = float(ics.mean()) if ics.size else None
        t = float(mean / (ics.std(ddof=1) / math.sqrt(ics.size))) if mean is not None and ics.size > 2 and \
            ics.std(ddof=1) > 0 else None
        scores.append(PooledScore(model_type, version, len(group), int(ics.size), mean, t,
                                  sum(r.against_baseline.p_value < level for r in group), min_symbols))
    return scores
