"""The evaluation-pipeline flow: which versions it evaluates, how unreadable ones are reported, and what an unchanged
rerun reads back from the cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

import tasks.evaluation.evaluate as evaluate_module
from flows.evaluation_pipeline import EvaluationOutcome, evaluation_pipeline
from models.registry import model_class
from schemas import FeatureSetRef, RunFailed
from settings import CrossValidationSettings, EvaluationSettings, ExecutionSettings, ModelsSettings, Settings
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
                        evaluation=EvaluationSettings(cross_validation=CrossValidationSettings(cv_folds=2)),
                        execution=ExecutionSettings(cache_dir=root / "cache"))
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
        return evaluate.fn("VHM", "catboost", version, ref, settings.evaluation, settings.models.threads,
                           settings.model_selection.weights, settings.markets.of("VHM"), registry)

    assert outcome.results == [one(2)]
    assert outcome.production == {"VHM": one(1)}


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """(model type, version, cv folds) of every prediction predict-test computes; one served from the cache is not
    computed."""
    calls: list[tuple[str, int, int]] = []
    real = evaluate_module._predict

    def spy(symbol: str, model_type: str, version: int, ref: FeatureSetRef,
            cross_validation: CrossValidationSettings, *args: Any, **kwargs: Any) -> evaluate_module.Predicted:
        calls.append((model_type, version, cross_validation.cv_folds))
        return real(symbol, model_type, version, ref, cross_validation, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "_predict", spy)
    return calls


def in_prefect_home(home: Path, refs: dict[str, FeatureSetRef], settings: Settings) -> EvaluationOutcome:
    """The flow run with Prefect's own result storage (its home's, by default) at `home`, as from another home."""
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: home}):
        return evaluation_pipeline(refs, settings)


@pytest.mark.usefixtures("prefect_harness")
def test_an_unchanged_rerun_reads_its_evaluations_back_from_the_cache_dir_whatever_the_prefect_home(
        tmp_path: Path, computed: list[tuple[str, int, int]]) -> None:
    ref, settings, _ = registered_twice(tmp_path)
    first = in_prefect_home(tmp_path / "home-1", {"VHM": ref}, settings)
    again = in_prefect_home(tmp_path / "home-2", {"VHM": ref}, settings)

    assert computed == [("catboost", 2, 2)]
    assert again.results == first.results and again.failures == []
    assert any(settings.execution.cache_dir.iterdir())  # persisted under execution.cache_dir


@pytest.mark.usefixtures("prefect_harness")
def test_a_changed_setting_feature_set_or_version_evaluates_again(
        tmp_path: Path, computed: list[tuple[str, int, int]]) -> None:
    ref, settings, registry = registered_twice(tmp_path)
    first = evaluation_pipeline({"VHM": ref}, settings)

    # Commission only changes the backtest, which runs every time: the predictions are read back, the scores follow.
    costly = settings.evaluation.backtesting.model_copy(update={"commission": 0.01})
    dearer = evaluation_pipeline({"VHM": ref}, settings.model_copy(update={
        "evaluation": settings.evaluation.model_copy(update={"backtesting": costly})}))
    assert computed == [("catboost", 2, 2)]
    assert dearer.results[0].prediction == first.results[0].prediction
    assert dearer.results[0].total_commission > first.results[0].total_commission

    three = settings.evaluation.model_copy(update={"cross_validation": CrossValidationSettings(cv_folds=3)})
    evaluation_pipeline({"VHM": ref}, settings.model_copy(update={"evaluation": three}))
    assert computed[-1] == ("catboost", 2, 3)

    other = priced_feature_set(tmp_path / "other", "VHM", seed=4)
    assert other.content_hash != ref.content_hash
    evaluation_pipeline({"VHM": other}, settings)
    assert len(computed) == 3

    model, _ = registry.load("catboost", "VHM", 2)
    registry.register(model, "VHM", metrics={}, data_hash=ref.content_hash, code_version="test",
                      duration_seconds=0.0)
    evaluation_pipeline({"VHM": ref}, settings)
    assert computed[-1] == ("catboost", 3, 2)

    # A registry rebuilt numbers its versions again: v3 is another model now, told apart by its metadata.
    shutil.rmtree(settings.models.registry_path)
    for _ in range(3):
        registry.register(model, "VHM", metrics={}, data_hash=ref.content_hash, code_version="rebuilt",
                          duration_seconds=0.0)
    evaluation_pipeline({"VHM": ref}, settings)
    assert computed[-1] == ("catboost", 3, 2) and len(computed) == 5
