"""plan and train on small feature sets written straight into a real feature store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from schemas import FeatureSetRef, JobFailure
from settings import ModelsSettings, OptimizationSettings
from stores.features import FeatureStore
from stores.registry import LocalModelRegistry
from tasks.modeling.train import (
    TrainBatch,
    TrainingPlan,
    TrainJob,
    TrainResult,
    plan_training,
    skip_reason,
    train,
    train_batch,
)
from tasks.modeling.tune import tune
from tests.models.test_contract import FEATURES, ar1_frame

FAST = {"arima": {}, "catboost": {"iterations": 60}}


def write_feature_set(root: Path, symbol: str, seed: int = 3, rows: int = 500, phi: float = 0.7) -> FeatureSetRef:
    """An AR(1) feature set with train/val/test parts, one-row embargoes and the `all` part."""
    frame = ar1_frame(rows=rows, phi=phi, seed=seed)
    n_train, n_val = int(rows * 0.6), int(rows * 0.2)
    part = (["train"] * n_train + ["embargo"] + ["val"] * n_val + ["embargo"]
            + ["test"] * (rows - n_train - n_val - 3) + ["latest"])
    tagged = frame.with_columns(pl.Series("part", part))
    return FeatureStore(root).write(symbol, tagged, FEATURES, "label", {"horizon": 1})


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
    assert plan_training.fn(jobs, cfg, False, LocalModelRegistry(cfg.registry_path)) == TrainingPlan(jobs, [])

    first = train.fn(TrainJob("VHM", "catboost"), refs, tuned, cfg, LocalModelRegistry(cfg.registry_path))
    assert first.status == "trained" and first.version == 1
    assert first.val_rmse < 0.85 * first.val_naive_rmse  # learns the AR(1) signal
    entry = LocalModelRegistry(cfg.registry_path).get("catboost", "VHM")
    assert entry.metadata.data_hash == refs["VHM"].content_hash
    assert entry.metadata.metrics["val_rmse"] == pytest.approx(first.val_rmse)

    plan = plan_training.fn(jobs, cfg, False, LocalModelRegistry(cfg.registry_path))
    assert plan.to_train == [TrainJob("VHM", "arima")] and plan.symbols("catboost") == []
    assert [(r.symbol, r.model_type, r.status) for r in plan.skipped] == [("VHM", "catboost", "skipped")]
    assert "min_hours_between" in plan.skipped[0].reason
    assert plan_training.fn(jobs, cfg, True, LocalModelRegistry(cfg.registry_path)).to_train == jobs
    assert plan_training.fn(jobs, models_cfg(tmp_path, retraining={"min_hours_between": 0}), False,
                            LocalModelRegistry(cfg.registry_path)).to_train == jobs
    forced = train.fn(TrainJob("VHM", "catboost"), refs, tuned, cfg, LocalModelRegistry(cfg.registry_path))
    assert forced.status == "trained" and forced.version == 2


def test_a_fit_s_routine_warnings_are_counted_in_the_job_s_record_not_shown(
        tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    # An explosive series: statsmodels' ARIMA start values are non-stationary, so it warns and starts from zeros.
    refs = {"VHM": write_feature_set(tmp_path / "features", "VHM", rows=300, phi=1.02),
            "VCB": write_feature_set(tmp_path / "features", "VCB", rows=300)}
    cfg = models_cfg(tmp_path)
    tuned = tune.fn("arima", refs, OptimizationSettings(), cfg, 1, False)
    registry = LocalModelRegistry(cfg.registry_path)
    explosive, calm = (train.fn(TrainJob(s, "arima"), refs, tuned, cfg, registry) for s in ("VHM", "VCB"))
    assert explosive.fit_warnings == {"non-stationary starting parameters": 1}
    assert registry.get("arima", "VHM").metadata.details == {"fit_warnings": explosive.fit_warnings}
    assert calm.fit_warnings == {} and registry.get("arima", "VCB").metadata.details == {}
    assert [str(w.message) for w in recwarn if "starting" in str(w.message)] == []  # what would reach the console


def test_short_fit_types_are_cut_into_even_batches_and_the_rest_run_alone() -> None:
    jobs = [TrainJob(s, t) for s in "ABCDEFG" for t in ("lstm", "arima", "catboost")]
    alone, batches = TrainingPlan(jobs, []).grouped(("arima", "catboost"), 3)
    assert alone == [TrainJob(s, "lstm") for s in "ABCDEFG"]
    assert [(str(b), "".join(j.symbol for j in b.jobs)) for b in batches] == [
        ("train-arima-batch-1-of-3", "AB"), ("train-arima-batch-2-of-3", "CD"), ("train-arima-batch-3-of-3", "EFG"),
        ("train-catboost-batch-1-of-3", "AB"), ("train-catboost-batch-2-of-3", "CD"),
        ("train-catboost-batch-3-of-3", "EFG")]
    alone, batches = TrainingPlan(jobs, []).grouped(("arima",), 1)  # batches of one job run alone
    assert sorted(alone, key=str) == sorted(jobs, key=str) and batches == []
    alone, batches = TrainingPlan(jobs[:3], []).grouped(("arima", "catboost"), 50)
    assert (alone, batches) == (jobs[:3], [])
    # Never fewer batches than workers while there are jobs enough: 7 jobs on 4 workers, not 1 batch of 7.
    alone, batches = TrainingPlan(jobs, []).grouped(("arima",), 50, workers=4)
    assert [j.symbol for j in alone if j.model_type == "arima"] == ["A"]
    assert ["".join(j.symbol for j in b.jobs) for b in batches] == ["BC", "DE", "FG"]


def test_a_batch_reports_a_failing_job_and_trains_the_others(tmp_path: Path) -> None:
    refs = {s: write_feature_set(tmp_path / "features", s, seed=i) for i, s in enumerate(("VCB", "VHM", "FPT"))}
    refs["VHM"].split_path("all").write_bytes(b"damaged")
    cfg = models_cfg(tmp_path)
    tuned = tune.fn("catboost", refs, OptimizationSettings(), cfg, 1, False)
    batch = TrainBatch("catboost", tuple(TrainJob(s, "catboost") for s in refs), 1, 1)
    first, failed, last = train_batch.fn(batch, refs, tuned, cfg, LocalModelRegistry(cfg.registry_path))
    assert isinstance(first, TrainResult) and isinstance(last, TrainResult)
    assert isinstance(failed, JobFailure) and (failed.symbol, failed.model_type, failed.step) == (
        "VHM", "catboost", "train")
    assert failed.error.startswith("FeatureStoreError: ") and "all.parquet" in failed.error
    assert [(r.symbol, r.status, r.version) for r in (first, last)] == [("VCB", "trained", 1), ("FPT", "trained", 1)]
    assert all(r.wall_seconds > r.duration_seconds > 0 and r.process_peak_rss_mb > 0 for r in (first, last))
    registry = LocalModelRegistry(cfg.registry_path)
    assert registry.versions("catboost", "VCB") == [1] and registry.versions("catboost", "VHM") == []


def test_per_symbol_types_narrow_the_per_symbol_jobs_and_leave_the_pooled_ones() -> None:
    from tasks.modeling.train import job_types

    everything = ModelsSettings(model_types=("arima", "catboost", "lstm", "transformer"))
    assert job_types(everything) == (["arima", "catboost", "lstm", "transformer"],
                                     ["catboost-pooled", "lstm-pooled", "transformer-pooled"])
    market = everything.model_copy(update={"per_symbol_types": ("arima", "catboost")})
    assert job_types(market) == (["arima", "catboost"], ["catboost-pooled", "lstm-pooled", "transformer-pooled"])
    assert job_types(market.model_copy(update={"scope": "pooled"})) == (
        [], ["catboost-pooled", "lstm-pooled", "transformer-pooled"])
    assert ModelsSettings(per_symbol_types=["catboost", "catboost"]).per_symbol_types == ("catboost",)
