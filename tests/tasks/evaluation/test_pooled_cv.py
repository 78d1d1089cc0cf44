"""A universe model's walk-forward CV task: its folds, rows per pass, normalisation and scored symbols come from
the version and the settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import tasks.evaluation.histories as histories_module
import tasks.evaluation.pooled as pooled_module
from settings import CrossValidationSettings
from tasks.evaluation.histories import cv_history, shared_histories
from tests.tasks.modeling.test_train import write_feature_set


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

    @contextmanager
    def histories(refs: Any, features: Any) -> Iterator[Any]:
        yield refs

    monkeypatch.setattr(pooled_module, "shared_histories", histories)
    cv = CrossValidationSettings(cv_folds=5, pooled_folds=3)
    summaries = pooled_module.pooled_cross_validation.fn("catboost-pooled", 1, {"AAA": "a", "BBB": "b"}, cv, 1,
                                                         registered(tmp_path), ["AAA"])
    assert calls == [("catboost-pooled", ["AAA", "BBB"], ["x"], 1, 3, 3, "zscore", 4000, ["AAA"], 42.5)]
    assert list(summaries) == ["AAA"] and summaries["AAA"].folds == 0


def test_pooled_cvs_side_by_side_share_one_read_of_their_universe_and_drop_it_after_the_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refs = {s: write_feature_set(tmp_path, s, seed=i, rows=120) for i, s in enumerate(("AAA", "BBB"))}
    reads: list[str] = []

    def counted(ref: Any, features: Any) -> Any:
        reads.append(ref.symbol)
        if len(reads) == 1:
            raise OSError("disk hiccup")  # the first read fails: the next user reads again
        return cv_history(ref, features)

    monkeypatch.setattr(histories_module, "cv_history", counted)
    with pytest.raises(OSError, match="hiccup"), shared_histories(refs, ["r0"]):
        pass
    assert histories_module._SHARED == {}
    inside, release = threading.Barrier(3), threading.Event()
    seen: list[Any] = []

    def user(features: list[str]) -> None:
        with shared_histories(refs, features) as frames:
            seen.append(frames)
            inside.wait()
            release.wait()

    users = [threading.Thread(target=user, args=(["r0"],)) for _ in range(2)]
    for thread in users:
        thread.start()
    inside.wait()
    assert seen[0] is seen[1] and reads == ["AAA", "AAA", "BBB"]  # one read of each symbol for both users
    assert seen[0]["AAA"].equals(cv_history(refs["AAA"], ["r0"]))
    with shared_histories(refs, ["r1"]) as other:  # other features: their own read
        assert other is not seen[0] and other["AAA"].columns == ["date", "label", "r1"]
    release.set()
    for thread in users:
        thread.join()
    assert histories_module._SHARED == {}  # dropped with the last user
    with shared_histories(refs, ["r0"]) as again:
        assert again is not seen[0]
