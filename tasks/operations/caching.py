"""Cache policies that key on content: frames by their values, code by its module sources, prices by
their store fingerprint, registered versions by their metadata. Keys stay cheap and stable, and change exactly
when a result could change."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.states import State
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from settings import ExecutionSettings
from stores.io_errors import transient_file_error

__all__ = [
    "CachePruned", "ContentInputs", "ModuleSources", "PriceFingerprint", "RegisteredVersionInputs", "cache_options",
    "code_version", "file_system_error", "frame_digest", "io_options", "module_digest", "prune_cache", "stable_token",
]

_MB = 1024 * 1024


def frame_digest(frame: pl.DataFrame) -> str:
    """sha256 over a frame's schema and row hashes: equal frames give equal digests within a polars version."""
    digest = hashlib.sha256(repr(frame.schema).encode())
    digest.update(pl.__version__.encode())
    if frame.height:
        digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


def stable_token(value: Any) -> Any:
    """A JSON-friendly stand-in for `value` that is equal exactly when the values are equal."""
    if isinstance(value, pl.DataFrame):
        return {"frame": frame_digest(value)}
    if isinstance(value, BaseModel):
        return {type(value).__name__: value.model_dump(mode="json")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {type(value).__name__: {f.name: stable_token(getattr(value, f.name))
                                       for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): stable_token(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stable_token(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


@dataclass
class ContentInputs(CachePolicy):
    """Key on the task inputs by content (DataFrames included)."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        return hash_objects(stable_token(inputs or {}), raise_on_failure=True)


@cache
def module_digest(modules: tuple[str, ...]) -> str:
    """sha256 over the source files of `modules` (read once per process)."""
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"cache policy names unknown module {name!r}")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


@cache
def _package_version() -> str:
    try:
        return importlib.metadata.version("stock-ai-training")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def code_version(modules: tuple[str, ...]) -> str:
    """Package version plus a digest of the sources in `modules`: what produced a stored artefact (both read once
    per process)."""
    return f"{_package_version()}+{module_digest(modules)[:12]}"


@dataclass
class ModuleSources(CachePolicy):
    """Key on the source of whole modules, so a change to any helper a task calls recomputes it."""

    modules: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        return module_digest(self.modules)


@dataclass
class PriceFingerprint(CachePolicy):
    """Key `load` on the price store's fingerprint of the requested bars, so new or changed days reload.

    Used alone (not combined): when the store cannot be fingerprinted the key is None and nothing is cached.
    """

    modules: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        data, symbol, store = inputs["data"], inputs["symbol"], inputs["price_store"]
        try:
            fingerprint = store.fingerprint(symbol, data.start_date, data.end_date)
        except Exception:  # unreachable or unknown: no key, so the task runs and reports the real error
            return None
        return hash_objects(store.location(), symbol, str(data.start_date), str(data.end_date),
                            fingerprint, module_digest(self.modules), raise_on_failure=True)


@dataclass
class RegisteredVersionInputs(CachePolicy):
    """Key a task that reads one registered version (inputs `registry`, `model_type`, `version`, and `symbol` unless
    `folder` is given) on that version's metadata, its other inputs by content and the source of `modules`.

    A registry is named by its location only, and a version number is given again once a registry is rebuilt; the
    version's metadata (its files' sha256, training data hash, creation time) tells the two apart. Used alone: when
    the version cannot be read the key is None, so the task runs and reports the real error.
    """

    modules: tuple[str, ...] = field(default_factory=tuple)
    folder: str | None = None
    """the version's registry folder (a universe version's); None: the task's `symbol` input."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        try:
            entry = inputs["registry"].get(inputs["model_type"], self.folder or inputs["symbol"], inputs["version"])
        except Exception:  # missing or unreadable: no key, so the task runs and reports the real error
            return None
        others = {name: value for name, value in inputs.items() if name != "registry"}
        return hash_objects(stable_token(entry.metadata), stable_token(others), module_digest(self.modules),
                            raise_on_failure=True)


def cache_options(execution: ExecutionSettings, refresh: bool = False) -> dict[str, Any]:
    """Task options that persist cached results under the cache dir (a Path: a str would name a block)."""
    return {"result_storage": Path(execution.cache_dir), "persist_result": True, "refresh_cache": refresh}


def io_options(execution: ExecutionSettings) -> dict[str, Any]:
    """Retry options for I/O tasks, with growing delays (30 s in all at most: see ExecutionSettings). Which
    errors are retried is the task's own `retry_condition_fn`: `file_system_error` for those that write files."""
    return {"retries": execution.io_retries, "retry_delay_seconds": list(execution.io_retry_delays)}


def file_system_error(task: Any, task_run: Any, state: State) -> bool:
    """A retry condition for tasks that write files: retry the file errors that may heal (a full disk, a lost
    mount), not a read-only or forbidden folder, nor any other error (a snapshot that fails its check, a
    missing model version): see stores/io_errors.py."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and transient_file_error(error)


@dataclass(frozen=True)
class CachePruned:
    """What `prune_cache` removed and what it kept."""

    removed: int
    freed_mb: float
    kept_mb: float


def prune_cache(directory: Path, max_age_days: float, max_mb: float, now: float | None = None) -> CachePruned:
    """Remove cached results written more than `max_age_days` ago, then the oldest ones while the folder holds
    more than `max_mb`. A removed result is only a cache miss: the task runs again and writes it anew."""
    if not directory.is_dir():
        return CachePruned(0, 0.0, 0.0)
    now = time.time() if now is None else now
    files = []
    for path in directory.rglob("*"):
        try:
            if path.is_file():
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        except FileNotFoundError:  # removed meanwhile by another run
            continue
    files.sort()  # oldest first
    total = sum(size for _, size, _ in files)
    removed = freed = 0
    for mtime, size, path in files:
        if now - mtime <= max_age_days * 86400 and total - freed <= max_mb * _MB:
            break
        path.unlink(missing_ok=True)
        removed, freed = removed + 1, freed + size
    return CachePruned(removed, freed / _MB, (total - freed) / _MB)

