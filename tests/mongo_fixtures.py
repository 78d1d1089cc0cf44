"""Pytest plugin: a real MongoDB-wire server for the session, and a fresh database per test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from serving import free_port
from settings import MongoSettings

__all__ = ["free_port", "mongo_settings", "mongo_uri"]

URI_ENV = "STOCK_AI_TEST_MONGODB_URI"
_STARTUP_SECONDS = 30.0


def _wait_for_ping(uri: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"secantusd-py exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=500)
            with client:
                client.admin.command("ping")
            return
        except PyMongoError:
            time.sleep(0.1)
    raise RuntimeError(f"secantusd-py did not answer within {_STARTUP_SECONDS:.0f}s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`$STOCK_AI_TEST_MONGODB_URI`, else an in-memory secantusd-py server on a free loopback port."""
    if os.environ.get(URI_ENV):
        yield os.environ[URI_ENV]
        return
    binary = Path(sys.executable).parent / "secantusd-py"
    if not binary.is_file():
        pytest.fail(f"no MongoDB for tests: set {URI_ENV} or install the dev extras (secantusdb; no {binary})")
    workdir = tmp_path_factory.mktemp("secantusd")
    log = workdir / "server.log"
    port = free_port()
    uri = f"mongodb://127.0.0.1:{port}"
    # cwd is an empty temp dir so the server cannot pick up a stray ./secantusd.toml.
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:",
             "--log-level", "WARNING"],
            cwd=workdir, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_ping(uri, process, log)
        yield uri
    finally:
        _stop(process)


@pytest.fixture
def mongo_settings(mongo_uri: str) -> Iterator[MongoSettings]:
    """MongoSettings for a database of this test's own, dropped afterwards."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    yield MongoSettings(uri=SecretStr(mongo_uri), database=database, timeout_ms=5000, retries=1,
                        backoff_seconds=0.0)
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    with client:
        client.drop_database(database)
