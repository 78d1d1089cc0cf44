from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from schemas import FeatureSetRef
from stores.features import FeatureStore, FeatureStoreError, read_split
from stores.files import sha256_file

PARTS = ["train"] * 6 + ["embargo"] + ["val"] * 2 + ["embargo"] + ["test"] * 2 + ["latest"]


def parts(offset: float = 0.0) -> pl.DataFrame:
    """Every row of a feature set with its part column: 6 train, 2 val, 2 test, 1 latest, 2 embargo."""
    n = len(PARTS)
    return pl.DataFrame({"date": [date(2024, 1, 1 + i) for i in range(n)], "x": [float(i) + offset for i in range(n)],
                         "label": [0.1] * (n - 1) + [None], "part": PARTS})


def part(name: str, offset: float = 0.0) -> pl.DataFrame:
    """The rows of one part as the store returns them: in order, without the part column."""
    return parts(offset).filter(pl.col("part") == name).drop("part")


def test_round_trip_and_current(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ref = store.write("VCB", parts(), ("x",), "label", {"horizon": 1})
    assert ref.rows == {"train": 6, "val": 2, "test": 2, "latest": 1, "all": 13}
    assert store.read(ref, "train").equals(part("train"))
    assert store.current("VCB") == ref
    assert store.manifest(ref)["horizon"] == 1
    assert sorted(p.name for p in ref.directory.iterdir()) == ["all.parquet", "manifest.json"]  # one file


def test_a_split_is_the_one_file_filtered_on_its_part(tmp_path: Path) -> None:
    ref = FeatureStore(tmp_path).write("VCB", parts(), ("x",), "label", {})
    for name in ("train", "val", "test", "latest"):
        read = read_split(ref, name)
        assert read.equals(part(name)) and read.schema == part(name).schema
        # `columns`: those the part has, in the order given; the part column is not one of them
        assert read_split(ref, name, ["label", "part", "nope", "date"]).equals(part(name).select("label", "date"))
    assert read_split(ref, "all").equals(parts())
    assert read_split(ref, "all", ["part", "x", "nope"]).equals(parts().select("part", "x"))


def test_same_content_same_snapshot_new_content_new_snapshot(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first = store.write("VCB", parts(), ("x",), "label", {})
    again = store.write("VCB", parts(), ("x",), "label", {})
    changed = store.write("VCB", parts(1.0), ("x",), "label", {})
    assert first.manifest_path == again.manifest_path
    assert changed.content_hash != first.content_hash
    assert store.current("VCB") == changed
    assert store.read(first, "val").equals(part("val"))  # the older snapshot stays readable


def test_altered_or_missing_file_is_named(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ref = store.write("VCB", parts(), ("x",), "label", {})
    pl.DataFrame({"x": [9.0]}).write_parquet(ref.split_path("all"))
    with pytest.raises(FeatureStoreError, match=r"sha256 mismatch.*all.parquet"):
        store.read(ref, "test")
    ref.split_path("all").unlink()
    with pytest.raises(FeatureStoreError, match=r"missing.*all.parquet"):
        store.read(ref, "val")


def test_failed_write_leaves_the_current_set_intact(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    good = store.write("VCB", parts(), ("x",), "label", {})
    broken = parts(2.0).with_columns(pl.Series("o", [object()] * len(PARTS), dtype=pl.Object))  # no Parquet type
    with pytest.raises(pl.exceptions.ComputeError):
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
    pl.DataFrame({"x": [9.0]}).write_parquet(ref.split_path("all"))
    assert store.write("VCB", parts(), ("x",), "label", {}) == ref
    store.check(ref)
    ref.split_path("all").unlink()
    assert store.write("VCB", parts(), ("x",), "label", {}) == ref
    store.check(ref)
    assert store.read(ref, "test").equals(part("test"))


def test_quick_check_hashes_every_file_written_since_the_snapshot(tmp_path: Path) -> None:
    import os

    store = FeatureStore(tmp_path)
    ref = store.write("VCB", parts(), ("x",), "label", {}, publish=False)
    store.check(ref, quick=True)  # untouched since written: size and mtime as recorded
    path = ref.split_path("all")
    pl.DataFrame({"x": [7.0, 8.0]}).write_parquet(path)  # rewritten: the time changes, so it is hashed
    with pytest.raises(FeatureStoreError, match=r"sha256 mismatch.*all.parquet"):
        store.check(ref, quick=True)
    with pytest.raises(FeatureStoreError, match=r"all.parquet"):
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


def five_file_snapshot(root: Path) -> FeatureSetRef:
    """A current snapshot as the store wrote it before one file per snapshot: a Parquet file per split."""
    directory = root / "VCB" / "00c0ffee00c0ffee"
    directory.mkdir(parents=True)
    files = {}
    for name in ("train", "val", "test", "latest", "all"):
        path = directory / f"{name}.parquet"
        frame = parts() if name == "all" else part(name)
        frame.write_parquet(path, compression="lz4", statistics=True)
        stat = path.stat()
        files[name] = {"sha256": sha256_file(path), "rows": frame.height, "bytes": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns}
    manifest = {"symbol": "VCB", "snapshot": directory.name, "content_hash": "00c0ffee" * 8, "features": ["x"],
                "label": "label", "rows": {n: f["rows"] for n, f in files.items()}, "files": files}
    for path in (directory / "manifest.json", root / "VCB" / "manifest.json"):
        path.write_text(json.dumps(manifest))
    return FeatureStore(root).current("VCB")


def test_a_snapshot_of_five_files_is_read_and_checked_as_written(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ref = five_file_snapshot(tmp_path)
    assert ref.rows == {"train": 6, "val": 2, "test": 2, "latest": 1, "all": 13}
    for name in ("train", "val", "test", "latest"):
        assert read_split(ref, name).equals(part(name))
        assert read_split(ref, name, ["label", "part", "nope"]).equals(part(name).select("label"))
    assert read_split(ref, "all").equals(parts())
    store.check(ref)
    assert store.publish(ref) == ref
    path = ref.split_path("val")
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF  # each split is checked against its own file's sha256
    path.write_bytes(bytes(content))
    assert read_split(ref, "test").equals(part("test"))
    with pytest.raises(FeatureStoreError, match=r"sha256 mismatch.*val.parquet"):
        read_split(ref, "val")
    with pytest.raises(FeatureStoreError, match=r"sha256 mismatch.*val.parquet"):
        store.check(ref)
    ref.split_path("train").unlink()
    with pytest.raises(FeatureStoreError, match=r"missing.*train.parquet"):
        read_split(ref, "train")
