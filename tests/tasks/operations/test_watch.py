from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from schemas import JobFailure
from settings import MonitoringSettings
from stores.metrics import MetricsHistory
from tasks.modeling.train import TrainResult
from tasks.operations.watch import watch_run


def job(seconds: float) -> TrainResult:
    return TrainResult("VHM", "lstm", "trained", version=1, wall_seconds=seconds, process_cpu_seconds=seconds / 2,
                       process_peak_rss_mb=300.0)


def test_slow_runs_and_tasks_are_flagged_against_history_and_recorded(tmp_path: Path) -> None:
    cfg = MonitoringSettings(history_path=tmp_path / "h.sqlite", slow_factor=3.0, min_history=3)
    now = datetime.now(UTC)
    for i in range(3):
        assert watch_run.fn("training", f"r{i}", now, 10.0, "completed", [job(2.0)], [], cfg) == []
    alerts = watch_run.fn("training", "slow", now, 45.0, "completed", [job(9.0)],
                          [JobFailure("VCB", "arima", "train", "ModelError: boom")], cfg)
    assert sorted((a.kind, a.subject) for a in alerts) == [
        ("failed_job", "arima VCB"), ("slow_run", "training"), ("slow_task", "train-lstm-VHM")]
    history = MetricsHistory(cfg.history_path)
    assert history.recent_runs("training")[0].run_id == "slow"
    assert history.recent_tasks("train-lstm-VHM")[0].wall_seconds == 9.0


def test_no_history_no_slowness_verdict(tmp_path: Path) -> None:
    cfg = MonitoringSettings(history_path=tmp_path / "h.sqlite")
    assert watch_run.fn("training", "first", datetime.now(UTC), 999.0, "completed", [job(99.0)], [], cfg) == []
