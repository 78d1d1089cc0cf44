"""The deployment package: a real registry version round-trips, and hostile archives are refused by name."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models.base import LABEL, Forecaster
from models.catboost import CatBoostForecaster, CatBoostParams
from serving.package import PackageError, PackageTooLargeError, build_package, read_package
from stores.registry import LocalModelRegistry
from tests.models.test_contract import FEATURES, ar1_frame

SYMBOL = "VHM"
MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Packaged:
    """A registered model, the history it was packaged with, and the archive."""

    model: Forecaster
    version: int
    history: pl.DataFrame
    archive: Path


def feature_history(rows: int = 260, seed: int = 3) -> pl.DataFrame:
    """AR(1) feature rows in date order; the newest row has no label yet, like the feature store's `latest`."""
    frame = ar1_frame(rows=rows, seed=seed)
    return frame.with_columns(pl.when(pl.int_range(pl.len()) < rows - 1).then(pl.col(LABEL)).alias(LABEL))


def package_model(root: Path, history: pl.DataFrame, iterations: int, data_hash: str = "d" * 64) -> Packaged:
    """Fit a small CatBoost model, register it under `root/registry` and package it into `root`."""
    train, val = history.slice(0, 150), history.slice(151, 60)
    model = CatBoostForecaster(FEATURES, CatBoostParams(iterations=iterations, depth=3), horizon=1, seed=5)
    model.fit(train, val)
    entry = LocalModelRegistry(root / "registry").register(model, SYMBOL, metrics={}, data_hash=data_hash,
                                                           code_version="test", duration_seconds=0.0)
    archive = build_package(entry.path, history, symbol=SYMBOL, model_type="catboost", version=entry.version,
                            data_hash=data_hash, out=root)
    return Packaged(model, entry.version, history, archive)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    return package_model(tmp_path_factory.mktemp("package"), feature_history(), iterations=40)


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def make_archive(files: dict[str, bytes], extra: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    """A tar.gz of `files` plus raw header-only members (links, devices, directories)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_round_trip(packaged: Packaged, tmp_path: Path) -> None:
    assert packaged.archive.name == f"{SYMBOL}-catboost-v1.tar.gz"
    manifest = read_package(packaged.archive.read_bytes(), tmp_path / "out", MAX_BYTES)
    assert (manifest.format_version, manifest.symbol, manifest.model_type, manifest.version) == (1, SYMBOL,
                                                                                                 "catboost", 1)
    assert manifest.features == FEATURES and manifest.horizon == 1 and manifest.data_hash == "d" * 64
    assert set(manifest.files) == {"model/model.json", "model/model.cbm", "model/metadata.json", "features.parquet"}
    history = pl.read_parquet(tmp_path / "out" / "features.parquet")
    assert history.equals(packaged.history)
    loaded = Forecaster.load(tmp_path / "out" / "model")
    np.testing.assert_array_equal(loaded.predict(history), packaged.model.predict(history))


def test_build_refuses_bad_inputs(packaged: Packaged, tmp_path: Path) -> None:
    version_dir = packaged.archive.parent / "registry" / "catboost" / SYMBOL / "v1"
    kwargs = {"symbol": SYMBOL, "version": 1, "data_hash": "d", "out": tmp_path}
    with pytest.raises(PackageError, match="holds a catboost model, not arima"):
        build_package(version_dir, packaged.history, model_type="arima", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(PackageError, match="lacks column"):
        build_package(version_dir, packaged.history.drop("r1"), model_type="catboost", **kwargs)  # type: ignore[arg-type]
    altered = tmp_path / "altered"
    altered.mkdir()
    for path in version_dir.iterdir():
        (altered / path.name).write_bytes(path.read_bytes())
    (altered / "model.cbm").write_bytes(b"not a model")
    with pytest.raises(PackageError, match="altered since it was registered"):
        build_package(altered, packaged.history, model_type="catboost", **kwargs)  # type: ignore[arg-type]
    assert not list(tmp_path.glob("*.tar.gz"))


def _with_manifest(files: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    manifest = {**json.loads(files["manifest.json"]), **changes}
    return {**files, "manifest.json": json.dumps(manifest).encode()}


HOSTILE = {
    "traversal": (lambda f: make_archive({**f, "../x": b"x"}), "'..' in path"),
    "nested traversal": (lambda f: make_archive({**f, "model/../../x": b"x"}), "'..' in path"),
    "absolute path": (lambda f: make_archive({**f, "/tmp/x": b"x"}), "absolute path"),
    "symlink": (lambda f: make_archive(f, (special("model/link", tarfile.SYMTYPE, "/etc/passwd"),)), "links"),
    "hardlink": (lambda f: make_archive(f, (special("model/hard", tarfile.LNKTYPE, "model/model.json"),)), "links"),
    "device": (lambda f: make_archive(f, (special("model/dev", tarfile.CHRTYPE),)), "devices"),
    "unknown top level": (lambda f: make_archive({**f, "extra.txt": b"x"}), "not part of the package layout"),
    "unlisted file": (lambda f: make_archive({**f, "model/extra.bin": b"x"}), "not listed in the manifest"),
    "missing file": (lambda f: make_archive({k: v for k, v in f.items() if k != "features.parquet"}),
                     "'features.parquet': listed in the manifest but missing"),
    "tampered file": (lambda f: make_archive({**f, "model/model.cbm": f["model/model.cbm"] + b"\0"}),
                      "'model/model.cbm': sha256 mismatch"),
    "no manifest": (lambda f: make_archive({k: v for k, v in f.items() if k != "manifest.json"}),
                    "'manifest.json': missing"),
    "invalid symbol": (lambda f: make_archive(_with_manifest(f, symbol="../VHM")), "invalid symbol"),
    "unknown model type": (lambda f: make_archive(_with_manifest(f, model_type="pickle")), "unknown model type"),
    "not a tar.gz": (lambda f: b"\x1f\x8b garbage", "not a gzip-compressed tar archive"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_by_reason(packaged: Packaged, tmp_path: Path, case: str) -> None:
    build, reason = HOSTILE[case]
    dest = tmp_path / "out"
    with pytest.raises(PackageError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        read_package(build(members(packaged.archive)), dest, MAX_BYTES)
    assert not dest.exists() or not any(dest.iterdir())
    assert not (tmp_path / "x").exists()


def test_oversize_archives_are_refused(packaged: Packaged, tmp_path: Path) -> None:
    data = packaged.archive.read_bytes()
    with pytest.raises(PackageTooLargeError, match=f"{len(data)} bytes, over the limit of 1000"):
        read_package(data, tmp_path / "a", 1000)
    # Small on the wire, huge unpacked: refused before the big member is read.
    bomb = make_archive({**members(packaged.archive), "model/zeros.bin": bytes(4 * MAX_BYTES)})
    assert len(bomb) < MAX_BYTES
    with pytest.raises(PackageTooLargeError, match=r"'model/zeros\.bin': package unpacks to over"):
        read_package(bomb, tmp_path / "b", MAX_BYTES)
