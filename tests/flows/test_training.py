"""The full `training` flow end to end on a small synthetic demo market with tiny model settings."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from prefect.client.schemas.objects import Artifact

from flows.data_pipeline import DataPipelineError
from flows.training import main, training
from schemas import RunFailed
from settings import load_settings
from stores.base import SourceInfo
from stores.metrics import MetricsHistory
from stores.parquet import ParquetPriceStore
from stores.registry import LocalModelRegistry
from tasks.data.ingest import synthetic_market
from tasks.delivery.summaries import format_leaderboard

pytestmark = pytest.mark.usefixtures("prefect_harness")
TYPES = ["arima", "catboost", "lstm", "transformer"]
POOLED = ["catboost-pooled", "lstm-pooled", "transformer-pooled"]


def demo_config(tmp_path: Path, symbols: tuple[str, ...] = ("VCB", "VHM")) -> Path:
    path = tmp_path / "training.yml"
    path.write_text(yaml.safe_dump({
        "data": {"prices_path": str(tmp_path / "prices"), "feature_store_path": str(tmp_path / "features"),
                 "symbols": list(symbols), "features": {"windows": [5, 10, 20]}, "split": {"min_rows": 30}},
        "models": {"registry_path": str(tmp_path / "registry"), "model_types": TYPES, "params": {
            "arima": {"p": 1, "q": 0}, "catboost": {"iterations": 40},
            "lstm": {"max_epochs": 2, "hidden_size": 8, "lookback": 5},
            "transformer": {"max_epochs": 2, "d_model": 8, "nhead": 2, "num_layers": 1, "dim_feedforward": 16,
                            "lookback": 5}}},
        "optimization": {"enabled": False},
        "deployment": {"enabled": False},
        "monitoring": {"history_path": str(tmp_path / "history.sqlite")},
        "evaluation": {"cross_validation": {"cv_folds": 2, "pooled_folds": 2}},
        "execution": {"cache_dir": str(tmp_path / "cache"), "reports_dir": str(tmp_path / "reports"),
                      "io_retry_delays": [0.1]},
    }), encoding="utf-8")
    store = ParquetPriceStore(tmp_path / "prices")
    for symbol, bars in synthetic_market(list(symbols), 420, seed=7, end=date(2026, 10, 30)).items():
        store.upsert(symbol, bars, SourceInfo(kind="synthetic", detail="seed=7", synthetic=True))
    return path


async def run_artifacts(flow_run_id: UUID) -> dict[str, Artifact]:
    """The keyed artifacts of one flow run and of its subflow runs, by key; earlier runs on the shared server
    create artifacts with the same keys, so these are told apart by run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    async with get_client() as client:
        runs, parents = {flow_run_id}, [flow_run_id]
        while parents:
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents)))
            parents = [run.id for run in children if run.id not in runs]
            runs.update(parents)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=list(runs))))
    return {a.key: a for a in artifacts if a.key}


