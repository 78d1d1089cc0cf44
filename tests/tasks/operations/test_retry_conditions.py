"""Retry conditions: a task is run again on errors that may heal, once on errors that will not.

Each task runs inside a flow on the session's Prefect server with immediate retries; an `on_running` hook
counts its attempts.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import Task, flow

from serving import ServerProcess, free_port
from settings import DeploymentSettings
from stores.features import FeatureStore, FeatureStoreError
from tasks.data.store import publish
from tasks.delivery.deploy import DeploymentError, PackageRef, push
from tests.tasks.modeling.test_train import write_feature_set

pytestmark = pytest.mark.usefixtures("prefect_harness")
TOKEN = "test-token-0123456789"


def attempts(task: Task[Any, Any], *args: Any, retries: int = 2, **options: Any) -> tuple[int, BaseException | None]:
    """Run `task(*args)` in a flow with `retries` immediate retries: how often it ran, and its final error."""
    runs: list[int] = []
    counted: Any = task.with_options(retries=retries, retry_delay_seconds=0,
                                on_running=[lambda *_: runs.append(1)], **options)

    @flow
    def once() -> BaseException | None:
        state = counted(*args, return_state=True)
        return state.result(raise_on_failure=False) if state.is_failed() else None

    error = once()
    return len(runs), error


# push: retried only when the server cannot be reached; a refusal will not change.

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ServerProcess("staging", tmp_path_factory.mktemp("staging"), TOKEN) as staging:
        yield staging.url


@pytest.fixture
def silent() -> Iterator[str]:
    """A loopback port whose connections are accepted (by the kernel) and never answered."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def package(tmp_path: Path) -> PackageRef:
    """Bytes no server takes for a package: only refusals and transport errors are in question here."""
    path = tmp_path / "VHM-catboost-v1.tar.gz"
    path.write_bytes(b"not a deployment package")
    return PackageRef("VHM", "catboost", 1, "hash", path)


def test_push_retries_a_server_that_refuses_connections(tmp_path: Path) -> None:
    runs, error = attempts(push, package(tmp_path), f"http://127.0.0.1:{free_port()}", DeploymentSettings(token=TOKEN))
    assert isinstance(error, httpx.ConnectError) and runs == 3


def test_push_retries_a_server_that_does_not_answer_in_time(tmp_path: Path, silent: str) -> None:
    runs, error = attempts(push, package(tmp_path), silent, DeploymentSettings(token=TOKEN, timeout_seconds=0.2))
    assert isinstance(error, httpx.TimeoutException) and runs == 3


@pytest.mark.parametrize(("token", "refusal"), [("not-the-token", "HTTP 401"), (TOKEN, "HTTP 400")])
def test_push_does_not_retry_a_refusal(token: str, refusal: str, tmp_path: Path, server: str) -> None:
    runs, error = attempts(push, package(tmp_path), server, DeploymentSettings(token=token))
    assert isinstance(error, DeploymentError) and refusal in str(error) and runs == 1


def test_push_does_not_retry_a_missing_token(tmp_path: Path) -> None:
    runs, error = attempts(push, package(tmp_path), f"http://127.0.0.1:{free_port()}", DeploymentSettings())
    assert isinstance(error, DeploymentError) and "deployment.token is not set" in str(error) and runs == 1


# publish: retried on file system errors only; a snapshot that fails its check will not heal.

def test_publish_retries_a_file_system_error(tmp_path: Path) -> None:
    ref = write_feature_set(tmp_path / "features", "VHM")
    current = tmp_path / "features" / "VHM" / "manifest.json"
    current.unlink()
    current.mkdir()  # the current-snapshot pointer cannot be replaced: os.replace raises IsADirectoryError
    runs, error = attempts(publish, ref, FeatureStore(tmp_path / "features"))
    assert isinstance(error, OSError) and runs == 3


def test_publish_does_not_retry_an_altered_snapshot(tmp_path: Path) -> None:
    ref = write_feature_set(tmp_path / "features", "VHM")
    ref.split_path("test").write_bytes(b"altered")
    runs, error = attempts(publish, ref, FeatureStore(tmp_path / "features"))
    assert isinstance(error, FeatureStoreError) and "sha256 mismatch" in str(error) and runs == 1
