"""The model registry: immutable, atomically numbered versions per (model type, symbol), plus aliases.

Layout: `<root>/<model_type>/<SYMBOL>/v<N>/` holding the model files and `metadata.json`, and
`<root>/aliases/<SYMBOL>.json` mapping `staging` / `production` to a (model type, version) with history,
and `<root>/aliases/<SYMBOL>.pending.json` while a production promotion is under way (see `PendingPromotion`).
A version is written into a temporary folder, then renamed to the next free `v<N>`: renaming onto an
existing, non-empty folder fails, so two processes saving at once never share or lose a version.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from models.base import Forecaster
from models.pooled import POOLED_FOLDER, PooledForecaster, is_pooled
from schemas import SYMBOL_PATTERN, validate_symbol
from stores.files import atomic_write, sha256_file

__all__ = ["ALIASES", "LocalModelRegistry", "ModelMetadata", "ModelRegistry", "ModelVersion", "PendingPromotion",
           "RegistryError"]

Alias = Literal["staging", "production"]
ALIASES: tuple[Alias, ...] = ("staging", "production")
METADATA_FILE = "metadata.json"
RENAME_ATTEMPTS = 5
"""tries to number a new version: each lost race with a concurrent writer costs one."""


class RegistryError(RuntimeError):
    """A version or alias is missing, or a stored file is damaged; the message names it."""


class ModelMetadata(BaseModel):
    """What is recorded with every version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: str
    symbol: str
    params: dict[str, Any]
    metrics: dict[str, float]
    features: list[str]
    data_hash: str
    """content hash of the feature set the model was trained on."""
    code_version: str
    created_at: datetime
    duration_seconds: float
    horizon: int
    seed: int
    files: dict[str, str] = {}
    """file name -> sha256, checked on load."""
    symbols: list[str] = []
    """a pooled model's symbols (`symbol` is then models.pooled.POOLED_FOLDER); empty for a per-symbol one."""
    details: dict[str, Any] = {}
    """what training recorded beside the model: a universe model's feature selection (`selection`, with each
    kept feature's evidence) and the dates it fitted and stopped early on (`fit_dates`); statsmodels' routine warnings
    the fit raised, by kind (`fit_warnings`, models/notices.py; absent when none)."""


@dataclass(frozen=True)
class ModelVersion:
    """One stored version."""

    model_type: str
    symbol: str
    version: int
    path: Path
    metadata: ModelMetadata


