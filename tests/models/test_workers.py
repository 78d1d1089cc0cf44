"""Worker processes: jobs side by side, results and exceptions back, a dead worker replaced, no stray process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from models.workers import WorkerDied, WorkerPool


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _fail(message: str) -> None:
    raise ValueError(message)


def _die(code: int) -> None:
    os._exit(code)


def test_jobs_run_side_by_side_in_worker_processes_and_errors_come_back() -> None:
    pool = WorkerPool(2)
    try:
        with ThreadPoolExecutor(4) as threads:
            pids = list(threads.map(lambda _: pool.run(_pid_after, 0.3), range(4)))
        assert len(set(pids)) == 2 and os.getpid() not in pids  # two workers, reused
        with pytest.raises(ValueError, match="bad input named"):
            pool.run(_fail, "bad input named")
        with pytest.raises(WorkerDied, match=r"exited before answering \(exit code 3"):
            pool.run(_die, 3)
        assert pool.run(_pid_after, 0.0) in pids  # the surviving worker goes on
        with ThreadPoolExecutor(2) as threads:
            after = set(threads.map(lambda _: pool.run(_pid_after, 0.3), range(2)))
        assert len(after) == 2 and len(after - set(pids)) == 1  # a new worker took the dead one's place
    finally:
        pool.close()
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)


def test_an_unguarded_script_is_not_run_again_in_the_workers(tmp_path: Path) -> None:
    """A script without `if __name__ == "__main__":` that runs jobs: the workers never import it."""
    script = tmp_path / "script.py"
    marker = tmp_path / "runs"
    script.write_text(
        "from models.workers import WorkerPool\n"
        f"open({str(marker)!r}, 'a').write('run\\n')\n"
        "print(WorkerPool(2).run(abs, -7))\n", encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7" and marker.read_text() == "run\n"
