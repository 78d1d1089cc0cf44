"""CatBoost specifics: early stopping really stops, the thread count reaches the library, native format."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from models.base import LABEL, Forecaster
from models.catboost import WEIGHTS_FILE, CatBoostForecaster, CatBoostParams

FEATURES = ("a", "b", "c")


def noise_frame(rows: int, seed: int) -> pl.DataFrame:
    """Features and a label that are independent noise: nothing to learn, so validation loss rises early."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"date": [date(2021, 1, 4) + timedelta(days=i) for i in range(rows)],
                         **{name: rng.normal(0, 1, rows) for name in FEATURES}, LABEL: rng.normal(0, 1, rows)})


def test_early_stopping_stops_on_noise() -> None:
    params = CatBoostParams(iterations=1000, depth=4, learning_rate=0.2, early_stopping_rounds=20)
    model = CatBoostForecaster(FEATURES, params).fit(noise_frame(300, 1), noise_frame(100, 2))
    validation = model._regressor.get_evals_result()["validation"]["RMSE"]  # one score per round boosted
    # Boosting stopped `early_stopping_rounds` rounds after the best validation score, far short of 1,000.
    assert model.best_iteration == int(np.argmin(validation))
    assert len(validation) == model.best_iteration + params.early_stopping_rounds + 1
    assert len(validation) < 100
    # use_best_model keeps only the trees up to the best validation score.
    assert model._regressor.tree_count_ == model.best_iteration + 1


def test_threads_reach_catboost_and_survive_a_reload(tmp_path: Path) -> None:
    params = CatBoostParams(iterations=50, early_stopping_rounds=10)
    model = CatBoostForecaster(FEATURES, params, threads=2, seed=4).fit(noise_frame(200, 3), noise_frame(60, 4))
    assert model._regressor.get_params()["thread_count"] == 2
    test = noise_frame(40, 5)
    model.save(tmp_path)
    assert (tmp_path / WEIGHTS_FILE).read_bytes()[:4] == b"CBM1"  # CatBoost's own format, not a pickle
    restored = Forecaster.load(tmp_path, threads=1)
    assert isinstance(restored, CatBoostForecaster) and restored.threads == 1
    assert restored.best_iteration == model.best_iteration
    np.testing.assert_array_equal(restored.predict(test), model.predict(test))
