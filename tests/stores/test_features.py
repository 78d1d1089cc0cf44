from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from stores.features import FeatureStore, FeatureStoreError


def parts(offset: float = 0.0) -> dict[str, pl.DataFrame]:
    return {name: pl.DataFrame({"x": [float(i) + offset for i in range(n)], "label": [0.1] * n})
            for name, n in (("train", 6), ("val", 2), ("test", 2), ("latest", 1), ("all", 11))}


def test_round_trip_and_current(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ref = store.write("VCB", parts(), ("x",), "label", {"horizon": 1})
    assert ref.rows == {"train": 6, "val": 2, "test": 2, "latest": 1, "all": 11}
    assert store.read(ref, "train").equals(parts()["train"])
    assert store.current("VCB") == ref
    assert store.manifest(ref)["horizon"] == 1


def test_same_content_same_snapshot_new_content_new_snapshot(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first = store.write("VCB", parts(), ("x",), "label", {})
    again = store.write("VCB", parts(), ("x",), "label", {})
    changed = store.write("VCB", parts(1.0), ("x",), "label", {})
    assert first.manifest_path == again.manifest_path
    assert changed.content_hash != first.content_hash
    assert store.current("VCB") == changed
    assert store.read(first, "val").equals(parts()["val"])  # the older snapshot stays readable


def test_altered_or_missing_file_is_named(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ref = store.write("VCB", parts(), ("x",), "label", {})
    pl.DataFrame({"x": [9.0]}).write_parquet(ref.split_path("test"))
    with pytest.raises(FeatureStoreError, match=r"test.parquet"):
        store.read(ref, "test")
    ref.split_path("val").unlink()
    with pytest.raises(FeatureStoreError, match=r"missing.*val.parquet"):
        store.read(ref, "val")


def test_failed_write_leaves_the_current_set_intact(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    good = store.write("VCB", parts(), ("x",), "label", {})
    broken = parts(2.0)
    del broken["latest"]
    with pytest.raises(KeyError):
        store.write("VCB", broken, ("x",), "label", {})
    assert store.current("VCB") == good
    assert not [p for p in (tmp_path / "VCB").iterdir() if p.name.startswith(".tmp")]
    assert json.loads((tmp_path / "VCB" / "manifest.json").read_text())["content_hash"] == good.content_hash


def test_invalid_symbol_never_becomes_a_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"invalid symbol '../x'"):
        FeatureStore(tmp_path / "fs").write("../x", parts(), ("x",), "label", {})
    assert not (tmp_path / "x").exists()
    with pytest.raises(FeatureStoreError, match=r"no feature set for VHM"):
        FeatureStore(tmp_path).current("VHM")


def test_check_names_a_missing_or_altered_snapshot(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ref = store.write("VCB", parts(), ("x",), "label", {})
    store.check(ref)
    pl.DataFrame({"x": [9.0]}).write_parquet(ref.split_path("all"))
    with pytest.raises(FeatureStoreError, match=r"sha256 mismatch.*all.parquet"):
        store.check(ref)
    shutil.rmtree(tmp_path / "VCB")
    with pytest.raises(FeatureStoreError, match=r"manifest missing"):
        store.publish(ref)


def test_write_without_publish_leaves_current_until_published(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first = store.write("VCB", parts(), ("x",), "label", {})
    second = store.write("VCB", parts(1.0), ("x",), "label", {}, publish=False)
    assert store.current("VCB") == first
    assert store.publish(second) == second and store.current("VCB") == second
    assert store.publish(first) == first and store.current("VCB") == first


def test_pruning_never_removes_the_current_snapshot(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    current = store.write("VCB", parts(), ("x",), "label", {})
    for offset in (1.0, 2.0, 3.0, 4.0):
        store.write("VCB", parts(offset), ("x",), "label", {}, publish=False)
    assert store.current("VCB") == current
    store.check(current)


def test_writing_again_repairs_a_damaged_snapshot(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ref = store.write("VCB", parts(), ("x",), "label", {})
    pl.DataFrame({"x": [9.0]}).write_parquet(ref.split_path("test"))
    ref.split_path("val").unlink()
    assert store.write("VCB", parts(), ("x",), "label", {}) == ref
    store.check(ref)
    assert store.read(ref, "test").equals(parts()["test"])


def test_quick_check_hashes_every_file_written_since_the_snapshot(tmp_path: Path) -> None:
    import os

    store = FeatureStore(tmp_path)
    ref = store.write("VCB", parts(), ("x",), "label", {}, publish=False)
    store.check(ref, quick=True)  # untouched since written: size and mtime as recorded
    path = ref.split_path("val")
    pl.DataFrame({"x": [7.0, 8.0]}).write_parquet(path)  # rewritten: the time changes, so it is hashed
    with pytest.raises(FeatureStoreError, match=r"sha256 mismatch.*val.parquet"):
        store.check(ref, quick=True)
    with pytest.raises(FeatureStoreError, match=r"val.parquet"):
        store.publish(ref)
    # Same bytes back, same recorded time: trusted without hashing; a reader still hashes what it reads.
    store.write("VCB", parts(), ("x",), "label", {}, publish=False)  # repairs the damaged snapshot
    stat = path.stat()
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF  # a flipped byte, same size, time put back
    path.write_bytes(bytes(content))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    store.check(ref, quick=True)
    with pytest.raises(FeatureStoreError, match=r"sha256 mismatch"):
        store.check(ref)
    with pytest.raises(FeatureStoreError, match=r"sha256 mismatch"):
        store.read(ref, "val")
