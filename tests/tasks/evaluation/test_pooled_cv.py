"""A universe model's walk-forward CV task: its folds, rows per pass, normalisation and scored symbols come from
the version and the settings."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import tasks.evaluation.pooled as pooled_module
from settings import CrossValidationSettings


def registered(tmp_path: Path) -> Any:
    """A registry stub whose only version is a catboost-pooled one saved with a budget of 4,000 rows per pass,
    fitted in 42.5 s."""
    (tmp_path / "model.json").write_text(json.dumps({"state": {"normalisation": "zscore", "row_budget": 4000}}))
    entry = SimpleNamespace(path=tmp_path, metadata=SimpleNamespace(
        params={}, features=["x"], horizon=1, seed=3, duration_seconds=42.5))
    return SimpleNamespace(get=lambda model_type, folder, version: entry)


def test_a_universe_cv_reads_the_version_s_budget_normalisation_fit_time_and_the_pooled_folds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def walk_forward(model_type: str, params: Any, frames: Any, features: Any, horizon: int, folds: int, seed: int,
                     threads: int, normalisation: str, **kwargs: Any) -> dict[str, list[Any]]:
        calls.append((model_type, sorted(frames), features, horizon, folds, seed, normalisation, kwargs["row_budget"],
                      kwargs["scored"], kwargs["fit_seconds"]))
        return {"AAA": []}

    monkeypatch.setattr(pooled_module, "pooled_walk_forward_metrics", walk_forward)
    monkeypatch.setattr(pooled_module, "cv_history", lambda ref, features: ref)
    cv = CrossValidationSettings(cv_folds=5, pooled_folds=3)
    summaries = pooled_module.pooled_cross_validation.fn("catboost-pooled", 1, {"AAA": "a", "BBB": "b"}, cv, 1,
                                                         registered(tmp_path), ["AAA"])
    assert calls == [("catboost-pooled", ["AAA", "BBB"], ["x"], 1, 3, 3, "zscore", 4000, ["AAA"], 42.5)]
    assert list(summaries) == ["AAA"] and summaries["AAA"].folds == 0
