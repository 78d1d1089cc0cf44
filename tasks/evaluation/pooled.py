"""Pooled models in evaluation: their walk-forward cross-validation (one run over all their symbols, scored per
symbol) and the per-date statistics a cross-sectional one needs for dates after its training. What the gate reads
of them across their universe is tasks/evaluation/universe.py."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.base import MODEL_FILE
from models.pooled import (
    POOLED_FOLDER,
    CrossSection,
    PooledForecaster,
    is_pooled,
    normalisation_of,
    row_budget_of,
)
from models.registry import model_class
from schemas import FeatureSetRef
from settings import CrossValidationSettings
from stores.features import FeatureStore, read_manifest, read_split
from stores.registry import ModelRegistry
from tasks.evaluation.crossval import CVSummary, pooled_walk_forward_metrics, summarize
from tasks.evaluation.evaluate import READ_MODULES
from tasks.evaluation.histories import shared_histories
from tasks.operations.caching import RegisteredVersionInputs
from tasks.operations.monitor import resource_logged

__all__ = ["cross_section_updates", "newer_cross_section", "pooled_cross_validation"]


@task(name="crossval-pooled", task_run_name="crossval-{model_type}-v{version}",
      cache_policy=RegisteredVersionInputs(folder=POOLED_FOLDER, modules=(
          *READ_MODULES, "tasks.evaluation.pooled", "tasks.evaluation.crossval", "tasks.data.calendar")))
@resource_logged
def pooled_cross_validation(model_type: str, version: int, refs: dict[str, FeatureSetRef],
                            cross_validation: CrossValidationSettings, threads: int,
                            registry: ModelRegistry, scored: list[str] | None = None) -> dict[str, CVSummary]:
    """Refit pooled `model_type` (v`version`'s params, features, normalisation and rows per pass) per walk-forward
    fold on the history of every symbol of `refs` at once; the summary of each symbol of `scored` (default: all)
    over its own scored blocks. Only the symbols evaluated need scoring: the fits read every symbol."""
    entry = registry.get(model_type, POOLED_FOLDER, version)
    params = model_class(model_type).params_type(**entry.metadata.params)
    description = json.loads((entry.path / MODEL_FILE).read_text(encoding="utf-8"))
    features = entry.metadata.features  # the other columns are not read: a universe's rows take memory
    with shared_histories(refs, features) as frames:  # one copy for the universe's pooled types side by side
        scores = pooled_walk_forward_metrics(model_type, params, frames, features, entry.metadata.horizon,
                                             cross_validation.pooled_folds, entry.metadata.seed, threads,
                                             normalisation_of(description), row_budget=row_budget_of(description),
                                             scored=scored, fit_seconds=entry.metadata.duration_seconds)
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
