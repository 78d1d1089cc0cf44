"""The Parquet feature store: one immutable, content-addressed snapshot per symbol and content.

Layout: `<root>/<SYMBOL>/<hash16>/all.parquet + manifest.json`, and `<root>/<SYMBOL>/manifest.json`, a copy of
the current snapshot's manifest. `all.parquet` holds every row with a `part` column (train / embargo / val / test /
latest); a split is that file filtered on it, without the column. Snapshots written before one file per snapshot
hold `{train,val,test,latest,all}.parquet` (their manifest lists the five files) and are read as they were
written. A snapshot is written into a temporary folder and renamed into place; the current manifest is replaced
atomically, so a reader never sees a half-written feature set and a failed write leaves the previous one intact.
`publish` moves the current manifest after checking the snapshot's files: a file whose size or modification time
differs from what the manifest recorded at writing is hashed and must match its sha256. Readers hash every file
they read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from schemas import FeatureSetRef, validate_symbol
from stores.files import atomic_write, sha256_file
from stores.io_errors import os_error_code

__all__ = ["PART", "SPLITS", "FeatureStore", "FeatureStoreError", "history_before", "read_manifest", "read_split",
           "stored_features"]

SPLITS = ("train", "val", "test", "latest", "all")
PART = "part"
"""the column of the stored frame that names each row's part (train / embargo / val / test / latest)."""
KEEP_SNAPSHOTS = 3


class FeatureStoreError(RuntimeError):
    """A feature set is missing, incomplete or altered."""


def _json(content: dict[str, Any]) -> str:
    return json.dumps(content, indent=2, sort_keys=True, default=str)


