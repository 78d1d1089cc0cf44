"""The model-pipeline flow: fan-out over symbols x model types, skips, failures, task names, CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import unmapped

import flows.model_pipeline as model_pipeline_module
from flows.model_pipeline import main, model_pipeline
from schemas import RunFailed
from settings import Settings, load_settings
from stores.features import FeatureStore
from stores.registry import LocalModelRegistry
from tasks.modeling.tune import TuneResult
from tests.tasks.modeling.test_train import FAST, write_feature_set

pytestmark = pytest.mark.usefixtures("prefect_harness")


def config(tmp_path: Path, params: dict, symbols: tuple[str, ...] = ("VCB", "VHM"), **models: object) -> Path:
    path = tmp_path / "models.yml"
    path.write_text(yaml.safe_dump({
        "data": {"feature_store_path": str(tmp_path / "features"), "symbols": list(symbols)},
        "models": {"registry_path": str(tmp_path / "registry"), "model_types": ["arima", "catboost"],
                   "params": params, "scope": "per_symbol", **models},
        "optimization": {"enabled": False},
        "execution": {"cache_dir": str(tmp_path / "cache")},
    }), encoding="utf-8")
    for i, symbol in enumerate(symbols):
        write_feature_set(tmp_path / "features", symbol, seed=i)
    return path


async def task_runs(flow_run_id: object) -> list[tuple[str, str]]:
    """(name, state type) of every task run of the flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [(run.name, run.state_type.value if run.state_type else "") for run in runs]


async def task_run_names(flow_run_id: object) -> set[str]:
    return {name for name, _ in await task_runs(flow_run_id)}



