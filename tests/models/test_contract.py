"""One contract, every model type: shapes, no mutation, save/load round trip, learns a learnable signal."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import optuna
import polars as pl
import pytest

from models.base import LABEL, Forecaster, ModelError
from models.pooled import is_pooled, pooled_type
from models.registry import MODEL_CLASSES, model_class
from settings import MODEL_TYPES

# Small but real settings, so the whole contract runs in seconds per type.
FAST_PARAMS: dict[str, dict] = {
    "arima": {},
    "catboost": {"iterations": 200},
    "lstm": {"max_epochs": 15, "hidden_size": 16, "lookback": 10},
    "transformer": {"max_epochs": 15, "d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 32,
                    "lookback": 10},
}
FEATURES = ("r0", "r1", "noise")


def ar1_frame(rows: int = 700, phi: float = 0.7, seed: int = 3) -> pl.DataFrame:
    """Daily returns r_t = phi * r_{t-1} + e_t; features known at t, label = r_{t+1}."""
    rng = np.random.default_rng(seed)
    r = np.zeros(rows + 2)
    for t in range(1, rows + 2):
        r[t] = phi * r[t - 1] + rng.normal(0, 0.01)
    return pl.DataFrame({
        "date": [date(2022, 1, 3) + timedelta(days=i) for i in range(rows)],
        "r0": r[1:rows + 1], "r1": r[:rows], "noise": rng.normal(0, 0.01, rows), LABEL: r[2:rows + 2],
    })


def parts(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """train, val, test and the context rows before test (with a one-row embargo before val and test)."""
    train, val, test = frame.slice(0, 450), frame.slice(451, 120), frame.slice(572, 128)
    return train, val, test, frame.slice(0, 572)


def make(model_type: str, **overrides: object) -> Forecaster:
    cls = model_class(model_type)
    params = cls.params_type(**{**FAST_PARAMS[model_type], **overrides})
    return cls(FEATURES, params, horizon=1, seed=11)


def test_the_registry_holds_a_class_for_every_model_type_of_the_settings() -> None:
    assert sorted(t for t in MODEL_CLASSES if not is_pooled(t)) == sorted(MODEL_TYPES)
    assert sorted(t for t in MODEL_CLASSES if is_pooled(t)) == sorted(pooled_type(t) for t in MODEL_TYPES
                                                                      if t != "arima")
    assert all(model_class(model_type).model_type == model_type for model_type in MODEL_CLASSES)


@pytest.fixture(params=sorted(MODEL_TYPES))  # pooled types: tests/models/test_pooled.py
def model_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_contract(model_type: str, tmp_path: Path) -> None:
    train, val, test, context = parts(ar1_frame())
    originals = [f.clone() for f in (train, val, test, context)]

    model = make(model_type).fit(train, val)
    predictions = model.predict(test, context=context)
    assert predictions.shape == (test.height,) and np.isfinite(predictions).all()
    assert all(a.equals(b) for a, b in zip((train, val, test, context), originals, strict=True))

    model.save(tmp_path / "m")
    restored = Forecaster.load(tmp_path / "m")
    assert type(restored) is type(model) and restored.params == model.params
    np.testing.assert_array_equal(restored.predict(test, context=context), predictions)

    # A learnable signal: clearly better than always predicting a zero return.
    rmse = float(np.sqrt(np.mean((predictions - test[LABEL].to_numpy()) ** 2)))
    naive = float(np.sqrt(np.mean(test[LABEL].to_numpy() ** 2)))
    assert rmse < 0.85 * naive, f"{model_type}: rmse {rmse:.5f} vs zero-return {naive:.5f}"


def test_predict_without_context_and_on_unlabelled_rows(model_type: str) -> None:
    train, val, test, _ = parts(ar1_frame(rows=640))
    model = make(model_type).fit(train, val)
    unlabelled = test.with_columns(pl.lit(None, dtype=pl.Float64).alias(LABEL))
    assert model.predict(unlabelled).shape == (test.height,)


def test_fit_is_deterministic(model_type: str) -> None:
    train, val, test, context = parts(ar1_frame())
    first = make(model_type).fit(train, val).predict(test, context=context)
    second = make(model_type).fit(train, val).predict(test, context=context)
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-12)


def test_search_space_yields_valid_params(model_type: str) -> None:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    cls = model_class(model_type)
    for _ in range(3):
        params = cls.suggest(study.ask())
        assert isinstance(params, cls.params_type)


def test_bad_input_is_named(model_type: str, tmp_path: Path) -> None:
    train, val, test, _ = parts(ar1_frame(rows=640))
    model = make(model_type)
    with pytest.raises(ModelError, match="before fit"):
        model.predict(test)
    with pytest.raises(ModelError, match="lacks column"):
        model.fit(train.drop("r1"), val)
    with pytest.raises(ModelError, match="null or non-finite"):
        model.fit(train.with_columns(pl.lit(float("nan")).alias("r0")), val)
    with pytest.raises(ModelError, match="model file missing"):
        Forecaster.load(tmp_path / "nothing")
