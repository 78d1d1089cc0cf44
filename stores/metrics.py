"""Run, task and model-score history in one SQLite file, for slowness checks and retrain decisions.

Each call opens its own connection, so one `MetricsHistory` may be shared by threads and processes; WAL
lets readers run while a writer commits. Times are stored as UTC ISO strings (a naive datetime is taken as UTC).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

__all__ = ["MetricsHistory", "RunRecord", "ScoreRecord", "TaskRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, run_id TEXT NOT NULL, started_at TEXT NOT NULL,
    wall_seconds REAL NOT NULL, status TEXT NOT NULL, extra TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_kind ON runs (kind, started_at);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL, task_name TEXT NOT NULL, wall_seconds REAL NOT NULL,
    process_cpu_seconds REAL NOT NULL, process_peak_rss_mb REAL NOT NULL, recorded_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_name ON tasks (task_name);
CREATE TABLE IF NOT EXISTS scores (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL, model_type TEXT NOT NULL, version INTEGER NOT NULL, composite REAL NOT NULL,
    window_end TEXT NOT NULL, source TEXT NOT NULL, recorded_at TEXT NOT NULL, flagged TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS scores_symbol ON scores (symbol, window_end);
"""


_BUSY_TIMEOUT = 30.0
"""seconds a connection waits for another's write before giving up."""
_FIRST_USE = threading.Lock()
"""one thread of a process at a time sets a file up; other processes are met by `_use_wal`'s retries."""


def _use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode, which the file keeps.

    While another connection holds a write lock on a file not yet in WAL mode, SQLite refuses the switch
    with "database is locked" at once, without waiting out the busy timeout; so it is retried until `timeout`.
    """
    deadline = time.monotonic() + timeout
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _rename_old_resource_columns(conn: sqlite3.Connection) -> None:
    """Histories written before the resource columns were named for what they measure keep their rows."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
    for old, new in (("cpu_seconds", "process_cpu_seconds"), ("peak_rss_mb", "process_peak_rss_mb")):
        if old in columns:
            conn.execute(f"ALTER TABLE tasks RENAME COLUMN {old} TO {new}")


def _add_flagged_column(conn: sqlite3.Connection) -> None:
    """Histories written before scores carried the weekly verdict keep their rows, none of them flagged."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(scores)")}
    if columns and "flagged" not in columns:
        conn.execute("ALTER TABLE scores ADD COLUMN flagged TEXT NOT NULL DEFAULT ''")


@dataclass(frozen=True)
class RunRecord:
    """One finished flow run."""

    kind: str
    """flow name, e.g. "training" or "daily-retrain"."""
    run_id: str
    started_at: datetime
    wall_seconds: float
    status: str
    extra: dict[str, Any]
    """small JSON-able facts about the run (symbols, counts)."""


@dataclass(frozen=True)
class TaskRecord:
    """Resources one task used in one run."""

    run_id: str
    task_name: str
    wall_seconds: float
    process_cpu_seconds: float
    """CPU time of the whole process during the task (concurrent tasks included)."""
    process_peak_rss_mb: float
    """the process's peak resident memory during the task."""
    recorded_at: datetime


@dataclass(frozen=True)
class ScoreRecord:
    """A model's composite score on a window of data."""

    symbol: str
    model_type: str
    version: int
    composite: float
    window_end: date
    """last day of the data the score was measured on."""
    source: str
    """who scored it, e.g. "deployment" or "weekly-evaluation"."""
    recorded_at: datetime
    flagged: str = ""
    """why a weekly evaluation found the model degraded; empty when it did not."""


def _utc_text(moment: datetime) -> str:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


class MetricsHistory:
    """SQLite-backed history; the file and its tables are created on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT)) as conn:
            if not self._ready:
                with _FIRST_USE:
                    _use_wal(conn, _BUSY_TIMEOUT)
                    _rename_old_resource_columns(conn)
                    _add_flagged_column(conn)
                    conn.executescript(_SCHEMA)
                    self._ready = True
            with conn:  # one transaction: commit on success, roll back on error
                yield conn

    def record_run(self, kind: str, run_id: str, started_at: datetime, wall_seconds: float, status: str,
                   extra: dict[str, Any] | None = None) -> None:
        """Append one finished run."""
        with self._connect() as conn:
            conn.execute("INSERT INTO runs (kind, run_id, started_at, wall_seconds, status, extra) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (kind, run_id, _utc_text(started_at), float(wall_seconds), status,
                          json.dumps(extra or {}, default=str)))

    def record_task(self, run_id: str, task_name: str, wall_seconds: float, process_cpu_seconds: float,
                    process_peak_rss_mb: float) -> None:
        """Append the resources one task used."""
        with self._connect() as conn:
            conn.execute("INSERT INTO tasks (run_id, task_name, wall_seconds, process_cpu_seconds, "
                         "process_peak_rss_mb, recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (run_id, task_name, float(wall_seconds), float(process_cpu_seconds),
                          float(process_peak_rss_mb), _now_text()))

    def record_score(self, symbol: str, model_type: str, version: int, composite: float, window_end: date,
                     source: str, flagged: str = "") -> None:
        """Append one composite score of a model version; `flagged`: why it was found degraded, if it was."""
        with self._connect() as conn:
            conn.execute("INSERT INTO scores (symbol, model_type, version, composite, window_end, source, "
                         "recorded_at, flagged) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (symbol, model_type, int(version), float(composite), window_end.isoformat(), source,
                          _now_text(), flagged))

    def recent_runs(self, kind: str, limit: int = 20) -> list[RunRecord]:
        """The newest `limit` runs of one kind, newest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT kind, run_id, started_at, wall_seconds, status, extra FROM runs "
                                "WHERE kind = ? ORDER BY started_at DESC, id DESC LIMIT ?",
                                (kind, limit)).fetchall()
        return [RunRecord(k, r, datetime.fromisoformat(s), w, st, json.loads(e)) for k, r, s, w, st, e in rows]

    def recent_tasks(self, task_name: str, limit: int = 20) -> list[TaskRecord]:
        """The newest `limit` measurements of one task, newest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT run_id, task_name, wall_seconds, process_cpu_seconds, process_peak_rss_mb, "
                                "recorded_at "
                                "FROM tasks WHERE task_name = ? ORDER BY id DESC LIMIT ?",
                                (task_name, limit)).fetchall()
        return [TaskRecord(r, t, w, c, m, datetime.fromisoformat(at)) for r, t, w, c, m, at in rows]

    def recent_scores(self, symbol: str, limit: int = 20, model_type: str | None = None) -> list[ScoreRecord]:
        """The newest `limit` scores of a symbol (optionally one model type), newest window first."""
        query = ("SELECT symbol, model_type, version, composite, window_end, source, recorded_at, flagged FROM scores "
                 "WHERE symbol = ?" + (" AND model_type = ?" if model_type is not None else "") +
                 " ORDER BY window_end DESC, id DESC LIMIT ?")
        params = (symbol, model_type, limit) if model_type is not None else (symbol, limit)
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return [ScoreRecord(s, m, v, c, date.fromisoformat(w), src, datetime.fromisoformat(at), flag)
                for s, m, v, c, w, src, at, flag in rows]
