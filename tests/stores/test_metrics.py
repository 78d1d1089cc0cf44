"""MetricsHistory against a real SQLite file in a temp dir."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

from stores.metrics import MetricsHistory, RunRecord

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


def test_file_created_on_first_use_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "history.sqlite"
    history = MetricsHistory(path)
    assert not path.exists()
    assert history.recent_runs("training") == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_runs_round_trip_newest_first(tmp_path: Path) -> None:
    history = MetricsHistory(tmp_path / "h.sqlite")
    for i in range(4):
        history.record_run("training", f"r{i}", T0 + timedelta(hours=i), 10.0 + i, "completed", {"n": i})
    history.record_run("daily-retrain", "other", T0, 1.0, "failed", {})
    runs = history.recent_runs("training", limit=3)
    assert [r.run_id for r in runs] == ["r3", "r2", "r1"]
    assert runs[0] == RunRecord("training", "r3", T0 + timedelta(hours=3), 13.0, "completed", {"n": 3})
    assert [r.status for r in history.recent_runs("daily-retrain")] == ["failed"]


def test_run_times_are_normalised_to_utc(tmp_path: Path) -> None:
    history = MetricsHistory(tmp_path / "h.sqlite")
    plus7 = timezone(timedelta(hours=7))
    history.record_run("training", "early", datetime(2024, 5, 1, 8, 0, tzinfo=plus7), 1.0, "completed")
    history.record_run("training", "late", datetime(2024, 5, 1, 2, 0, tzinfo=UTC), 1.0, "completed")
    runs = history.recent_runs("training")
    assert [r.run_id for r in runs] == ["late", "early"]
    assert runs[1].started_at == datetime(2024, 5, 1, 1, 0, tzinfo=UTC)


def test_tasks_round_trip_newest_first(tmp_path: Path) -> None:
    history = MetricsHistory(tmp_path / "h.sqlite")
    for i in range(3):
        history.record_task(f"r{i}", "train", 2.0 * i, 1.0 * i, 100.0 + i)
    history.record_task("r9", "ingest", 5.0, 4.0, 50.0)
    tasks = history.recent_tasks("train", limit=2)
    assert [(t.run_id, t.wall_seconds, t.process_cpu_seconds, t.process_peak_rss_mb) for t in tasks] == [
        ("r2", 4.0, 2.0, 102.0), ("r1", 2.0, 1.0, 101.0)]
    assert tasks[0].recorded_at.tzinfo is not None


def test_scores_newest_window_first(tmp_path: Path) -> None:
    history = MetricsHistory(tmp_path / "h.sqlite")
    history.record_score("VHM", "lstm", 1, 0.6, date(2024, 5, 3), "deployment")
    history.record_score("VHM", "catboost", 2, 0.4, date(2024, 5, 10), "weekly-evaluation")
    history.record_score("VHM", "lstm", 1, 0.5, date(2024, 5, 10), "weekly-evaluation")
    history.record_score("VCB", "lstm", 3, 0.9, date(2024, 5, 17), "deployment")
    latest = history.recent_scores("VHM", limit=1)[0]
    assert (latest.model_type, latest.composite, latest.window_end) == ("lstm", 0.5, date(2024, 5, 10))
    assert [s.composite for s in history.recent_scores("VHM")] == [0.5, 0.4, 0.6]
    assert [s.version for s in history.recent_scores("VHM", model_type="catboost")] == [2]


def test_a_score_carries_its_weekly_flag_and_older_histories_gain_the_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # a history written before scores carried the weekly verdict
        conn.execute("CREATE TABLE scores (id INTEGER PRIMARY KEY AUTOINCREMENT, symbol TEXT NOT NULL, "
                     "model_type TEXT NOT NULL, version INTEGER NOT NULL, composite REAL NOT NULL, "
                     "window_end TEXT NOT NULL, source TEXT NOT NULL, recorded_at TEXT NOT NULL)")
        conn.execute("INSERT INTO scores (symbol, model_type, version, composite, window_end, source, recorded_at) "
                     "VALUES ('VHM', 'lstm', 1, 0.6, '2024-05-03', 'deployment', '2024-05-03T00:00:00+00:00')")
    history = MetricsHistory(path)
    history.record_score("VHM", "lstm", 1, 0.2, date(2024, 5, 10), "weekly-evaluation", flagged="range moved")
    assert [(s.composite, s.flagged) for s in history.recent_scores("VHM")] == [(0.2, "range moved"), (0.6, "")]


def test_threads_share_one_history(tmp_path: Path) -> None:
    history = MetricsHistory(tmp_path / "h.sqlite")
    start = threading.Barrier(4)

    def write(worker: int) -> None:
        start.wait()  # all four meet the new file at once
        for i in range(10):
            history.record_task(f"w{worker}-{i}", "train", 1.0, 1.0, 1.0)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(history.recent_tasks("train", limit=100)) == 40


def test_first_use_waits_out_another_connections_write(tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once while another connection holds a write lock."""
    path = tmp_path / "h.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO other VALUES (1)")
    commit = threading.Timer(0.3, other.execute, args=("COMMIT",))
    commit.start()

    MetricsHistory(path).record_task("r", "train", 1.0, 1.0, 1.0)

    commit.join()
    other.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM other").fetchone()[0] == 1


def test_a_history_with_the_old_resource_columns_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "h.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
                     "task_name TEXT NOT NULL, wall_seconds REAL NOT NULL, cpu_seconds REAL NOT NULL, "
                     "peak_rss_mb REAL NOT NULL, recorded_at TEXT NOT NULL)")
        conn.execute("INSERT INTO tasks (run_id, task_name, wall_seconds, cpu_seconds, peak_rss_mb, recorded_at) "
                     "VALUES ('old', 'train', 3.0, 2.0, 500.0, '2026-01-05T02:00:00+00:00')")
    conn.close()
    history = MetricsHistory(path)

    history.record_task("new", "train", 4.0, 3.0, 600.0)

    assert [(t.run_id, t.process_cpu_seconds, t.process_peak_rss_mb) for t in history.recent_tasks("train")] == [
        ("new", 3.0, 600.0), ("old", 2.0, 500.0)]
