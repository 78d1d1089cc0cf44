"""The evaluation-pipeline flow: which versions it evaluates, and how unreadable ones are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.evaluation_pipeline import evaluation_pipeline
from models.registry import model_class
from schemas import FeatureSetRef, RunFailed
from settings import CrossValidationSettings, EvaluationSettings, ModelsSettings, Settings
from stores.features import read_split
from stores.registry import LocalModelRegistry
from tasks.evaluation.candidates import ModelRef, models_to_evaluate
from tasks.evaluation.evaluate import evaluate
from tests.models.test_contract import FEATURES
from tests.tasks.evaluation.test_evaluate import priced_feature_set


def registered_twice(root: Path) -> tuple[FeatureSetRef, Settings, LocalModelRegistry]:
    """One catboost model for VHM registered as v1 and v2, and settings that evaluate it quickly."""
    ref = priced_feature_set(root, "VHM")
    cls = model_class("catboost")
    model = cls(FEATURES, cls.params_type.model_validate({"iterations": 30}), horizon=1, seed=11)
    model.fit(read_split(ref, "train"), read_split(ref, "val"))
    settings = Settings(models=ModelsSettings(registry_path=root / "registry", model_types=["catboost"]),
                        evaluation=EvaluationSettings(cross_validation=CrossValidationSettings(cv_folds=2)))
    registry = LocalModelRegistry(settings.models.registry_path)
    for _ in range(2):
        registry.register(model, "VHM", metrics={}, data_hash=ref.content_hash, code_version="test",
                          duration_seconds=0.0)
    return ref, settings, registry


def test_a_corrupt_newest_version_is_a_failure_and_the_one_before_is_evaluated(tmp_path: Path) -> None:
    _, _, registry = registered_twice(tmp_path)
    metadata = registry.get("catboost", "VHM", 2).path / "metadata.json"
    metadata.write_text("{", encoding="utf-8")

    plan = models_to_evaluate.fn(["VHM"], ["catboost"], registry)
    assert plan.models == [ModelRef("VHM", "catboost", 1)]
    [failure] = plan.failures
    assert (failure.symbol, failure.model_type, failure.step) == ("VHM", "catboost", "evaluate")
    assert "v2" in failure.error and str(metadata) in failure.error and "corrupt" in failure.error
    assert "v1 evaluated instead" in failure.error

    (registry.get("catboost", "VHM", 1).path / "metadata.json").unlink()
    [newest, older] = models_to_evaluate.fn(["VHM"], ["catboost"], registry).failures
    assert "v2" in newest.error and "no readable version left" in newest.error
    assert "v1" in older.error and "metadata file missing" in older.error


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_fails_naming_the_corrupt_version_after_evaluating_the_rest(tmp_path: Path) -> None:
    ref, settings, registry = registered_twice(tmp_path)
    (registry.get("catboost", "VHM", 2).path / "metadata.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RunFailed, match=r"1 of 2 jobs failed; first: evaluate catboost VHM: .*v2") as info:
        evaluation_pipeline({"VHM": ref}, settings)
    outcome = info.value.outcome
    assert [(r.model_type, r.version) for r in outcome.results] == [("catboost", 1)]
    assert [f.step for f in outcome.failures] == ["evaluate"]


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_gives_evaluates_results_for_challengers_and_production(tmp_path: Path) -> None:
    ref, settings, registry = registered_twice(tmp_path)
    registry.set_alias("VHM", "production", "catboost", 1)
    outcome = evaluation_pipeline({"VHM": ref}, settings)
    assert outcome.failures == [] and outcome.jobs == 2

    def one(version: int) -> object:
        return evaluate.fn("VHM", "catboost", version, ref, settings.evaluation, settings.models,
                           settings.model_selection.weights, settings.markets.of("VHM"), registry)

    assert outcome.results == [one(2)]
    assert outcome.production == {"VHM": one(1)}