class PendingPromotion(BaseModel):
    """The intent to move a symbol's `production` alias, written before production is changed.

    It outlives a crash between the production push and the alias update, so the two can be reconciled.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str
    model_type: str
    version: int
    previous: tuple[str, int] | None
    """(model type, version) the alias named when the promotion began; None when it was unset."""
    started_at: datetime
    error: str = ""
    """why the promotion could not be finished or undone; empty while it is in progress."""


class ModelRegistry(Protocol):
    """What the pipeline needs from a registry: tasks receive one, built once from settings
    (stores/factory.py), so another backend drops in without touching them."""

    def register(self, model: Forecaster, symbol: str, *, metrics: dict[str, float], data_hash: str,
                 code_version: str, duration_seconds: float,
                 details: dict[str, Any] | None = None) -> ModelVersion: ...

    def get(self, model_type: str, symbol: str, version: int | None = None) -> ModelVersion: ...

    def load(self, model_type: str, symbol: str, version: int | None = None,
             threads: int = 1) -> tuple[Forecaster, ModelVersion]: ...

    def last_training_time(self, model_type: str, symbol: str) -> datetime | None: ...

    def set_alias(self, symbol: str, alias: Alias, model_type: str, version: int) -> None: ...

    def alias(self, symbol: str, alias: Alias) -> ModelVersion | None: ...

    def versions(self, model_type: str, symbol: str) -> list[int]: ...

    def alias_history(self, symbol: str, alias: Alias) -> list[tuple[str, int]]: ...

    def aliased_symbols(self, alias: Alias) -> list[str]: ...

    def begin_promotion(self, intent: PendingPromotion) -> None: ...

    def pending_promotion(self, symbol: str) -> PendingPromotion | None: ...

    def pending_symbols(self) -> list[str]: ...

    def end_promotion(self, symbol: str) -> None: ...


def _check_model_type(model_type: str) -> str:
    from models.registry import MODEL_CLASSES

    if model_type not in MODEL_CLASSES:
        raise RegistryError(f"unknown model type {model_type!r}: expected one of "
                            f"{', '.join(sorted(MODEL_CLASSES))}")
    return model_type


class LocalModelRegistry:
    """The registry on a local (or shared POSIX) file system."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:  # stable: task cache keys include it
        return f"LocalModelRegistry({str(self.root)!r})"

    # -- versions ---------------------------------------------------------------------------------
    def register(self, model: Forecaster, symbol: str, *, metrics: dict[str, float], data_hash: str,
                 code_version: str, duration_seconds: float,
                 details: dict[str, Any] | None = None) -> ModelVersion:
        """Save `model` as the next version of (its type, symbol) and return that version (`details`: see
        ModelMetadata.details)."""
        folder = self._folder(_check_model_type(model.model_type), symbol)
        folder.mkdir(parents=True, exist_ok=True)
        pooled = model if isinstance(model, PooledForecaster) else None
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
        try:
            model.save(tmp)
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            metadata = ModelMetadata(
                model_type=model.model_type, symbol=symbol, params=model.params.model_dump(mode="json"),
                metrics=metrics, features=list(pooled.pooled if pooled else model.features), data_hash=data_hash,
                code_version=code_version, created_at=datetime.now(UTC), duration_seconds=duration_seconds,
                files=files, horizon=model.horizon, seed=model.seed, symbols=list(pooled.symbols if pooled else ()),
                details=details or {},
            )
            (tmp / METADATA_FILE).write_text(metadata.model_dump_json(indent=2), encoding="utf-8")
            version = self._claim_version(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ModelVersion(model.model_type, symbol, version, folder / f"v{version}", metadata)

    def _claim_version(self, tmp: Path, folder: Path) -> int:
        """Rename `tmp` to the next free `v<N>` of `folder` and return N; a bounded number of attempts."""
        for _ in range(RENAME_ATTEMPTS):
            version = max(self._versions(folder), default=0) + 1
            try:
                os.rename(tmp, folder / f"v{version}")
                return version
            except OSError as exc:  # taken by a concurrent writer (the next scan sees it), or refused
                error = exc
        raise RegistryError(f"cannot store {folder / f'v{version}'}: {error} "
                            f"(renaming {tmp.name} failed {RENAME_ATTEMPTS} times)")

    def versions(self, model_type: str, symbol: str) -> list[int]:
        """Stored version numbers, ascending."""
        return sorted(self._versions(self._folder(model_type, symbol)))

    def get(self, model_type: str, symbol: str, version: int | None = None) -> ModelVersion:
        """A version's metadata (the newest when `version` is None)."""
        folder = self._folder(model_type, symbol)
        if version is None:
            version = max(self._versions(folder), default=0)
            if not version:
                raise RegistryError(f"no {model_type} model registered for {symbol} under {self.root}")
        path = folder / f"v{version}"
        meta_path = path / METADATA_FILE
        if not path.is_dir():
            raise RegistryError(f"{model_type} {symbol} v{version} does not exist under {self.root}")
        try:
            metadata = ModelMetadata.model_validate_json(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(f"metadata file missing: {meta_path}") from None
        except ValueError as exc:
            raise _corrupt("metadata file", meta_path, exc) from None
        if is_pooled(model_type) and symbol != POOLED_FOLDER and symbol not in metadata.symbols:
            raise RegistryError(f"{model_type} v{version} was not fitted on {symbol} "
                                f"({len(metadata.symbols)} symbols: {', '.join(metadata.symbols[:10])})")
        return ModelVersion(model_type, symbol, version, path, metadata)

    def load(self, model_type: str, symbol: str, version: int | None = None,
             threads: int = 1) -> tuple[Forecaster, ModelVersion]:
        """Load a version after checking every file against its recorded sha256."""
        entry = self.get(model_type, symbol, version)
        for name, digest in entry.metadata.files.items():
            path = entry.path / name
            if not path.is_file():
                raise RegistryError(f"model file missing: {path}")
            if sha256_file(path) != digest:
                raise RegistryError(f"model file corrupt (sha256 mismatch): {path}")
        model = Forecaster.load(entry.path, threads=threads)
        if isinstance(model, PooledForecaster) and symbol != POOLED_FOLDER:
            model.bind(symbol)  # its scaling and features for this symbol
        return model, entry

    def load_alias(self, symbol: str, alias: Alias, threads: int = 1) -> tuple[Forecaster, ModelVersion]:
        """Load the version `alias` points at for `symbol` (see `load`)."""
        target = self.alias(symbol, alias)
        if target is None:
            raise RegistryError(f"no {alias} model for {symbol} under {self.root}")
        return self.load(target.model_type, symbol, target.version, threads=threads)

    def last_training_time(self, model_type: str, symbol: str) -> datetime | None:
        """When the newest version of (model type, symbol) was created, or None."""
        try:
            return self.get(model_type, symbol).metadata.created_at
        except RegistryError:
            return None

    # -- aliases ----------------------------------------------------------------------------------
    def set_alias(self, symbol: str, alias: Alias, model_type: str, version: int) -> None:
        """Point `alias` of `symbol` at a version; the previous target is kept in the alias history."""
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}: expected one of {', '.join(ALIASES)}")
        self.get(model_type, symbol, version)  # must exist
        with self._aliases(symbol) as aliases:
            entry = aliases.setdefault(alias, {"history": []})
            if "model_type" in entry:
                entry["history"].append({k: entry[k] for k in ("model_type", "version", "set_at")})
            entry.update(model_type=model_type, version=version, set_at=datetime.now(UTC).isoformat())

    def alias(self, symbol: str, alias: Alias) -> ModelVersion | None:
        """The version `alias` points at for `symbol`, or None when unset."""
        entry = self._read_aliases(symbol).get(alias)
        if not entry or "model_type" not in entry:
            return None
        return self.get(entry["model_type"], symbol, int(entry["version"]))

    def alias_history(self, symbol: str, alias: Alias) -> list[tuple[str, int]]:
        """Earlier targets of `alias`, oldest first, as (model type, version)."""
        entry = self._read_aliases(symbol).get(alias) or {}
        return [(h["model_type"], int(h["version"])) for h in entry.get("history", [])]

    def aliased_symbols(self, alias: Alias) -> list[str]:
        """Symbols whose `alias` is set, sorted."""
        found = (p.stem for p in (self.root / "aliases").glob("*.json") if SYMBOL_PATTERN.match(p.stem))
        return sorted(s for s in found if (self._read_aliases(s).get(alias) or {}).get("model_type"))

    def begin_promotion(self, intent: PendingPromotion) -> None:
        """Record the intent to promote (atomically replacing an earlier one of the symbol)."""
        path = self._pending_path(intent.symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, intent.model_dump_json(indent=2))

    def pending_promotion(self, symbol: str) -> PendingPromotion | None:
        """The symbol's unfinished promotion, or None."""
        path = self._pending_path(symbol)
        try:
            return PendingPromotion.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise _corrupt("pending promotion file", path, exc) from None

    def pending_symbols(self) -> list[str]:
        """Symbols with an unfinished promotion, sorted."""
        return sorted(p.name.removesuffix(".pending.json") for p in (self.root / "aliases").glob("*.pending.json"))

    def end_promotion(self, symbol: str) -> None:
        """Forget the symbol's pending promotion (finished or undone)."""
        self._pending_path(symbol).unlink(missing_ok=True)

    # -- internals --------------------------------------------------------------------------------
    def _folder(self, model_type: str, symbol: str) -> Path:
        if is_pooled(model_type):  # one folder for every symbol a pooled version serves
            if symbol != POOLED_FOLDER:
                validate_symbol(symbol)
            return self.root / model_type / POOLED_FOLDER
        return self.root / model_type / validate_symbol(symbol)

    @staticmethod
    def _versions(folder: Path) -> Iterator[int]:
        if folder.is_dir():
            for child in folder.iterdir():
                if child.name.startswith("v") and child.name[1:].isdigit():
                    yield int(child.name[1:])

    def _alias_path(self, symbol: str) -> Path:
        return self.root / "aliases" / f"{validate_symbol(symbol)}.json"

    def _pending_path(self, symbol: str) -> Path:
        return self.root / "aliases" / f"{validate_symbol(symbol)}.pending.json"

    def _read_aliases(self, symbol: str) -> dict[str, Any]:
        path = self._alias_path(symbol)
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise _corrupt("alias file", path, exc) from None

    @contextmanager
    def _aliases(self, symbol: str) -> Iterator[dict[str, Any]]:
        """Read-modify-write the symbol's aliases under an exclusive lock, replacing the file atomically."""
        path = self._alias_path(symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            aliases = self._read_aliases(symbol)
            yield aliases
            atomic_write(path, json.dumps(aliases, indent=2))


def _corrupt(kind: str, path: Path, error: ValueError) -> RegistryError:
    """A registry file that does not parse, named with where it breaks, on one line: never its content."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = f"{where}: {first['msg']}" if where else str(first["msg"])
        more = error.error_count() - 1
        reason += f" (and {more} more)" if more else ""
    else:
        reason = " ".join(str(error).split())
    reason = reason if len(reason) <= 160 else f"{reason[:157]}..."
    return RegistryError(f"{kind} corrupt: {path} ({reason})")
