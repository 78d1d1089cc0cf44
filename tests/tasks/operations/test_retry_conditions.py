"""Retry conditions: a task is run again on errors that may heal, once on errors that will not.

Each task runs inside a flow on the session's Prefect server with immediate retries; an `on_running` hook
counts its attempts.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prefect import Task, flow

from schemas import CleaningReport
from serving import ServerProcess, free_port
from settings import DeploymentSettings
from stores.features import FeatureStore, FeatureStoreError
from stores.metrics import MetricsHistory
from stores.registry import LocalModelRegistry, RegistryError
from tasks.data.clean import Cleaned
from tasks.data.split import split
from tasks.data.store import publish, store
from tasks.delivery.deploy import DeploymentError, PackageRef, push, stage_champions
from tasks.evaluation.choose import Decision
from tasks.operations.weekly import record_scores
from tests.stores.test_io_errors import sqlite_error
from tests.tasks.data.test_split import FEATURES, SPLIT, calendar_of, selected_frame
from tests.tasks.modeling.test_train import write_feature_set
from tests.tasks.operations.test_schedule import assessment

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


# store, publish: retried on file system errors that may heal only (a full disk), not on a read-only or
# forbidden feature store, nor on a snapshot that fails its check.

def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code), "/features/VHM")


def raising(error: BaseException, calls: list[int]) -> Any:
    """A function that counts its calls and raises `error`."""
    def fail(*_: Any, **__: Any) -> Any:
        calls.append(1)
        raise error

    return fail


def store_args(root: Path) -> tuple[Any, ...]:
    """The inputs of `store` for one symbol's small feature set, into a feature store at `root`."""
    selected = selected_frame(109, FEATURES.horizon)
    calendar = calendar_of(selected)
    splits = split.fn(selected, "VHM", FEATURES, SPLIT, calendar)
    cleaned = Cleaned(frame=selected.frame, report=CleaningReport("VHM", 109, 109))
    return splits, "VHM", cleaned, selected, FeatureStore(root), FEATURES.horizon, None, calendar


def test_store_and_publish_retry_within_30_s_by_default() -> None:
    for task in (store, publish):
        assert task.retries == 3 and isinstance(task.retry_delay_seconds, list)
        assert sum(task.retry_delay_seconds) <= 30


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENODEV], ids=errno.errorcode.get)
def test_store_into_a_read_only_feature_store_fails_at_once(
        code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the task's own retries and delays: a retry would wait 2 s, then 8, then 20."""
    calls: list[int] = []
    monkeypatch.setattr("stores.features.tempfile", SimpleNamespace(mkdtemp=raising(os_error(code), calls)))
    runs: list[int] = []
    counted: Any = store.with_options(on_running=[lambda *_: runs.append(1)], refresh_cache=True)

    @flow
    def once() -> tuple[bool, Any]:
        state = counted(*store_args(tmp_path), return_state=True)
        return state.is_failed(), state.result(raise_on_failure=False)

    failed, error = once()
    assert failed and isinstance(error, OSError) and error.errno == code
    assert len(runs) == 1 and len(calls) == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=errno.errorcode.get)
def test_store_retries_a_full_disk(code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr("stores.features.tempfile", SimpleNamespace(mkdtemp=raising(os_error(code), calls)))
    runs, error = attempts(store, *store_args(tmp_path), refresh_cache=True)
    assert isinstance(error, OSError) and error.errno == code and runs == 3 and len(calls) == 3


def test_publish_does_not_retry_a_folder_where_its_pointer_belongs(tmp_path: Path) -> None:
    ref = write_feature_set(tmp_path / "features", "VHM")
    current = tmp_path / "features" / "VHM" / "manifest.json"
    current.unlink()
    current.mkdir()  # the current-snapshot pointer cannot be replaced: os.replace raises IsADirectoryError
    runs, error = attempts(publish, ref, FeatureStore(tmp_path / "features"))
    assert isinstance(error, IsADirectoryError) and runs == 1


@pytest.mark.parametrize(("code", "expected"), [(errno.EROFS, 1), (errno.EACCES, 1), (errno.ENOSPC, 3)],
                         ids=["EROFS", "EACCES", "ENOSPC"])
def test_publish_retries_a_full_disk_only(code: int, expected: int, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ref = write_feature_set(tmp_path / "features", "VHM")
    calls: list[int] = []
    monkeypatch.setattr("stores.features.atomic_write", raising(os_error(code), calls))
    runs, error = attempts(publish, ref, FeatureStore(tmp_path / "features"))
    assert isinstance(error, OSError) and error.errno == code and runs == expected == len(calls)


def test_publish_does_not_retry_an_altered_snapshot(tmp_path: Path) -> None:
    ref = write_feature_set(tmp_path / "features", "VHM")
    ref.split_path("all").write_bytes(b"altered")
    runs, error = attempts(publish, ref, FeatureStore(tmp_path / "features"))
    assert isinstance(error, FeatureStoreError) and "sha256 mismatch" in str(error) and runs == 1


# stage-champions and record-scores write the registry's aliases and the metrics history: the same condition.

PROMOTED = [Decision("VHM", "promote", "catboost", 1, 0.5, ("won",))]


@pytest.mark.parametrize(("error", "expected"), [
    (os_error(errno.EROFS), 1), (os_error(errno.EACCES), 1), (RegistryError("catboost VHM v1 does not exist"), 1),
    (os_error(errno.ENOSPC), 3),
], ids=["EROFS", "EACCES", "missing-version", "ENOSPC"])
def test_stage_champions_retries_a_full_disk_only(error: BaseException, expected: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(LocalModelRegistry, "set_alias", raising(error, calls))
    runs, raised = attempts(stage_champions, PROMOTED, LocalModelRegistry(tmp_path / "registry"))
    assert raised is error and runs == expected == len(calls)


def test_record_scores_does_not_retry_a_history_it_cannot_open(tmp_path: Path) -> None:
    runs, error = attempts(record_scores, [assessment(0.5, 1.0)], {}, tmp_path)  # a folder where the file belongs
    assert isinstance(error, sqlite3.OperationalError) and error.sqlite_errorname == "SQLITE_CANTOPEN" and runs == 1


def test_record_scores_retries_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = sqlite_error(["CREATE TABLE t (x)", "PRAGMA max_page_count = 2", "INSERT INTO t VALUES (zeroblob(100000))"])
    calls: list[int] = []
    monkeypatch.setattr(MetricsHistory, "record_score", raising(full, calls))
    runs, error = attempts(record_scores, [assessment(0.5, 1.0)], {}, tmp_path / "history.sqlite")
    assert error is full and runs == 3 == len(calls)