async def run_log(flow_run_id: UUID) -> list[str]:
    """The messages of one flow run's own log (its tasks' records included), oldest first: what the Logs tab of the
    run and `prefect flow-run logs` show."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                      sort=LogSort.TIMESTAMP_ASC, limit=200)
    return [log.message for log in logs]


def significant(value: float, digits: int = 4) -> bool:
    return float(f"{value:.{digits}g}") == value


@pytest.mark.long(seconds=15)
def test_full_flow_writes_report_decisions_and_artifacts(tmp_path: Path) -> None:
    settings = load_settings(demo_config(tmp_path))
    state = training(settings=settings, return_state=True)
    outcome = state.result()

    # models.scope both: each symbol's candidates are its own models and the pooled ones (no pooled ARIMA).
    assert sorted((row["symbol"], row["model"]) for row in outcome.leaderboard) == sorted(
        (s, t) for s in ("VCB", "VHM") for t in [*TYPES, *POOLED])
    assert {d.symbol for d in outcome.decisions} == {"VCB", "VHM"}
    assert all(d.reasons for d in outcome.decisions)
    content = json.loads(outcome.report.json_path.read_text())
    assert content["status"] == "completed" and len(content["leaderboard"]) == 14
    assert content["data_source"]["VHM"]["synthetic"] is True
    assert {e["symbol"] for e in content["evaluations"]} == {"VCB", "VHM"}
    page = outcome.report.html_path.read_text()
    # A chart per symbol, and one per top-k portfolio: each universe model's over two symbols (k 1 of 2).
    portfolios = content["portfolios"]
    assert {p["name"] for p in portfolios} >= {f"{t} v1" for t in POOLED} and all(p["k"] == 1 for p in portfolios)
    assert page.count('<img src="data:image/png;base64,') == 2 + len(portfolios) and "Leaderboard" in page
    assert "<h2>Data sources</h2>" in page and page.count("<table>") == 3 + len(portfolios)  # sources, 2 boards
    assert "Portfolios: what the rankings earn after costs and taxes" in page
    assert state.state_details.flow_run_id is not None
    artifacts = asyncio.run(run_artifacts(state.state_details.flow_run_id))
    assert {"training-leaderboard", "training-decisions", "model-pipeline-jobs", "training-portfolios"} <= set(
        artifacts)
    table = json.loads(str(artifacts["training-portfolios"].data))
    assert len(table) == 3 * len(portfolios) and table[0]["strategy"].startswith("top-1, replacing at most 1")
    leaderboard = json.loads(str(artifacts["training-leaderboard"].data))
    assert [(row["symbol"], row["model"]) for row in leaderboard] == [
        (row["symbol"], row["model"]) for row in outcome.leaderboard]
    # Artifact tables read like the report: 4 significant digits, text shown literally in the UI's Markdown cells.
    numbers = [v for row in leaderboard + table for v in row.values() if isinstance(v, float)]
    assert numbers and all(significant(v) for v in numbers)
    assert any(not significant(v) for row in outcome.leaderboard for v in row.values() if isinstance(v, float))
    jobs = json.loads(str(artifacts["model-pipeline-jobs"].data))
    assert sorted((row["symbol"], row["model"], row["status"]) for row in jobs) == sorted(
        [(s, t, "trained") for s in ("VCB", "VHM") for t in TYPES] + [("\\_POOLED\\_", t, "trained") for t in POOLED])
    assert all(significant(row["val_rmse"]) for row in jobs)

    # The run's own log tells what it did: best models per symbol, decisions with reasons, deployment, report.
    log = "\n".join(asyncio.run(run_log(state.state_details.flow_run_id)))
    for symbol in ("VCB", "VHM"):
        assert f"leaderboard {symbol}: 7 model(s), best composite first" in log
        decision = next(d for d in outcome.decisions if d.symbol == symbol)
        assert f"decision {symbol}: {decision.action}" in log and all(r in log for r in decision.reasons)
    best = max((row for row in outcome.leaderboard if row["symbol"] == "VHM"), key=lambda row: row["composite"])
    assert f"  {best['model']} v{best['version']}: composite {best['composite']:.4g}, r2 {best['r2']:.4g}" in log
    assert "deployment off (deployment.enabled false or --no-deploy)" in log
    assert f"report: {outcome.report.html_path}" in log
    assert all(f"universe gate {line}" in log for line in outcome.universe_lines)
    assert all(d.symbol in str(artifacts["training-decisions"].data) for d in outcome.decisions)

    registry = LocalModelRegistry(settings.models.registry_path)
    for decision in outcome.decisions:
        staged = registry.alias(decision.symbol, "staging")
        if decision.action == "promote":
            assert staged is not None and (staged.model_type, staged.version) == (decision.model_type, decision.version)
        else:
            assert staged is None
    history = MetricsHistory(settings.monitoring.history_path)
    assert [r.run_id for r in history.recent_runs("training")] == [outcome.run_id]
    measured = history.recent_tasks("train-catboost-VHM")
    assert len(measured) == 1 and measured[0].wall_seconds > 0 and measured[0].process_peak_rss_mb > 0
    printed = format_leaderboard(outcome.leaderboard, outcome.decisions, outcome.failures, outcome.deployments,
                                 outcome.report.html_path, outcome.universe_lines)
    assert "composite" in printed and f"report: {outcome.report.html_path}" in printed
    # Each candidate's adjusted p-value is that of its gate: Holm over the symbol's own four candidates, or the
    # universe's test, which two symbols cannot pass (the universe needs universe_min_symbols).
    for row in outcome.leaderboard:
        if row["model"] in POOLED:
            assert row["p_adj"] == 1.0
        else:
            assert row["dm_p"] <= row["p_adj"] <= min(1.0, 4 * row["dm_p"])
    assert len(outcome.universe_lines) == 3 and all("over 2 symbols, no daily IC" in line
                                                    for line in outcome.universe_lines)
    assert all(f"universe gate {line}" in printed for line in outcome.universe_lines)
    for row in outcome.leaderboard:  # a PSR left out (too few days in a position or trades) reads n/a
        if row["psr"] is None and row["tradable"]:
            assert "n/a" in page and "n/a" in printed


def test_failure_is_reported_with_its_step_and_propagates(tmp_path: Path) -> None:
    settings = load_settings(demo_config(tmp_path))
    with pytest.raises(DataPipelineError, match="NOPE"):
        training(symbols=["VHM", "NOPE"], settings=settings)
    reports = list((tmp_path / "reports").glob("*/report.json"))
    assert len(reports) == 1
    failure = json.loads(reports[0].read_text())
    assert failure["status"] == "failed" and failure["failed_step"] == "data-pipeline"
    assert "NOPE" in failure["error"]
    page = (reports[0].parent / "report.html").read_text()
    assert 'class="failures"' in page and "data-pipeline" in page and "NOPE" in page


def test_a_failure_report_the_disk_refuses_is_said_and_the_step_error_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import tasks.delivery.report as report_module

    def full(path: Path, content: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(report_module, "atomic_write", full)
    settings = load_settings(demo_config(tmp_path))
    state = training(symbols=["VHM", "NOPE"], settings=settings, return_state=True)

    with pytest.raises(DataPipelineError, match="NOPE"):
        state.result()
    assert not list((tmp_path / "reports").glob("*/report.json"))
    log = "\n".join(asyncio.run(run_log(state.state_details.flow_run_id)))
    assert "training failed at step data-pipeline: DataPipelineError: " in log
    assert "(failure report: not written: [Errno 28] No space left on device: '" in log and "report.json')" in log


def test_a_failed_job_is_reported_then_fails_the_run(tmp_path: Path) -> None:
    settings = load_settings(demo_config(tmp_path, symbols=("VHM",)))
    broken = settings.model_copy(update={"models": settings.models.model_copy(
        update={"params": {**settings.models.params, "lstm": {"lookback": 5000}}})})
    state = training(settings=broken, return_state=True)
    with pytest.raises(RunFailed, match=r"^1 of 7 jobs failed; first: train lstm VHM: ModelError") as failed:
        state.result()
    outcome = failed.value.outcome
    assert [(f.symbol, f.model_type, f.step) for f in outcome.failures] == [("VHM", "lstm", "train")]
    assert sorted(row["model"] for row in outcome.leaderboard) == ["arima", "catboost", "transformer"]
    assert [d.symbol for d in outcome.decisions] == ["VHM"]  # the survivors still compete
    content = json.loads(outcome.report.json_path.read_text())
    assert content["status"] == "completed_with_failures" and content["failures"][0]["model_type"] == "lstm"
    page = outcome.report.html_path.read_text()
    assert page.index('class="failures"') < page.index("Leaderboard")
    assert MetricsHistory(settings.monitoring.history_path).recent_runs("training")[0].status == \
        "completed_with_failures"
    assert state.state_details.flow_run_id is not None
    log = "\n".join(asyncio.run(run_log(state.state_details.flow_run_id)))
    assert "failed: train lstm VHM: ModelError" in log and f"report: {outcome.report.html_path}" in log


def test_cli_prints_the_leaderboard_once(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    config = demo_config(tmp_path, symbols=("VHM",))
    assert main(["--symbols", "VHM", "--config", str(config), "--no-optimize"]) == 0
    out, err = capfd.readouterr()
    assert "decision VHM:" in out and "report:" in out and "transformer" in out
    # The flow logs the same lines to its run log; the console shows them once, as the CLI prints them.
    console = out + err
    assert console.count("decision VHM:") == 1 and console.count("report: ") == 1
    assert "leaderboard VHM:" not in console
    assert main(["--symbols", "../x", "--config", str(config)]) == 2
