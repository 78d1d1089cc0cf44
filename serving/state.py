"""Deployed models on disk, so a restarted server serves what it served before.

Layout under `state_dir`: `slots/<SYMBOL>/<id>/` (one unpacked package each), `current/<SYMBOL>.json`
(the live slot) and `history/<SYMBOL>.json` (earlier live slots, newest last, for rollback). A new
package is unpacked and smoke-tested in its own slot before the pointer is replaced with `os.replace`,
so a failed deployment never touches the live model and a crash leaves either the old or the new one.
Errors that reach HTTP answers name files relative to `state_dir` and carry no paths or tracebacks;
the full story goes to the server log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from models.base import LABEL, Forecaster, ModelError
from models.pooled import CrossSection, PooledForecaster
from schemas import validate_symbol
from serving.package import (
    EXTRA_CROSS_SECTION_FILE,
    FEATURES_FILE,
    MANIFEST_FILE,
    MODEL_DIR,
    PackageError,
    PackageManifest,
    read_package,
)
from stores.files import atomic_write

__all__ = ["DeployedModel", "ModelSlots", "NotDeployedError", "NothingToRollBackError", "RowsError", "StateError",
           "plain_error"]

log = logging.getLogger(__name__)
MAX_HISTORY = 5
SLOT_ID = re.compile(r"[0-9a-f]{32}")
_SOURCE_LOCATION = re.compile(r"(?:[\w.-]*[/\\])*[\w.-]+\.[A-Za-z]{1,4}:\d+:?\s*")  # catboost/libs/model.cpp:12:
_PATH = re.compile(r"[^\s'\"(),;:]*[/\\][^\s'\"(),;:]*")


class NotDeployedError(LookupError):
    """No model is deployed for the symbol."""


class NothingToRollBackError(LookupError):
    """The symbol has no earlier deployment to return to."""


class RowsError(ValueError):
    """Rows sent for prediction do not fit the deployed model; the message says why."""


class StateError(RuntimeError):
    """A file of the server's own state is unreadable or malformed; the message names it within `state_dir`."""


