"""Helpers to run the product as its users do: commands in a workspace folder, a Prefect server, a worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from serving import free_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Every path setting, so that a flow run by a worker (whose working directory is the checkout) writes
# into the test's workspace instead.
PATH_SETTINGS = {
    "DATA__PRICES_PATH": "data/prices", "DATA__FEATURE_STORE_PATH": "data/features",
    "MODELS__REGISTRY_PATH": "artifacts/registry", "OPTIMIZATION__STORAGE_PATH": "artifacts/optuna/studies.db",
    "DEPLOYMENT__PACKAGES_PATH": "artifacts/packages",
    "MONITORING__HISTORY_PATH": "artifacts/monitoring/history.sqlite",
    "EXECUTION__CACHE_DIR": "artifacts/cache", "EXECUTION__REPORTS_DIR": "reports",
}


FEWER_FOLDS = {"OPTIMIZATION__FOLDS": "2", "EVALUATION__CROSS_VALIDATION__CV_FOLDS": "2",
               "EVALUATION__CROSS_VALIDATION__POOLED_FOLDS": "2"}
"""Walk-forward folds shrunk to the fewest the settings allow, as trials and days are: every step still runs."""


def user_env(workspace: Path, **settings: str) -> dict[str, str]:
    """A user's environment in `workspace`: no Prefect server configured and a Prefect home of its own.

    `settings` are STOCK_AI_ variables without the prefix, e.g. OPTIMIZATION__N_TRIALS="2".
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STOCK_AI_"))}
    env |= {"PREFECT_HOME": str(workspace / ".prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return env | {f"STOCK_AI_{key}": value for key, value in settings.items()}


def workspace_paths(workspace: Path) -> dict[str, str]:
    """PATH_SETTINGS as absolute paths under `workspace`, for user_env."""
    return {key: str(workspace / relative) for key, relative in PATH_SETTINGS.items()}


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, capturing its output."""
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def tail(result: subprocess.CompletedProcess[str], chars: int = 4000) -> str:
    """The end of a finished command's output, for assertion messages."""
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-chars:]}\nstderr:\n{result.stderr[-chars:]}"


def ingest_demo(workspace: Path, env: dict[str, str], days: int, symbols: str = "VHM") -> None:
    """Fill the workspace's price store with the synthetic demo market, ending today."""
    result = run([PYTHON, "-m", "flows.ingest", "demo", "--symbols", symbols, "--days", str(days)], workspace, env)
    assert result.returncode == 0, tail(result)


@contextmanager
def background(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running command in its own process group, stopped (with everything it started) on exit."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    finally:
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):  # Ctrl-C first
            if process.poll() is not None:
                break
            os.killpg(process.pid, sig)
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        try:  # children left behind by the group leader (flow-run processes of a worker)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def prefect_server(workspace: Path, log: Path) -> Iterator[str]:
    """`prefect server start` on a free loopback port, with its own database; yields the API URL."""
    port = free_port()
    env = user_env(workspace)
    command = [PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with background(command, workspace, env, log) as process:
        api = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"prefect server did not come up: {log.read_text()[-3000:]}")
        yield api
