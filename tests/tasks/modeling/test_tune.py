"""tune: Optuna studies on small feature sets; concurrent studies on one fresh storage."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest

from settings import ModelsSettings, OptimizationSettings
from tasks.modeling.tune import TuneResult, study_name, study_storage, tune
from tests.tasks.modeling.test_train import models_cfg, write_feature_set


def test_concurrent_studies_on_a_fresh_storage_never_race(tmp_path: Path) -> None:
    """Four studies start at the same instant on a new database, as the four tune tasks of a run do."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(5):
        path = tmp_path / f"attempt{attempt}" / "studies.db"
        start, errors = threading.Barrier(4), []

        def study(name: str, path: Path = path, start: threading.Barrier = start, errors: list = errors) -> None:
            try:
                start.wait()
                found = optuna.create_study(study_name=name, storage=study_storage(path), load_if_exists=True)
                found.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=3)
            except Exception as exc:  # collected: an error in a thread would not fail the test
                errors.append(exc)

        threads = [threading.Thread(target=study, args=(t,)) for t in ("arima", "lstm", "transformer", "catboost")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        summaries = optuna.get_all_study_summaries(storage=f"sqlite:///{path}")
        assert sorted((s.study_name, s.n_trials) for s in summaries) == [
            ("arima", 3), ("catboost", 3), ("lstm", 3), ("transformer", 3)]


def test_tuning_runs_trials_and_resumes_an_interrupted_study(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    refs = {s: write_feature_set(tmp_path / "features", s, seed=i) for i, s in enumerate(("VCB", "VHM"))}
    cfg = models_cfg(tmp_path)
    opt = OptimizationSettings(n_trials=2, folds=2, storage_path=tmp_path / "optuna.db")
    first = tune.fn("arima", refs, opt, cfg, 1, True)
    assert first.source == "optuna" and first.trials == 2 and first.best_value is not None
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tune-arima: trial")]
    assert [line.split()[2] for line in lines] == ["1/2", "2/2"]
    assert all("best" in line and "elapsed" in line and "left" in line for line in lines)
    assert first.study == study_name("arima", refs)

    # Interrupted after 2 of 3 trials: asking for 3 runs exactly one more in the same study.
    resumed = tune.fn("arima", refs, opt.model_copy(update={"n_trials": 3}), cfg, 1, True)
    assert resumed.trials == 3
    study = optuna.load_study(study_name=first.study, storage=first.storage)
    assert len(study.trials) == 3
    assert resumed.best_value == pytest.approx(min(t.value for t in study.trials if t.value is not None))
    assert isinstance(resumed, TuneResult) and set(resumed.params) >= {"p", "d", "q"}


def test_invalid_configured_params_name_the_key(tmp_path: Path) -> None:
    refs = {"VHM": write_feature_set(tmp_path / "features", "VHM")}
    cfg = ModelsSettings(registry_path=tmp_path / "r", params={"catboost": {"depth": "deep"}})  # type: ignore[dict-item]
    with pytest.raises(Exception, match=r"models\.params\.catboost"):
        tune.fn("catboost", refs, OptimizationSettings(), cfg, 1, False)


def test_trial_symbols_draws_a_seeded_subset_per_trial() -> None:
    from tasks.modeling.tune import trial_symbols

    universe = [f"S{i:03d}" for i in range(500)]
    draws = [trial_symbols(universe, 8, 42, trial) for trial in range(200)]

    assert all(len(d) == 8 == len(set(d)) and d == sorted(d) and set(d) <= set(universe) for d in draws)
    assert draws[3] == trial_symbols(universe, 8, 42, 3)  # a resumed study redraws the same symbols
    assert len({tuple(d) for d in draws}) == 200 and len({s for d in draws for s in d}) > 400
    assert trial_symbols(universe[:5], 8, 42, 0) == universe[:5] == trial_symbols(universe[:5], None, 42, 0)


def test_each_trial_is_scored_on_its_drawn_symbols_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.modeling.tune import trial_symbols

    refs = {s: write_feature_set(tmp_path / "features", s, seed=i, rows=200)
            for i, s in enumerate(("VCB", "VHM", "VIC", "FPT", "HPG"))}
    scored: list[str] = []

    def rmse(model_type: str, params: object, ref: object, *args: object) -> float:
        scored.append(ref.symbol)  # type: ignore[attr-defined]
        return 1.0

    monkeypatch.setattr("tasks.modeling.tune.cross_validated_rmse", rmse)
    opt = OptimizationSettings(n_trials=3, folds=2, symbols_per_trial=2, storage_path=tmp_path / "optuna.db")

    tune.fn("arima", refs, opt, models_cfg(tmp_path), 1, True)

    expected = [s for trial in range(3) for s in trial_symbols(sorted(refs), 2, models_cfg(tmp_path).seed, trial)]
    assert scored == expected and len(scored) == 6


def test_a_new_search_space_starts_a_new_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.arima import ArimaForecaster, ArimaParams

    refs = {"VCB": write_feature_set(tmp_path / "features", "VCB", seed=0)}
    before = study_name("arima", refs)
    assert study_name("arima", refs) == before and study_name("catboost", refs) != before
    monkeypatch.setattr(ArimaForecaster, "suggest",
                        classmethod(lambda cls, trial: ArimaParams(p=trial.suggest_int("p", 0, 1))))
    assert study_name("arima", refs) != before


def test_a_universe_type_is_tuned_on_the_universe_selection(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from schemas import FeatureSetRef
    from settings import FeatureSettings, SelectionSettings
    from tasks.data.select_universe import universe_selection

    refs: dict[str, FeatureSetRef] = {
        s: write_feature_set(tmp_path / "features", s, seed=i) for i, s in enumerate(("VCB", "VHM", "FPT"))}
    selection = universe_selection.fn(refs, FeatureSettings(), SelectionSettings(always_keep=()), 2)
    assert len(selection.kept) == 2 and selection.symbols == ("FPT", "VCB", "VHM")
    cfg = models_cfg(tmp_path)
    opt = OptimizationSettings(n_trials=2, folds=2, storage_path=tmp_path / "optuna.db")
    tuned = tune.fn("catboost-pooled", refs, opt, cfg, 1, True, selection)
    assert tuned.source == "optuna" and tuned.trials == 2 and len(tuned.history) == 2
    assert "tune-catboost-pooled: trial 2/2" in capsys.readouterr().out
    with pytest.raises(Exception, match="reads the features selected over its universe"):
        tune.fn("catboost-pooled", refs, opt.model_copy(update={"n_trials": 3}), cfg, 1, True, None)