def plain_error(exc: BaseException) -> str:
    """`ExceptionClass: first line` of an error, without file paths or source locations (those stay in the log)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not isinstance(exc, PackageError):  # ours name package members; other libraries name server paths
        text = _PATH.sub("<path>", _SOURCE_LOCATION.sub("", text)).strip()
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else f"{text[:297]}..."


@dataclass(frozen=True)
class DeployedModel:
    """One deployed package, as the API reports it."""

    symbol: str
    model_type: str
    version: int
    data_hash: str
    deployed_at: datetime
    features: tuple[str, ...]
    previous: DeployedModel | None = field(default=None, compare=False)
    """only on what `deploy` / `rollback` return: the model that was live before."""


@dataclass
class _Live:
    """A loaded slot: the model, its feature history and the "latest" rows with their predictions."""

    info: DeployedModel
    slot: str
    model: Forecaster
    history: pl.DataFrame
    latest: pl.DataFrame
    latest_predictions: np.ndarray
    latest_dates: list[date]
    lock: threading.Lock = field(default_factory=threading.Lock)


def _pointer(live: _Live) -> dict[str, Any]:
    info = asdict(replace(live.info, previous=None))
    del info["previous"]
    return {**info, "slot": live.slot, "deployed_at": live.info.deployed_at.isoformat()}


class ModelSlots:
    """The deployed models of one server: unpack, smoke-test, swap in, roll back, predict."""

    def __init__(self, state_dir: Path, threads: int = 1) -> None:
        self.root = Path(state_dir)
        self.threads = threads
        self.errors: dict[str, str] = {}
        """symbol -> why its live slot could not be loaded at start-up."""
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._pending: set[str] = set()  # slots being loaded: not live yet, but not garbage either
        for sub in ("slots", "current", "history"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (self.root / "slots").glob(".incoming-*"):  # from a deployment cut short
            shutil.rmtree(leftover, ignore_errors=True)
        for path in sorted((self.root / "current").glob("*.json")):
            symbol = path.stem
            try:
                self._live[symbol] = self._load(validate_symbol(symbol), self._read_pointer(symbol))
            except Exception as exc:  # one broken slot must not keep the other symbols offline
                self.errors[symbol] = str(exc)
                log.error("cannot load the deployed model for %s: %s", symbol, exc)
        for symbol_dir in (self.root / "slots").iterdir():
            if symbol_dir.is_dir() and not symbol_dir.name.startswith("."):
                self._prune_orphans(symbol_dir.name)

    # -- deployments ------------------------------------------------------------------------------
    def deploy(self, data: bytes, max_bytes: int) -> DeployedModel:
        """Unpack, load and smoke-test a package, then make it the symbol's live model.

        Whatever fails, the new slot is removed again: a failed deployment leaves nothing behind.
        """
        incoming = self.root / "slots" / f".incoming-{uuid.uuid4().hex}"
        slot = uuid.uuid4().hex
        target: Path | None = None
        try:
            manifest = read_package(data, incoming, max_bytes)
            self._history(manifest.symbol)  # unreadable state: refuse before loading anything
            target = self.root / "slots" / manifest.symbol / slot
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._pending.add(slot)
            os.rename(incoming, target)
            try:
                live = self._load(manifest.symbol, {"slot": slot, "deployed_at": datetime.now(UTC).isoformat()})
            except Exception as exc:  # whatever a broken package makes a reader raise, it is the package's fault
                log.warning("package %s %s v%s failed to load in %s", manifest.symbol, manifest.model_type,
                            manifest.version, target, exc_info=True)
                raise PackageError(f"model package failed to load: {plain_error(exc)}") from exc
            with self._lock:
                previous = self._live.get(manifest.symbol)
                history = self._history(manifest.symbol)
                if previous is not None:
                    history = [*history, _pointer(previous)][-MAX_HISTORY:]
                self._swap(live, history)
            target = None  # live now: keep it
        finally:
            with self._lock:
                self._pending.discard(slot)
            shutil.rmtree(incoming, ignore_errors=True)
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
        log.info("deployed %s %s v%s (slot %s)", manifest.symbol, manifest.model_type, manifest.version, slot)
        return replace(live.info, previous=previous.info if previous else None)

    def rollback(self, symbol: str) -> DeployedModel:
        """Make the symbol's previous deployment live again; the rolled-back one is discarded."""
        with self._lock:
            current = self._live.get(validate_symbol(symbol))
            if current is None:
                raise NotDeployedError(f"no model deployed for {symbol}")
            history = self._history(symbol)
            if not history:
                raise NothingToRollBackError(f"{symbol} has no earlier deployment to roll back to")
            try:
                restored = self._load(symbol, history[-1])
            except Exception as exc:
                log.warning("cannot roll %s back to slot %s", symbol, history[-1]["slot"], exc_info=True)
                raise NothingToRollBackError(f"the previous deployment of {symbol} cannot be loaded: "
                                             f"{plain_error(exc)}") from exc
            self._swap(restored, history[:-1])
        log.info("rolled %s back to %s v%s", symbol, restored.info.model_type, restored.info.version)
        return replace(restored.info, previous=current.info)

    def get(self, symbol: str) -> DeployedModel | None:
        """The live model for `symbol`, or None."""
        live = self._live.get(symbol)
        return live.info if live else None

    def all(self) -> dict[str, DeployedModel]:
        """Every live model by symbol."""
        return {symbol: live.info for symbol, live in sorted(self._live.items())}

    # -- predictions ------------------------------------------------------------------------------
    def predict(self, symbol: str, rows: pl.DataFrame | None) -> tuple[np.ndarray, DeployedModel, list[date]]:
        """Predict `rows` (None: the package's latest rows) with the package rows before them as context."""
        live = self._live.get(symbol)
        if live is None:
            raise NotDeployedError(f"no model deployed for {symbol}")
        if rows is None:  # a pure function of the package: computed once, when the slot was loaded
            return live.latest_predictions.copy(), live.info, list(live.latest_dates)
        frame = _checked_rows(rows, live)
        context = live.history.filter(pl.col("date") < frame["date"].min())
        try:
            with live.lock:  # models make no promise of thread safety
                predictions = live.model.predict(frame, context)
        except ModelError as exc:
            raise RowsError(str(exc)) from exc
        return predictions, live.info, list(frame["date"].cast(pl.Date))

    # -- internals --------------------------------------------------------------------------------
    def _load(self, symbol: str, pointer: dict[str, Any]) -> _Live:
        """Load a slot after checking its files against the manifest, and predict its newest row."""
        slot = str(pointer["slot"])
        if not SLOT_ID.fullmatch(slot):  # pointer files name folders: never let one point elsewhere
            raise PackageError(f"invalid slot id {slot!r} in the pointer for {symbol}")
        slot_dir = self.root / "slots" / symbol / slot
        manifest = PackageManifest.model_validate_json((slot_dir / MANIFEST_FILE).read_bytes())
        if manifest.symbol != symbol:
            raise PackageError(f"slot {slot} holds a package for {manifest.symbol}, not {symbol}")
        for name, digest in manifest.files.items():
            if hashlib.sha256((slot_dir / name).read_bytes()).hexdigest() != digest:
                raise PackageError(f"{name} of slot {slot}: altered since it was deployed (sha256 mismatch)")
        model = Forecaster.load(slot_dir / MODEL_DIR, threads=self.threads)
        if isinstance(model, PooledForecaster):
            model.bind(symbol)  # its scaling and features for this symbol
        if (slot_dir / EXTRA_CROSS_SECTION_FILE).is_file():  # statistics of dates after the model's own
            if not isinstance(model, PooledForecaster) or model.cross_section is None:
                raise PackageError(f"{EXTRA_CROSS_SECTION_FILE}: the model is not cross-sectional")
            model.extend(CrossSection(model.pooled, pl.read_parquet(slot_dir / EXTRA_CROSS_SECTION_FILE)))
        if (model.model_type, model.features, model.horizon) != (
                manifest.model_type, manifest.features, manifest.horizon):
            raise PackageError("model.json disagrees with the manifest on model type, features or horizon")
        history = pl.read_parquet(slot_dir / FEATURES_FILE).sort("date")
        if history.height == 0:
            raise PackageError(f"{FEATURES_FILE} has no rows")
        # Smoke test: the newest row with everything before it as context must give a finite prediction.
        model.predict(history.tail(1), history.head(history.height - 1))
        unlabelled = history.filter(pl.col(LABEL).is_null()) if LABEL in history.columns else history.head(0)
        latest = unlabelled if unlabelled.height else history.tail(1)
        latest_predictions = model.predict(latest, history.filter(pl.col("date") < latest["date"].min()))
        info = DeployedModel(symbol, manifest.model_type, manifest.version, manifest.data_hash,
                             datetime.fromisoformat(str(pointer["deployed_at"])), manifest.features)
        return _Live(info, slot, model, history, latest, latest_predictions,
                     list(latest["date"].cast(pl.Date)))

    def _swap(self, live: _Live, history: list[dict[str, Any]]) -> None:
        """Record the history, then replace the live pointer; drop slots nothing points at any more."""
        symbol = live.info.symbol
        atomic_write(self.root / "history" / f"{symbol}.json", json.dumps(history, indent=2))
        atomic_write(self.root / "current" / f"{symbol}.json", json.dumps(_pointer(live), indent=2))
        self._live[symbol] = live
        self.errors.pop(symbol, None)
        self._prune_orphans(symbol)

    def _prune_orphans(self, symbol: str) -> None:
        """Delete the symbol's slots that neither the live pointer nor the history name."""
        try:
            current = self.root / "current" / f"{symbol}.json"
            pointers = [*self._history(symbol), *([self._read_pointer(symbol)] if current.is_file() else [])]
            keep = {*self._pending, *(str(p["slot"]) for p in pointers)}
            for slot_dir in (self.root / "slots" / symbol).iterdir():
                if slot_dir.name not in keep:
                    shutil.rmtree(slot_dir, ignore_errors=True)
        except (StateError, OSError) as exc:  # unreadable pointers: delete nothing
            log.warning("left the slots of %s as they are: %s", symbol, exc)

    def _history(self, symbol: str) -> list[dict[str, Any]]:
        """The symbol's earlier live pointers, oldest first; [] when it has none."""
        name = f"history/{symbol}.json"
        history = self._read_state(name) if (self.root / name).is_file() else []
        if not isinstance(history, list) or not all(_is_pointer(p) for p in history):
            raise StateError(f"server state file {name} is not a list of slot pointers: repair or delete it")
        return history

    def _read_pointer(self, symbol: str) -> dict[str, Any]:
        name = f"current/{symbol}.json"
        pointer = self._read_state(name)
        if not _is_pointer(pointer):
            raise StateError(f"server state file {name} is not a slot pointer: repair or delete it")
        return dict(pointer)

    def _read_state(self, name: str) -> Any:
        """A JSON file under `state_dir`, by its relative name; StateError naming it when unreadable."""
        try:
            return json.loads((self.root / name).read_text(encoding="utf-8"))
        except OSError as exc:
            raise StateError(f"server state file {name} cannot be read ({exc.strerror})") from exc
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise StateError(f"server state file {name} is corrupt ({plain_error(exc)}): repair or delete it") from exc


def _is_pointer(content: Any) -> bool:
    return isinstance(content, dict) and isinstance(content.get("slot"), str) and "deployed_at" in content


def _checked_rows(rows: pl.DataFrame, live: _Live) -> pl.DataFrame:
    """The request rows as the model's frame: date + features (+ label when sent), dates increasing."""
    missing = [c for c in ("date", *live.info.features) if c not in rows.columns]
    if missing:
        raise RowsError(f"rows lack the model feature(s): {', '.join(missing)}")
    if rows.height == 0:
        raise RowsError("no rows to predict")
    columns = ["date", *live.info.features] + ([LABEL] if LABEL in rows.columns else [])
    frame = rows.select(columns).with_columns(pl.col("date").cast(live.history.schema["date"]))
    if frame["date"].null_count() or not frame["date"].is_sorted() or frame["date"].n_unique() != frame.height:
        raise RowsError("row dates must be present, unique and increasing")
    return frame
