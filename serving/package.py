"""The deployment package: one `.tar.gz` holding a registry version, its feature history and a manifest.

Layout: `manifest.json` (what the package is, plus the sha256 of every other member), `model/<files of
the registry version>` and `features.parquet` (feature rows in date order: the server's context and the
source of "latest"); for a cross-sectional pooled model whose own per-date statistics end before the feature
rows do, `cross_section.parquet` holds those of the later dates (the server extends the model with them).
No pickles: the model files are the Forecaster's own formats. `read_package` trusts nothing in the archive
until every member has been checked.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.base import MODEL_FILE, ModelError
from models.pooled import is_pooled, symbol_features
from schemas import validate_symbol
from stores.files import atomic_writer

__all__ = [
    "EXTRA_CROSS_SECTION_FILE",
    "FEATURES_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_DIR",
    "PackageError",
    "PackageManifest",
    "PackageTooLargeError",
    "build_package",
    "read_package",
]

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
FEATURES_FILE = "features.parquet"
EXTRA_CROSS_SECTION_FILE = "cross_section.parquet"
MODEL_DIR = "model"
MAX_MEMBERS = 1000
_SHA256 = r"^[0-9a-f]{64}$"


class PackageError(ValueError):
    """A package cannot be built or is not acceptable; the message names the reason and the member."""


class PackageTooLargeError(PackageError):
    """The archive, or what it unpacks to, is larger than allowed."""


class PackageManifest(BaseModel):
    """What a package holds: `manifest.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1]
    symbol: str
    model_type: str
    version: int = Field(ge=1)
    """registry version number of the model."""
    data_hash: str
    """content hash of the feature set the model was trained on."""
    features: tuple[str, ...] = Field(min_length=1)
    horizon: int = Field(ge=1)
    created_at: datetime
    files: dict[str, str]
    """archive path -> sha256 of every member except the manifest."""

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        return validate_symbol(value)

    @field_validator("model_type")
    @classmethod
    def _model_type(cls, value: str) -> str:
        from models.registry import MODEL_CLASSES

        if value not in MODEL_CLASSES:
            raise ValueError(f"unknown model type {value!r}")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            _check_name(name)
            if not re.match(_SHA256, digest):
                raise ValueError(f"{name}: not a sha256 hex digest")
        for required in (f"{MODEL_DIR}/{MODEL_FILE}", FEATURES_FILE):
            if required not in value:
                raise ValueError(f"does not list {required}")
        return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(name: str) -> PurePosixPath:
    """A member name that can only land inside the package folder: relative, no `..`, known top level."""
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute():
        raise PackageError(f"member {name!r}: absolute path")
    if ".." in path.parts:
        raise PackageError(f"member {name!r}: '..' in path")
    if "\\" in name or "\x00" in name or not path.parts or path.parts[0] == ".":
        raise PackageError(f"member {name!r}: unsupported characters or empty path")
    if path.parts[0] not in (MANIFEST_FILE, FEATURES_FILE, EXTRA_CROSS_SECTION_FILE, MODEL_DIR) or (
            path.parts[0] != MODEL_DIR and len(path.parts) > 1):
        raise PackageError(f"member {name!r}: not part of the package layout")
    return path


# -- building ---------------------------------------------------------------------------------------
def build_package(version_dir: Path, history: pl.DataFrame, *, symbol: str, model_type: str, version: int,
                  data_hash: str, out: Path, cross_section: pl.DataFrame | None = None) -> Path:
    """Write a package of the registry version in `version_dir` and its feature `history`.

    Args:
        version_dir: `<registry>/<type>/<SYMBOL>/v<N>/` (model files + metadata.json).
        history: feature rows with a `date` column (and the label where known); sorted here by date.
        out: the archive path, or an existing folder to write `<SYMBOL>-<type>-v<N>.tar.gz` into.
        cross_section: a cross-sectional pooled model's statistics of dates after its own (CrossSection.stats).

    Returns:
        The archive's path.
    """
    validate_symbol(symbol)
    description = _model_description(version_dir)
    if description.get("model_type") != model_type:
        raise PackageError(f"{version_dir}: holds a {description.get('model_type')} model, not {model_type}")
    try:  # a pooled model serves many symbols: the package carries what this one reads
        features = symbol_features(description, symbol) if is_pooled(model_type) else [
            str(f) for f in description["features"]]
    except ModelError as exc:
        raise PackageError(f"{version_dir}: {exc}") from None
    missing = [c for c in ("date", *features) if c not in history.columns]
    if missing:
        raise PackageError(f"history lacks column(s) {', '.join(missing)}")
    history = history.sort("date")
    if history.height == 0 or history["date"].n_unique() != history.height:
        raise PackageError("history must hold at least one row and unique dates")

    members: dict[str, bytes] = {}
    for path in sorted(version_dir.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise PackageError(f"{path}: only regular files may be packaged")
        if path.is_file():
            members[f"{MODEL_DIR}/{path.relative_to(version_dir).as_posix()}"] = path.read_bytes()
    _check_registry_hashes(version_dir, members)
    buffer = io.BytesIO()
    history.write_parquet(buffer, compression="zstd", statistics=True)
    members[FEATURES_FILE] = buffer.getvalue()
    if cross_section is not None:
        buffer = io.BytesIO()
        cross_section.write_parquet(buffer)
        members[EXTRA_CROSS_SECTION_FILE] = buffer.getvalue()

    manifest = PackageManifest(
        format_version=FORMAT_VERSION, symbol=symbol, model_type=model_type, version=version,
        data_hash=data_hash, features=tuple(features), horizon=int(description["horizon"]),
        created_at=datetime.now(UTC), files={name: _sha256(data) for name, data in members.items()})
    archive = out / f"{symbol}-{model_type}-v{version}.tar.gz" if out.is_dir() else out
    archive.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(archive) as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
        _add(tar, MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
        for name, data in members.items():
            _add(tar, name, data)
    return archive


def _model_description(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MODEL_FILE
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"model file missing: {path}") from None
    except ValueError as exc:
        raise PackageError(f"model file corrupt: {path} ({exc})") from None
    if not isinstance(description, dict) or not description.get("features") or "horizon" not in description:
        raise PackageError(f"model file lacks features or horizon: {path}")
    return description


def _check_registry_hashes(version_dir: Path, members: dict[str, bytes]) -> None:
    """Refuse to package a registry version whose files changed after it was registered."""
    metadata = version_dir / "metadata.json"
    if not metadata.is_file():
        return
    recorded = json.loads(metadata.read_text(encoding="utf-8")).get("files", {})
    for name, digest in recorded.items():
        data = members.get(f"{MODEL_DIR}/{name}")
        if data is None or _sha256(data) != digest:
            raise PackageError(f"{version_dir / name}: missing or altered since it was registered")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


# -- reading ----------------------------------------------------------------------------------------
def read_package(data: bytes, dest: Path, max_bytes: int) -> PackageManifest:
    """Check the archive `data` member by member, then write it into `dest` (created; must be empty)."""
    if len(data) > max_bytes:
        raise PackageTooLargeError(f"package is {len(data)} bytes, over the limit of {max_bytes}")
    contents = _read_members(data, max_bytes)
    raw_manifest = contents.pop(MANIFEST_FILE, None)
    if raw_manifest is None:
        raise PackageError(f"member {MANIFEST_FILE!r}: missing")
    try:
        manifest = PackageManifest.model_validate_json(raw_manifest)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}"
                            for e in exc.errors())
        raise PackageError(f"member {MANIFEST_FILE!r}: invalid ({reasons})") from None
    unlisted = sorted(set(contents) - set(manifest.files))
    if unlisted:
        raise PackageError(f"member {unlisted[0]!r}: not listed in the manifest")
    for name, digest in manifest.files.items():
        if name not in contents:
            raise PackageError(f"member {name!r}: listed in the manifest but missing")
        if _sha256(contents[name]) != digest:
            raise PackageError(f"member {name!r}: sha256 mismatch")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise PackageError(f"destination {dest.name} is not empty")
    for name, content in {MANIFEST_FILE: raw_manifest, **contents}.items():
        target = dest.joinpath(*PurePosixPath(name).parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:  # "x": never follow or overwrite anything already there
                handle.write(content)
        except OSError as exc:  # e.g. both `model/a` and `model/a/b` as files
            raise PackageError(f"member {name!r}: cannot be written ({exc.strerror})") from None
    return manifest


def _read_members(data: bytes, max_bytes: int) -> dict[str, bytes]:
    """Every regular file's bytes by name, after checking names, types and the unpacked size."""
    contents: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            # Headers are read one at a time, so limits apply before a hostile member is unpacked.
            while (member := tar.next()) is not None:
                name = member.name
                _check_name(name)
                if member.issym() or member.islnk():
                    raise PackageError(f"member {name!r}: links are not allowed")
                if member.isdir():
                    if PurePosixPath(name).parts[0] != MODEL_DIR:
                        raise PackageError(f"member {name!r}: unexpected directory")
                    continue
                if not member.isreg():
                    raise PackageError(f"member {name!r}: devices and special files are not allowed")
                if PurePosixPath(name).parts == (MODEL_DIR,):
                    raise PackageError(f"member {name!r}: must be a directory")
                key = PurePosixPath(name).as_posix()
                if key in contents:
                    raise PackageError(f"member {name!r}: appears twice")
                total += member.size
                if total > max_bytes:
                    raise PackageTooLargeError(f"member {name!r}: package unpacks to over {max_bytes} bytes")
                if len(contents) >= MAX_MEMBERS:
                    raise PackageError(f"member {name!r}: more than {MAX_MEMBERS} files")
                handle = tar.extractfile(member)
                if handle is None:
                    raise PackageError(f"member {name!r}: unreadable")
                contents[key] = handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise PackageError(f"not a gzip-compressed tar archive: {exc}") from None
    return contents
