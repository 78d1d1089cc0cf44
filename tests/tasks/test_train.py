"""train and tune on small feature sets written straight into a real feature store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import polars as pl
import pytest

from schemas import FeatureSetRef
from settings import ModelsSettings, OptimizationSettings
from stores.features import FeatureStore
from stores.registry import LocalModelRegistry
from tasks.train import TrainJob, skip_reason, train
from tasks.tune import TuneResult, study_name, tune
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


def test_train_registers_then_skips_until_forced(tmp_path: Path) -> None:
    refs = {"VHM": write_feature_set(tmp_path / "features", "VHM")}
    cfg = models_cfg(tmp_path)
    tuned = tune.fn("catboost", refs, OptimizationSettings(), cfg, 1, False)
    assert tuned.source == "config" and tuned.params["iterations"] == 60

    first = train.fn(TrainJob("VHM", "catboost"), refs, tuned, cfg)
    assert first.status == "trained" and first.version == 1
    assert first.val_rmse < 0.85 * first.val_naive_rmse  # learns the AR(1) signal
    entry = LocalModelRegistry(cfg.registry_path).get("catboost", "VHM")
    assert entry.metadata.data_hash == refs["VHM"].content_hash
    assert entry.metadata.metrics["val_rmse"] == pytest.approx(first.val_rmse)

    again = train.fn(TrainJob("VHM", "catboost"), refs, tuned, cfg)
    assert again.status == "skipped" and "min_hours_between" in again.reason
    forced = train.fn(TrainJob("VHM", "catboost"), refs, tuned, cfg, retrain_all=True)
    assert forced.status == "trained" and forced.version == 2


def test_tuning_runs_trials_and_resumes_an_interrupted_study(tmp_path: Path) -> None:
    refs = {s: write_feature_set(tmp_path / "features", s, seed=i) for i, s in enumerate(("VCB", "VHM"))}
    cfg = models_cfg(tmp_path)
    opt = OptimizationSettings(n_trials=2, folds=2, storage_path=tmp_path / "optuna.db")
    first = tune.fn("arima", refs, opt, cfg, 1, True)
    assert first.source == "optuna" and first.trials == 2 and first.best_value is not None
    assert first.study == study_name("arima", refs)

    # Interrupted after 2 of 3 trials: asking for 3 runs exactly one more in the same study.
    resumed = tune.fn("arima", refs, opt.model_copy(update={"n_trials": 3}), cfg, 1, True)
    assert resumed.trials == 3
    study = optuna.load_study(study_name=first.study, storage=first.storage)
    assert len(study.trials) == 3
    assert resumed.best_value == pytest.approx(min(t.value for t in study.trials if t.value is not None))
    assert isinstance(resumed, TuneResult) and set(resumed.params) >= {"p", "d", "q"}


def test_invalid_configured_params_name_the_key(tmp_path: Path) -> None:
    refs = {"VHM": write_feature_set(tmp_path / "features", "VHM")}
    cfg = ModelsSettings(registry_path=tmp_path / "r", params={"catboost": {"depth": "deep"}})  # type: ignore[dict-item]
    with pytest.raises(Exception, match=r"models\.params\.catboost"):
        tune.fn("catboost", refs, OptimizationSettings(), cfg, 1, False)
