"""engineer: the Alpha158-style feature set and the forward-return label (pure; see docs/features.md)."""

from __future__ import annotations

import polars as pl
from prefect import task

from settings import FeatureSettings, SplitSettings
from tasks.data.clean import Cleaned
from tasks.data.features import compute_features
from tasks.data.split import check_history
from tasks.operations.caching import ContentInputs, ModuleSources
from tasks.operations.monitor import resource_logged

__all__ = ["engineer"]


@task(
    name="engineer",
    task_run_name="engineer-{symbol}",
    cache_policy=ContentInputs() + ModuleSources(modules=("tasks.data.engineer", "tasks.data.features")),
)
@resource_logged
def engineer(cleaned: Cleaned, symbol: str, features: FeatureSettings, split: SplitSettings) -> pl.DataFrame:
    """Every feature and the label for one symbol; fails early, naming the rows needed, on short history."""
    check_history(cleaned.frame.height, symbol, features, split)
    return compute_features(cleaned.frame, features)