class MapRecorder:
    """Stands in for a training task in flows.model_pipeline: records what each `.map` call's `tuned` argument is
    and maps the real task."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.tuned: list[Any] = []

    def map(self, *args: Any, **kwargs: Any) -> Any:
        self.tuned.append(args[2])
        return self.task.map(*args, **kwargs)


@pytest.fixture
def recorded_maps(monkeypatch: pytest.MonkeyPatch) -> list[MapRecorder]:
    recorders = [MapRecorder(model_pipeline_module.train), MapRecorder(model_pipeline_module.train_batch)]
    monkeypatch.setattr(model_pipeline_module, "train", recorders[0])
    monkeypatch.setattr(model_pipeline_module, "train_batch", recorders[1])
    return recorders


def assert_jobs_get_their_params_as_values(recorders: list[MapRecorder]) -> None:
    """Every job is given its type's tuned params, not the tuning's future: on Dask a task runs where the futures it
    reads are, which put every job of a type on the worker that tuned it."""
    given = [argument for recorder in recorders for argument in recorder.tuned]
    assert given and all(isinstance(a, unmapped) and isinstance(a.value, TuneResult) for a in given), given


def test_fan_out_trains_every_job_then_skips_recent_ones(tmp_path: Path,
                                                         recorded_maps: list[MapRecorder]) -> None:
    settings = load_settings(config(tmp_path, FAST, grouped_types=[], scope="both"))  # one task run per job
    state = model_pipeline(settings=settings, return_state=True)
    outcome = state.result()
    assert not outcome.failures
    assert sorted((r.symbol, r.model_type, r.status) for r in outcome.results) == [
        ("VCB", "arima", "trained"), ("VCB", "catboost", "trained"),
        ("VHM", "arima", "trained"), ("VHM", "catboost", "trained"),
        ("_POOLED_", "catboost-pooled", "trained")]  # ARIMA models one series: it has no pooled form
    names = asyncio.run(task_run_names(state.state_details.flow_run_id))
    assert {"train-arima-VHM", "train-catboost-VCB", "train-catboost-pooled-_POOLED_", "tune-arima",
            "tune-catboost", "tune-catboost-pooled"} <= names
    assert_jobs_get_their_params_as_values(recorded_maps)
    registry = LocalModelRegistry(settings.models.registry_path)
    assert registry.versions("arima", "VHM") == [1]
    pooled = registry.get("catboost-pooled", "_POOLED_")
    assert pooled.metadata.symbols == ["VCB", "VHM"] and pooled.path.parent.name == "_POOLED_"

    again_state = model_pipeline(settings=settings, return_state=True)
    again = again_state.result()
    assert {r.status for r in again.results} == {"skipped"}
    # Skips are decided before tuning: no study runs for types none of whose jobs train.
    ran = asyncio.run(task_run_names(again_state.state_details.flow_run_id))
    assert any(name.startswith("plan-training") for name in ran) and not any(name.startswith("tune") for name in ran)
    forced = model_pipeline(settings=settings, symbols=["VHM"], model_types=["arima"], retrain_all=True)
    assert [(r.symbol, r.status, r.version) for r in forced.results] == [("VHM", "trained", 2)]


def test_a_job_s_routine_fit_warnings_make_one_line_and_none_is_shown(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder) -> None:
    settings = load_settings(config(tmp_path, FAST, ("VCB", "VHM", "FPT"), model_types=["arima"], grouped_types=[]))
    # VHM explosive: statsmodels' start values for it are non-stationary (tests/tasks/modeling/test_train.py).
    write_feature_set(tmp_path / "features", "VHM", rows=300, phi=1.02)
    outcome = model_pipeline(settings=settings)  # three ARIMA jobs, each a task run in its own thread
    assert {r.symbol: r.fit_warnings for r in outcome.results} == {
        "VCB": {}, "VHM": {"non-stationary starting parameters": 1}, "FPT": {}}
    mentions = [line for line in caplog.messages if "statsmodels warning" in line]
    assert len(mentions) == 1 and "VHM" in mentions[0], caplog.messages
    assert mentions[0].endswith("; 1 statsmodels warning during the fit (non-stationary starting parameters 1)")
    assert [str(w.message) for w in recwarn if "starting" in str(w.message)] == []  # what would reach the console


def test_one_failing_model_type_is_reported_and_the_rest_finish(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, {**FAST, "catboost": {"depth": 99}}))
    with pytest.raises(RunFailed, match="2 of 4 jobs failed") as failed:
        model_pipeline(settings=settings)
    outcome = failed.value.outcome
    assert sorted((r.symbol, r.model_type) for r in outcome.results) == [("VCB", "arima"), ("VHM", "arima")]
    assert sorted((f.symbol, f.model_type, f.step) for f in outcome.failures) == [
        ("VCB", "catboost", "tune"), ("VHM", "catboost", "tune")]
    assert all("models.params.catboost" in f.error for f in outcome.failures), outcome.failures


FOUR = ("VCB", "VHM", "FPT", "HPG")


def registered_metrics(settings: Settings) -> dict[tuple[str, str], dict[str, float]]:
    registry = LocalModelRegistry(settings.models.registry_path)
    return {(s, t): registry.get(t, s).metadata.metrics for s in FOUR for t in ("arima", "catboost")}


def test_short_fits_train_in_batches_of_group_size(tmp_path: Path, recorded_maps: list[MapRecorder]) -> None:
    settings = load_settings(config(tmp_path, FAST, FOUR, group_size=3))
    state = model_pipeline(settings=settings, return_state=True)
    outcome = state.result()
    assert not outcome.failures and len(outcome.results) == 8
    runs = asyncio.run(task_runs(state.state_details.flow_run_id))
    assert sorted(name for name, _ in runs if name.startswith("train")) == [  # 4 jobs per type: 2 batches of 2
        "train-arima-batch-1-of-2", "train-arima-batch-2-of-2",
        "train-catboost-batch-1-of-2", "train-catboost-batch-2-of-2"]
    assert_jobs_get_their_params_as_values(recorded_maps)
    registry = LocalModelRegistry(settings.models.registry_path)
    assert all(registry.versions(t, s) == [1] for s in FOUR for t in ("arima", "catboost"))
    # Each job keeps its own measurements.
    assert all(r.wall_seconds > r.duration_seconds > 0 for r in outcome.results)
    progress = asyncio.run(progress_of(state.state_details.flow_run_id))
    assert progress["model-pipeline: finished jobs"] == 100.0


def test_a_failing_job_in_a_batch_is_reported_alone(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, FAST, FOUR, group_size=3))
    FeatureStore(settings.data.feature_store_path).current("VHM").split_path("all").write_bytes(b"damaged")
    state = model_pipeline(settings=settings, return_state=True)
    assert state.is_failed() and "2 of 8 jobs failed" in str(state.message)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, RunFailed)
    outcome = error.outcome
    assert sorted((f.symbol, f.model_type, f.step) for f in outcome.failures) == [
        ("VHM", "arima", "train"), ("VHM", "catboost", "train")]
    # The batches holding VHM completed, carrying their other jobs' results.
    runs = asyncio.run(task_runs(state.state_details.flow_run_id))
    assert {kind for name, kind in runs if name.startswith("train")} == {"COMPLETED"}
    assert all(f.error.startswith("FeatureStoreError") for f in outcome.failures), outcome.failures
    assert sorted((r.symbol, r.model_type) for r in outcome.results) == sorted(
        (s, t) for s in FOUR if s != "VHM" for t in ("arima", "catboost"))
    registry = LocalModelRegistry(settings.models.registry_path)
    assert registry.versions("arima", "VCB") == [1] and registry.versions("arima", "VHM") == []


def test_batches_register_what_one_run_per_job_registers(tmp_path: Path) -> None:
    grouped = load_settings(config(tmp_path, FAST, FOUR, group_size=3))
    alone = load_settings(config(tmp_path, FAST, FOUR, grouped_types=[]),
                          {"models": {"registry_path": str(tmp_path / "registry-alone")}})
    model_pipeline(settings=grouped)
    model_pipeline(settings=alone)
    assert registered_metrics(grouped) == registered_metrics(alone)


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
