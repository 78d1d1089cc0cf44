"""plan and train on small feature sets written straight into a real feature store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from schemas import FeatureSetRef
from settings import ModelsSettings, OptimizationSettings
from stores.features import FeatureStore
from stores.registry import LocalModelRegistry
from tasks.train import TrainingPlan, TrainJob, plan_training, skip_reason, train
from tasks.tune import tune
from tests.models.test_contract import FEATURES, ar1_frame

FAST = {"arima": {}, "catboost": {"iterations": 60}}


def write_feature_set(root: Path, symbol: str, seed: int = 3, rows: int = 500) -> FeatureSetRef:
    """An AR(1) feature set with train/val/test parts, one-row embargoes and the `all` part."""
    frame = ar1_frame(rows=rows, seed=seed)
    n_train, n_val = int(rows * 0.6), int(rows * 0.2)
    part = (["train"] * n_train + ["embargo"] + ["val"] * n_val + ["embargo"]
            + ["test"] * (rows - n_train - n_val - 3) + ["latest"])
    tagged = frame.with_columns(pl.Series("part", part))
    parts = {name: tagged.filter(pl.col("part") == name).drop("part") for name in ("train", "val", "test", "latest")}
    return FeatureStore(root).write(symbol, {**parts, "all": tagged}, FEATURES, "label", {"horizon": 1})


def models_cfg(tmp_path: Path, **overrides: object) -> ModelsSettings:
    return ModelsSettings(registry_path=tmp_path / "registry", params=FAST, **overrides)  # type: ignore[arg-type]


def test_skip_reason() -> None:
    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert skip_reason(None, now, 24, False) is None
    assert skip_reason(now - timedelta(hours=30), now, 24, False) is None
    assert skip_reason(now - timedelta(hours=3), now, 24, False) == "trained 3.0 h ago (< min_hours_between 24 h)"
    assert skip_reason(now - timedelta(hours=3), now, 24, True) is None


def test_train_registers_and_the_plan_skips_recent_models_until_forced(tmp_path: Path) -> None:
    refs = {"VHM": write_feature_set(tmp_path / "features", "VHM")}
    cfg = models_cfg(tmp_path)
    tuned = tune.fn("catboost", refs, OptimizationSettings(), cfg, 1, False)
    assert tuned.source == "config" and tuned.params["iterations"] == 60
    jobs = [TrainJob("VHM", "catboost"), TrainJob("VHM", "arima")]
    assert plan_training.fn(jobs, cfg, False) == TrainingPlan(jobs, [])

    first = train.fn(TrainJob("VHM", "catboost"), refs, tuned, cfg)
    assert first.status == "trained" and first.version == 1
    assert first.val_rmse < 0.85 * first.val_naive_rmse  # learns the AR(1) signal
    entry = LocalModelRegistry(cfg.registry_path).get("catboost", "VHM")
    assert entry.metadata.data_hash == refs["VHM"].content_hash
    assert entry.metadata.metrics["val_rmse"] == pytest.approx(first.val_rmse)

    plan = plan_training.fn(jobs, cfg, False)
    assert plan.to_train == [TrainJob("VHM", "arima")] and plan.symbols("catboost") == []
    assert [(r.symbol, r.model_type, r.status) for r in plan.skipped] == [("VHM", "catboost", "skipped")]
    assert "min_hours_between" in plan.skipped[0].reason
    assert plan_training.fn(jobs, cfg, True).to_train == jobs
    assert plan_training.fn(jobs, models_cfg(tmp_path, retraining={"min_hours_between": 0}), False).to_train == jobs
    forced = train.fn(TrainJob("VHM", "catboost"), refs, tuned, cfg)
    assert forced.status == "trained" and forced.version == 2
