"""A universe model's walk-forward CV task: its folds, rows per pass and scored symbols come from the version, and
two universe CVs never hold their universes in memory at once in one process."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import tasks.evaluation.pooled as pooled_module
from settings import CrossValidationSettings


def registered(tmp_path: Path) -> Any:
    """A registry stub whose only version is a catboost-pooled one saved with a budget of 4,000 rows per pass."""
    (tmp_path / "model.json").write_text(json.dumps({"state": {"normalisation": "zscore", "row_budget": 4000}}))
    entry = SimpleNamespace(path=tmp_path, metadata=SimpleNamespace(
        params={}, features=["x"], horizon=1, seed=3))
    return SimpleNamespace(get=lambda model_type, folder, version: entry)


def test_universe_cvs_run_one_at_a_time_with_the_version_s_budget_and_the_pooled_folds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside, most, calls = [0], [0], []
    lock = threading.Lock()

    def walk_forward(model_type: str, params: Any, frames: Any, features: Any, horizon: int, folds: int, seed: int,
                     threads: int, normalisation: str, **kwargs: Any) -> dict[str, list[Any]]:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        calls.append((model_type, folds, normalisation, kwargs["row_budget"], kwargs["scored"]))
        time.sleep(0.5)
        with lock:
            inside[0] -= 1
        return {"AAA": []}

    monkeypatch.setattr(pooled_module, "pooled_walk_forward_metrics", walk_forward)
    monkeypatch.setattr(pooled_module, "cv_history", lambda ref, features: ref)
    registry = registered(tmp_path)
    cv = CrossValidationSettings(cv_folds=5, pooled_folds=3)

    def run(version: int) -> None:
        pooled_module.pooled_cross_validation.fn("catboost-pooled", version, {"AAA": "a", "BBB": "b"}, cv, 1, registry,
                                                 ["AAA"])

    run(1)  # imports done: the two below reach the fits together
    calls.clear()
    threads = [threading.Thread(target=run, args=(v,)) for v in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1  # never two at once
    assert calls == [("catboost-pooled", 3, "zscore", 4000, ["AAA"])] * 2
