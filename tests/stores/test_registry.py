"""The model registry: atomic versions across processes, aliases, load checks."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from models.base import Forecaster
from stores.registry import LocalModelRegistry, RegistryError
from tests.models.test_contract import FEATURES, ar1_frame, parts


def fitted(seed: int = 0) -> Forecaster:
    from models.catboost import CatBoostForecaster

    train, val, _, _ = parts(ar1_frame(rows=640))
    params = CatBoostForecaster.params_type(iterations=30)
    return CatBoostForecaster(FEATURES, params, seed=seed).fit(train, val)


def register(registry: LocalModelRegistry, model: Forecaster, symbol: str = "VHM"):
    return registry.register(model, symbol, metrics={"val_rmse": 0.01}, data_hash="abc",
                             code_version="test", duration_seconds=0.5)


def _register_many(root: str, count: int, out: multiprocessing.Queue) -> None:
    registry, model = LocalModelRegistry(Path(root)), fitted()
    out.put([register(registry, model).version for _ in range(count)])


def test_versions_are_numbered_and_round_trip(tmp_path: Path) -> None:
    registry, model = LocalModelRegistry(tmp_path), fitted()
    first, second = register(registry, model), register(registry, model)
    assert (first.version, second.version) == (1, 2)
    assert registry.versions("catboost", "VHM") == [1, 2]
    loaded, entry = registry.load("catboost", "VHM")
    assert entry.version == 2 and entry.metadata.data_hash == "abc"
    assert entry.metadata.features == list(FEATURES) and entry.metadata.params["iterations"] == 30
    _, _, test, context = parts(ar1_frame(rows=640))
    np.testing.assert_array_equal(loaded.predict(test, context), model.predict(test, context))
    assert registry.get("catboost", "VHM", 1).path.name == "v1"


def test_concurrent_saves_from_two_processes_never_collide(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=_register_many, args=(str(tmp_path), 4, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    allocated = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    versions = sorted(v for got in allocated for v in got)
    assert versions == list(range(1, 9))
    assert LocalModelRegistry(tmp_path).versions("catboost", "VHM") == versions
    assert not [p for p in (tmp_path / "catboost" / "VHM").iterdir() if p.name.startswith(".tmp")]


def test_aliases_move_and_keep_history(tmp_path: Path) -> None:
    registry, model = LocalModelRegistry(tmp_path), fitted()
    register(registry, model), register(registry, model)
    assert registry.alias("VHM", "production") is None
    registry.set_alias("VHM", "production", "catboost", 1)
    registry.set_alias("VHM", "staging", "catboost", 2)
    assert registry.alias("VHM", "production").version == 1
    registry.set_alias("VHM", "production", "catboost", 2)
    assert registry.alias("VHM", "production").version == 2
    assert registry.alias_history("VHM", "production") == [("catboost", 1)]
    _, loaded = registry.load_alias("VHM", "staging")
    assert (loaded.model_type, loaded.version) == ("catboost", 2)
    with pytest.raises(RegistryError, match="no production model for VCB"):
        registry.load_alias("VCB", "production")
    with pytest.raises(RegistryError, match=r"v7 does not exist"):
        registry.set_alias("VHM", "production", "catboost", 7)
    with pytest.raises(RegistryError, match=r"unknown alias"):
        registry.set_alias("VHM", "canary", "catboost", 1)  # type: ignore[arg-type]


def test_last_training_time(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    assert registry.last_training_time("catboost", "VHM") is None
    before = datetime.now(UTC)
    register(registry, fitted())
    assert before <= registry.last_training_time("catboost", "VHM") <= datetime.now(UTC)


def test_corrupt_or_missing_files_are_named(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    entry = register(registry, fitted())
    (entry.path / "model.cbm").write_bytes(b"garbage")
    with pytest.raises(RegistryError, match=r"model file corrupt \(sha256 mismatch\): .*v1/model.cbm"):
        registry.load("catboost", "VHM")
    (entry.path / "model.cbm").unlink()
    with pytest.raises(RegistryError, match=r"model file missing: .*v1/model.cbm"):
        registry.load("catboost", "VHM", 1)
    (entry.path / "metadata.json").write_text("{", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"metadata file corrupt: .*metadata.json"):
        registry.get("catboost", "VHM", 1)
    with pytest.raises(RegistryError, match=r"no arima model registered for VHM"):
        registry.get("arima", "VHM")
    with pytest.raises(ValueError, match=r"invalid symbol"):
        registry.get("arima", "../x")


def test_numbering_gives_up_on_a_repeated_os_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, model = LocalModelRegistry(tmp_path), fitted()
    calls = []

    def refused(source: object, target: object) -> None:
        calls.append(target)
        if len(calls) > 50:  # the unbounded loop this guards against
            raise AssertionError("register kept retrying")
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr("stores.registry.os.rename", refused)
    with pytest.raises(RegistryError, match=r"catboost/VHM/v1.*Permission denied"):
        register(registry, model)
    assert 1 < len(calls) <= 5
    monkeypatch.undo()
    assert not list((tmp_path / "catboost" / "VHM").iterdir())  # the temporary folder is gone
    assert register(registry, model).version == 1


@pytest.mark.parametrize(("content", "reason"), [
    ('{"symbol": "VHM", "model_type": "lstm", "secret": "mongodb://u:hunter2@db/', "Invalid JSON: EOF while parsing"),
    ('{"symbol": "VHM", "note": "' + "x" * 5000 + '"}', "model_type: Field required (and "),
    ("[1, 2]", "Input should be an object"),
])
def test_a_corrupt_pending_promotion_is_one_line_naming_the_file_never_its_content(
        tmp_path: Path, content: str, reason: str) -> None:
    registry = LocalModelRegistry(tmp_path)
    path = tmp_path / "aliases" / "VHM.pending.json"
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")

    with pytest.raises(RegistryError) as error:
        registry.pending_promotion("VHM")

    message = str(error.value)
    assert message.startswith(f"pending promotion file corrupt: {path} ({reason}")
    assert "\n" not in message and "hunter2" not in message and "xxx" not in message and "http" not in message
