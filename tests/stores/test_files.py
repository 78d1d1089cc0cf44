"""atomic_write and atomic_writer: readers see the old or the new file, and the new one has the mode open() would
give it."""

from __future__ import annotations

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