def read_manifest(ref: FeatureSetRef) -> dict[str, Any]:
    """The snapshot's manifest (feature list, row counts, hashes, watermark, reports)."""
    if not ref.manifest_path.is_file():
        raise FeatureStoreError(f"feature set manifest missing: {ref.manifest_path}")
    try:
        return dict(json.loads(ref.manifest_path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise FeatureStoreError(f"feature set manifest corrupt: {ref.manifest_path} ({exc})") from None


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` to `path`, a file system error raised as an OSError with its errno.

    polars raises OSError without an errno when it cannot create the file, and ComputeError when a write
    fails (a full disk): the errno tells a retry a full disk from a read-only store.
    """
    try:
        # lz4: a quarter faster to write than zstd, for files about a sixth larger
        frame.write_parquet(path, compression="lz4", statistics=True)
    except (OSError, pl.exceptions.PolarsError) as error:
        code = os_error_code(error)
        if code is None or getattr(error, "errno", None) == code:
            raise
        raise OSError(code, os.strerror(code), str(path)) from error


def _files(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The snapshot's files: `all` alone, or one per split in a snapshot written before one file per snapshot."""
    return SPLITS if "train" in manifest["files"] else ("all",)


def _checked(ref: FeatureSetRef, name: str, manifest: dict[str, Any], *, quick: bool = False) -> Path:
    """The path of the snapshot's file `name`, after checking its sha256 against the manifest.

    `quick` trusts a file whose size and modification time are still those the manifest recorded when it was
    written (any write to the file changes them); a file that differs in either is hashed.
    """
    path = ref.split_path(name)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FeatureStoreError(f"feature file missing: {path}") from None
    recorded = manifest["files"][name]
    if quick and (stat.st_size, stat.st_mtime_ns) == (recorded.get("bytes"), recorded.get("mtime_ns")):
        return path
    if sha256_file(path) != recorded["sha256"]:
        raise FeatureStoreError(f"feature file altered since it was stored (sha256 mismatch): {path}")
    return path


def read_split(ref: FeatureSetRef, split: str, columns: Collection[str] | None = None) -> pl.DataFrame:
    """Read one part of a snapshot (a split: the rows of `all` in that part, without the part column) after checking
    the sha256 of the file read against the manifest; `columns`: only those of them the part has (a symbol may lack
    a feature a universe model reads), in the order given."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    manifest = read_manifest(ref)
    source = split if split in _files(manifest) else "all"
    path = _checked(ref, source, manifest)
    if source == split and columns is None:
        return pl.read_parquet(path)
    import polars.selectors as cs

    frame = pl.scan_parquet(path)
    if source != split:  # lazy: reads the columns asked for, and skips row groups whose statistics exclude the part
        frame = frame.filter(pl.col(PART) == split).drop(PART)
    return frame.collect() if columns is None else frame.select(cs.by_name(list(columns), require_all=False)).collect()


def stored_features(ref: FeatureSetRef) -> tuple[str, ...]:
    """Every feature column the snapshot holds: the symbol's own selection (`ref.features`) and the other
    engineered features, which universe models select from."""
    extra = read_manifest(ref).get("engineered_features") or ()
    return tuple(dict.fromkeys([*ref.features, *extra]))


def history_before(ref: FeatureSetRef, frame: pl.DataFrame, columns: Collection[str] | None = None) -> pl.DataFrame:
    """Every stored row (embargo rows included) dated before `frame`'s first row: a model's context (`columns`:
    only those, as read_split)."""
    return read_split(ref, "all", columns).filter(pl.col("date") < frame["date"].min())


class FeatureStore:
    """Writes and reads per-symbol feature snapshots under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:  # stable: task cache keys include it
        return f"FeatureStore({str(self.root)!r})"

    def write(self, symbol: str, frame: pl.DataFrame, features: tuple[str, ...], label: str,
              metadata: dict[str, Any], *, publish: bool = True) -> FeatureSetRef:
        """Store `frame` (every row, with its PART column) as a snapshot; make it the current one if `publish`."""
        symbol_dir = self.root / validate_symbol(symbol)
        counts = dict(frame.group_by(PART).len().iter_rows())
        rows = {name: counts.get(name, 0) for name in SPLITS[:-1]} | {"all": frame.height}
        symbol_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=symbol_dir, prefix=".tmp-"))
        try:
            path = tmp / "all.parquet"
            _write_parquet(frame, path)
            stat = path.stat()
            files = {"all": {"sha256": sha256_file(path), "rows": frame.height, "bytes": stat.st_size,
                             "mtime_ns": stat.st_mtime_ns}}
            # The file holds every engineered feature; the symbol's own selection is part of the content too.
            content_hash = hashlib.sha256(json.dumps(
                {"files": {n: f["sha256"] for n, f in files.items()}, "features": list(features)}, sort_keys=True
            ).encode()).hexdigest()
            snapshot = symbol_dir / content_hash[:16]
            manifest = {
                "symbol": symbol,
                "snapshot": snapshot.name,
                "content_hash": content_hash,
                "created_at": datetime.now(UTC).isoformat(),
                "features": list(features),
                "label": label,
                "rows": rows,
                "files": files,
                **metadata,
            }
            if self._intact(self._ref(snapshot / "manifest.json", manifest)):
                shutil.rmtree(tmp)  # identical content was stored before: keep it, drop the copy
                stored = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
                if stored.get("input_key") != manifest.get("input_key"):  # same content from new inputs
                    stored["input_key"] = manifest.get("input_key")
                    atomic_write(snapshot / "manifest.json", _json(stored))
                manifest = stored
            else:
                atomic_write(tmp / "manifest.json", _json(manifest))
                if snapshot.exists():  # damaged since it was stored (files deleted or altered): replace it
                    shutil.rmtree(snapshot)
                os.rename(tmp, snapshot)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        ref = self._ref(snapshot / "manifest.json", manifest)
        if publish:
            self.publish(ref)
        self._prune(symbol_dir, keep=snapshot.name)
        return ref

    def check(self, ref: FeatureSetRef, *, quick: bool = False) -> None:
        """Raise FeatureStoreError unless the snapshot's manifest and every file are there, unaltered.

        `quick`: hash only the files whose size or modification time changed since they were written (readers
        always hash what they read)."""
        manifest = read_manifest(ref)
        if manifest.get("content_hash") != ref.content_hash:
            raise FeatureStoreError(f"feature set manifest altered (content hash differs): {ref.manifest_path}")
        for name in _files(manifest):
            _checked(ref, name, manifest, quick=quick)

    def _intact(self, ref: FeatureSetRef) -> bool:
        try:
            self.check(ref)
        except FeatureStoreError:
            return False
        return True

    def publish(self, ref: FeatureSetRef) -> FeatureSetRef:
        """Make the intact snapshot `ref` its symbol's current one (atomically) and return it (checked quickly:
        see `check`)."""
        self.check(ref, quick=True)
        os.utime(ref.directory)  # just used: the last to be pruned
        atomic_write(self.root / validate_symbol(ref.symbol) / "manifest.json",
                     ref.manifest_path.read_text(encoding="utf-8"))
        return ref

    def has(self, symbol: str) -> bool:
        """Whether `symbol` has a current snapshot."""
        return (self.root / validate_symbol(symbol) / "manifest.json").is_file()

    def current(self, symbol: str) -> FeatureSetRef:
        """The reference to `symbol`'s current snapshot."""
        path = self.root / validate_symbol(symbol) / "manifest.json"
        if not path.is_file():
            raise FeatureStoreError(f"no feature set for {symbol} under {self.root}: run the data pipeline first")
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return self._ref(path.parent / manifest["snapshot"] / "manifest.json", manifest)

    def snapshots(self, symbol: str) -> list[FeatureSetRef]:
        """References to `symbol`'s stored snapshots, the most recently used first (unchecked)."""
        symbol_dir = self.root / validate_symbol(symbol)
        if not symbol_dir.is_dir():
            return []
        refs = []
        for directory in sorted((p for p in symbol_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                                key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
                refs.append(self._ref(directory / "manifest.json", manifest))
            except (OSError, ValueError, KeyError):
                continue
        return refs

    def manifest(self, ref: FeatureSetRef) -> dict[str, Any]:
        """The snapshot's manifest (see read_manifest)."""
        return read_manifest(ref)

    def read(self, ref: FeatureSetRef, split: str) -> pl.DataFrame:
        """Read one part of a snapshot (see read_split)."""
        return read_split(ref, split)

    @staticmethod
    def _ref(manifest_path: Path, manifest: dict[str, Any]) -> FeatureSetRef:
        return FeatureSetRef(symbol=manifest["symbol"], manifest_path=manifest_path,
                             content_hash=manifest["content_hash"], features=tuple(manifest["features"]),
                             label=manifest["label"], rows=dict(manifest["rows"]))

    @staticmethod
    def _prune(symbol_dir: Path, keep: str) -> None:
        """Remove all but the newest snapshots; never `keep` nor the current one."""
        kept = {keep}
        try:
            kept.add(json.loads((symbol_dir / "manifest.json").read_text(encoding="utf-8"))["snapshot"])
        except (OSError, ValueError, KeyError):
            pass  # no readable current snapshot to spare
        snapshots = sorted((p for p in symbol_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                           key=lambda p: p.stat().st_mtime, reverse=True)
        for old in [p for p in snapshots if p.name not in kept][KEEP_SNAPSHOTS - len(kept):]:
            shutil.rmtree(old, ignore_errors=True)
