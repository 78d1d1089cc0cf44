"""Which file errors a retry may heal: a full disk or an I/O error may; a read-only, forbidden or missing
folder will not."""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import polars as pl
import pytest

from stores.features import FeatureStore
from stores.io_errors import PERMANENT_ERRNOS, os_error_code, transient_file_error, transient_os_error

PERMANENT = ["EROFS", "EACCES", "EPERM", "ENODEV", "ENXIO", "ENOENT", "ENOTDIR", "EISDIR", "EEXIST", "ENAMETOOLONG",
             "ELOOP", "EINVAL", "EXDEV"]
TRANSIENT = ["ENOSPC", "EDQUOT", "EIO", "EAGAIN", "EINTR", "EBUSY", "ETIMEDOUT", "ESTALE", "ENOLCK", "EMFILE",
             "ENOTEMPTY"]


def os_error(name: str) -> OSError:
    """The OSError the system raises for errno `name` (Python picks the subclass: PermissionError for EACCES)."""
    code = getattr(errno, name)
    return OSError(code, os.strerror(code), "/features/VHM")


@pytest.mark.parametrize("name", PERMANENT)
def test_a_permanent_file_system_error_is_not_retried(name: str) -> None:
    assert not transient_os_error(os_error(name)) and not transient_file_error(os_error(name))


@pytest.mark.parametrize("name", TRANSIENT)
def test_a_full_disk_and_passing_errors_are_retried(name: str) -> None:
    assert transient_os_error(os_error(name)) and transient_file_error(os_error(name))


def test_the_lists_do_not_overlap() -> None:
    assert not PERMANENT_ERRNOS & {getattr(errno, name) for name in TRANSIENT}


@pytest.mark.parametrize(("message", "transient"), [
    ("Read-only file system (os error 30): /features/VHM/.tmp-1/all.parquet", False),
    ("Permission denied (os error 13): /features/VHM/.tmp-1/all.parquet", False),
    ("No space left on device (os error 28): /features/VHM/.tmp-1/all.parquet", True),
])
def test_an_errno_named_only_in_the_message_counts(message: str, transient: bool) -> None:
    """polars raises OSError(message) without an errno; Rust's message names it."""
    assert OSError(message).errno is None
    assert transient_os_error(OSError(message)) is transient


def test_an_error_without_errno_is_judged_by_its_type() -> None:
    assert not transient_os_error(PermissionError("Permission denied"))
    assert not transient_os_error(FileNotFoundError("No such file or directory"))
    assert transient_os_error(OSError("the network file system went away"))  # unknown: retried, at most 30 s


def test_other_errors_are_not_a_file_system_fault() -> None:
    assert not transient_file_error(ValueError("sha256 mismatch"))
    assert not transient_file_error(RuntimeError("No space left on device"))


def sqlite_error(statements: list[str], database: str = ":memory:") -> sqlite3.Error:
    """The error SQLite raises opening `database` or running the last of `statements`."""
    try:
        with closing(sqlite3.connect(database, uri=database.startswith("file:"))) as conn:
            for statement in statements:
                conn.execute(statement)
    except sqlite3.Error as error:
        return error
    raise AssertionError("no error")


def test_a_full_history_database_is_retried_a_read_only_one_is_not(tmp_path: Path) -> None:
    full = sqlite_error(["CREATE TABLE t (x)", "PRAGMA max_page_count = 2", "INSERT INTO t VALUES (zeroblob(100000))"])
    assert full.sqlite_errorname == "SQLITE_FULL" and transient_file_error(full)
    path = tmp_path / "history.sqlite"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
    read_only = sqlite_error(["INSERT INTO t VALUES (1)"], f"file:{path}?mode=ro")
    assert read_only.sqlite_errorname == "SQLITE_READONLY" and not transient_file_error(read_only)
    folder = sqlite_error(["CREATE TABLE t (x)"], str(tmp_path))  # a folder where the file belongs
    assert folder.sqlite_errorname == "SQLITE_CANTOPEN" and not transient_file_error(folder)
    locked = sqlite3.OperationalError("database is locked")
    assert not transient_file_error(locked)  # raised after the history's busy timeout was waited out


def parts() -> pl.DataFrame:
    return pl.DataFrame({"x": [1.0, 2.0], "label": [0.1, None], "part": ["train", "latest"]})


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
def test_the_feature_store_raises_a_full_disk_met_by_polars_as_os_error_enospc(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """polars reports a write that fails part-way as ComputeError, naming the errno in its message only."""
    write = pl.DataFrame.write_parquet
    monkeypatch.setattr(pl.DataFrame, "write_parquet", lambda self, path, **kw: write(self, "/dev/full", **kw))
    with pytest.raises(OSError) as raised:
        FeatureStore(tmp_path).write("VHM", parts(), ("x",), "label", {})
    assert raised.value.errno == errno.ENOSPC and transient_file_error(raised.value)
    assert isinstance(raised.value.__cause__, pl.exceptions.ComputeError)
    assert not list((tmp_path / "VHM").iterdir())  # the half-written snapshot is removed


def test_the_feature_store_gives_polars_errors_their_errno(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(self: pl.DataFrame, path: Path, **_: object) -> None:
        raise OSError(f"Read-only file system (os error 30): {path}")  # as polars raises it

    monkeypatch.setattr(pl.DataFrame, "write_parquet", read_only)
    with pytest.raises(OSError) as raised:
        FeatureStore(tmp_path).write("VHM", parts(), ("x",), "label", {})
    assert raised.value.errno == errno.EROFS and os_error_code(raised.value) == errno.EROFS
    assert not transient_file_error(raised.value)
