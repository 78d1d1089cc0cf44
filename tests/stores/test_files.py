"""atomic_write and atomic_writer: readers see the old or the new file, and the new one has the mode open() would
give it."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from stores.files import atomic_write, atomic_writer


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_new_files_follow_the_umask_like_open(tmp_path: Path) -> None:
    atomic_write(tmp_path / "report.json", "{}")
    (tmp_path / "plain.json").write_text("{}")

    mode = stat.S_IMODE((tmp_path / "report.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o644


def test_replaces_the_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write(target, "old")
    atomic_write(target, b"new")

    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write(target, "old")

    with pytest.raises(TypeError):
        atomic_write(target, 42)  # type: ignore[arg-type]

    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_streamed_write_replaces_the_file_only_when_its_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write(target, "old")

    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]

    with atomic_writer(target) as handle:
        handle.write(b"new")
        assert target.read_text() == "old"
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_names_the_file_and_leaves_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              failing: str) -> None:
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, full)
    with pytest.raises(OSError) as error:
        atomic_write(target, "new")

    assert str(error.value) == f"[Errno 28] No space left on device: '{target}'"
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(target)
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_refused_write_keeps_its_error_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OSError) as error:
        atomic_write(tmp_path / "aliases.json", "{}")

    assert error.value.errno == errno.EROFS and error.value.filename == str(tmp_path / "aliases.json")
