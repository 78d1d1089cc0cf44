"""The model-pipeline flow: fan-out over symbols x model types, skips, failures, task names, CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from flows.model_pipeline import main, model_pipeline
from schemas import RunFailed
from settings import load_settings
from stores.registry import LocalModelRegistry
from tests.tasks.test_train import FAST, write_feature_set

pytestmark = pytest.mark.usefixtures("prefect_harness")


def config(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "models.yml"
    path.write_text(yaml.safe_dump({
        "data": {"feature_store_path": str(tmp_path / "features"), "symbols": ["VCB", "VHM"]},
        "models": {"registry_path": str(tmp_path / "registry"), "model_types": ["arima", "catboost"],
                   "params": params},
        "optimization": {"enabled": False},
        "execution": {"cache_dir": str(tmp_path / "cache")},
    }), encoding="utf-8")
    for i, symbol in enumerate(("VCB", "VHM")):
        write_feature_set(tmp_path / "features", symbol, seed=i)
    return path


async def task_run_names(flow_run_id: object) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name for run in runs}


def test_fan_out_trains_every_job_then_skips_recent_ones(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, FAST))
    state = model_pipeline(settings=settings, return_state=True)
    outcome = state.result()
    assert not outcome.failures
    assert sorted((r.symbol, r.model_type, r.status) for r in outcome.results) == [
        ("VCB", "arima", "trained"), ("VCB", "catboost", "trained"),
        ("VHM", "arima", "trained"), ("VHM", "catboost", "trained")]
    names = asyncio.run(task_run_names(state.state_details.flow_run_id))
    assert {"train-arima-VHM", "train-catboost-VCB", "tune-arima", "tune-catboost"} <= names
    registry = LocalModelRegistry(settings.models.registry_path)
    assert registry.versions("arima", "VHM") == [1]

    again_state = model_pipeline(settings=settings, return_state=True)
    again = again_state.result()
    assert {r.status for r in again.results} == {"skipped"}
    # Skips are decided before tuning: no study runs for types none of whose jobs train.
    ran = asyncio.run(task_run_names(again_state.state_details.flow_run_id))
    assert any(name.startswith("plan-training") for name in ran) and not any(name.startswith("tune") for name in ran)
    forced = model_pipeline(settings=settings, symbols=["VHM"], model_types=["arima"], retrain_all=True)
    assert [(r.symbol, r.status, r.version) for r in forced.results] == [("VHM", "trained", 2)]


def test_one_failing_model_type_is_reported_and_the_rest_finish(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, {**FAST, "catboost": {"depth": 99}}))
    with pytest.raises(RunFailed, match="2 of 4 jobs failed") as failed:
        model_pipeline(settings=settings)
    outcome = failed.value.outcome
    assert sorted((r.symbol, r.model_type) for r in outcome.results) == [("VCB", "arima"), ("VHM", "arima")]
    assert sorted((f.symbol, f.model_type, f.step) for f in outcome.failures) == [
        ("VCB", "catboost", "tune"), ("VHM", "catboost", "tune")]
    assert all("models.params.catboost" in f.error for f in outcome.failures), outcome.failures


async def progress_of(flow_run_id: object) -> dict[str, float]:
    """description -> value of every progress artifact of the flow run and its task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    async with get_client() as client:
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["progress"])))
    return {a.description or "": float(a.data) for a in artifacts}  # type: ignore[arg-type]


def test_tuning_reports_every_trial_and_its_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(config(tmp_path, FAST), {"optimization": {
        "enabled": True, "n_trials": 2, "folds": 2, "storage_path": str(tmp_path / "studies.db")}})
    state = model_pipeline(settings=settings, model_types=["arima"], return_state=True)
    assert state.is_completed()
    trials = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tune-arima: trial")]
    assert [t.split(" rmse ")[0] for t in trials] == ["tune-arima: trial 1/2", "tune-arima: trial 2/2"]
    assert all("best" in t and "elapsed" in t and "left" in t for t in trials)
    progress = asyncio.run(progress_of(state.state_details.flow_run_id))
    assert progress == {"tune-arima: finished trials": 100.0, "model-pipeline: finished jobs": 100.0}


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    path = config(tmp_path, FAST)
    assert main(["--model-type", "arima", "--symbols", "VHM", "--no-optimize", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[1/1] arima       VHM      trained: v1 val_rmse=" in caplog.text  # one log line per finished job
    assert "1 trained, 0 skipped, 0 failed" in out
    assert main(["--symbols", "NOPE", "--no-optimize", "--config", str(path)]) == 2
    assert "no feature set for NOPE" in capsys.readouterr().err
