"""ARIMA specifics: recovers AR coefficients, never reads a label it could not know, uses its regressors."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models.arima import STATE_FILE, ArimaForecaster, ArimaParams, fallback_orders
from models.base import LABEL, Forecaster, ModelError

FEATURES = ("x", "noise")


def series_frame(labels: np.ndarray, x: np.ndarray | None = None, seed: int = 0) -> pl.DataFrame:
    """Rows with a date, the features and the given labels."""
    rng = np.random.default_rng(seed)
    rows = labels.shape[0]
    return pl.DataFrame({
        "date": [date(2021, 1, 4) + timedelta(days=i) for i in range(rows)],
        "x": x if x is not None else rng.normal(0, 1, rows), "noise": rng.normal(0, 1, rows), LABEL: labels,
    })


def ar1(rows: int, phi: float, seed: int = 1, mean: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros(rows)
    for t in range(1, rows):
        y[t] = phi * y[t - 1] + rng.normal(0, 0.01)
    return y + mean


def fitted(frame: pl.DataFrame, horizon: int = 1, **params: object) -> ArimaForecaster:
    """Fitted on the first 400 rows."""
    model = ArimaForecaster(FEATURES, ArimaParams(**params), horizon=horizon)  # type: ignore[arg-type]
    return model.fit(frame.slice(0, 400), frame.slice(400, 50))


def saved_params(model: Forecaster, directory: Path) -> dict[str, float]:
    model.save(directory)
    state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    return dict(zip(state["param_names"], state["params"], strict=True))


def test_recovers_ar1_coefficient(tmp_path: Path) -> None:
    frame = series_frame(ar1(2000, phi=0.6, mean=0.002))
    model = ArimaForecaster(FEATURES, ArimaParams(p=1, q=0, trend="c"))
    model.fit(frame.slice(0, 1800), frame.slice(1800, 200))
    assert saved_params(model, tmp_path)["ar.L1"] == pytest.approx(0.6, abs=0.05)


def test_one_step_never_reads_its_own_or_later_labels() -> None:
    frame = series_frame(ar1(600, phi=0.7))
    model = fitted(frame, p=2, q=0)
    context, test = frame.slice(0, 500), frame.slice(500, 100)
    base = model.predict(test, context=context)
    for row in (0, 37, 99):
        labels = test[LABEL].to_numpy().copy()
        labels[row:] = np.random.default_rng(row).normal(0, 1, labels.shape[0] - row)
        changed = model.predict(test.with_columns(pl.Series(LABEL, labels)), context=context)
        np.testing.assert_array_equal(changed[:row + 1], base[:row + 1])
        if row + 1 < test.height:
            assert changed[row + 1] != base[row + 1], "the previous label must be used"


def test_three_step_reads_only_labels_three_rows_back() -> None:
    frame = series_frame(ar1(600, phi=0.7))
    model = fitted(frame, horizon=3, p=1, q=1)
    context, test = frame.slice(0, 500), frame.slice(500, 100)
    base = model.predict(test, context=context)
    rng = np.random.default_rng(5)
    for row in (0, 1, 2, 50):
        # Labels of rows t-2..t (some in the context for the first rows) must not matter for row t.
        both = pl.concat([context, test])
        t = context.height + row
        labels = both[LABEL].to_numpy().copy()
        labels[t - 2:] = rng.normal(0, 1, labels.shape[0] - t + 2)
        moved = both.with_columns(pl.Series(LABEL, labels))
        changed = model.predict(moved.slice(context.height), context=moved.slice(0, context.height))
        assert changed[row] == base[row]
        # ...while the label three rows back does.
        labels[t - 3] += 1.0
        moved = both.with_columns(pl.Series(LABEL, labels))
        assert model.predict(moved.slice(context.height), context=moved.slice(0, context.height))[row] != base[row]


def test_multi_step_matches_statsmodels_dynamic_prediction() -> None:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    frame = series_frame(np.cumsum(ar1(500, phi=0.8)))  # integrated AR(1): differencing it is right
    model = fitted(frame, horizon=4, p=1, d=1, q=0, n_exog=1, max_fallbacks=0)
    predictions = model.predict(frame)
    state = model._param_values  # the fitted vector, re-applied to the whole series
    x = (frame["x"].to_numpy() - model._mean[0]) / model._std[0]
    assert model._fitted_order == (1, 1, 0)
    scale = model._scale  # fitted on labels / their train std, forecasts scaled back
    results = SARIMAX(frame[LABEL].to_numpy() / scale, exog=x[:, None], order=(1, 1, 0), trend="c").filter(state)
    for t in (10, 200, 499):
        expected = results.predict(start=t - 3, end=t, dynamic=True)[-1] * scale
        assert predictions[t] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_uses_informative_exogenous_features(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, 600)
    frame = series_frame(0.01 * x + rng.normal(0, 0.002, 600), x=x)
    test = frame.slice(500, 100)
    with_exog = fitted(frame, n_exog=1)
    without = fitted(frame, n_exog=0)
    rmse = {name: float(np.sqrt(np.mean((m.predict(test) - test[LABEL].to_numpy()) ** 2)))
            for name, m in (("with", with_exog), ("without", without))}
    assert rmse["with"] < 0.5 * rmse["without"]
    assert saved_params(with_exog, tmp_path)["x1"] > 0
    np.testing.assert_array_equal(Forecaster.load(tmp_path).predict(test), with_exog.predict(test))


def test_more_exogenous_than_features_uses_them_all(tmp_path: Path) -> None:
    frame = series_frame(ar1(500, phi=0.5))
    model = fitted(frame, n_exog=5)
    assert {"x1", "x2"} <= saved_params(model, tmp_path).keys()
    state = json.loads((tmp_path / STATE_FILE).read_text(encoding="utf-8"))
    assert state["exog"] == list(FEATURES)


def test_tampered_state_is_refused(tmp_path: Path) -> None:
    fitted(series_frame(ar1(500, phi=0.5))).save(tmp_path)
    path = tmp_path / STATE_FILE
    state = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**state, "order": [3, 0, 0]}), encoding="utf-8")
    with pytest.raises(ModelError, match="order"):
        Forecaster.load(tmp_path)


def test_fallback_orders_undo_differencing_then_drop_the_larger_of_p_and_q() -> None:
    assert fallback_orders(2, 0, 2, 3) == [(2, 0, 2), (2, 0, 1), (1, 0, 1), (1, 0, 0)]
    assert fallback_orders(3, 1, 1, 2) == [(3, 1, 1), (3, 0, 0), (2, 0, 0)]
    assert fallback_orders(1, 2, 2, 5) == [(1, 2, 2), (1, 1, 1), (1, 0, 0), (0, 0, 0)]
    assert fallback_orders(0, 1, 0, 5) == [(0, 1, 0), (0, 0, 0)]
    assert fallback_orders(0, 0, 0, 5) == [(0, 0, 0)] and fallback_orders(2, 0, 2, 0) == [(2, 0, 2)]


def test_a_fit_that_does_not_converge_fails_with_its_reason() -> None:
    frame = series_frame(ar1(500, phi=0.5))
    with pytest.raises(ModelError, match=r"no acceptable fit: order \(2, 0, 2\): did not converge in maxiter=1"):
        fitted(frame, p=2, q=2, maxiter=1, max_fallbacks=0)


def test_a_near_unit_root_falls_back_and_the_fallback_survives_save_and_load(tmp_path: Path) -> None:
    # Differenced white noise: the MA(1) estimate piles up at -1, a non-invertible model.
    frame = series_frame(np.random.default_rng(0).normal(0, 0.01, 500))
    with pytest.raises(ModelError, match=r"order \(0, 1, 1\): an MA root of modulus 1\.0\d+ lies on or near"):
        fitted(frame, p=0, d=1, q=1, max_fallbacks=0)
    model = fitted(frame, p=0, d=1, q=1)
    assert model._fitted_order == (0, 0, 0)  # the unit MA root cancels the differencing: white noise again
    model.save(tmp_path)
    assert json.loads((tmp_path / STATE_FILE).read_text(encoding="utf-8"))["order"] == [0, 0, 0]
    test, context = frame.slice(450, 50), frame.slice(0, 450)
    np.testing.assert_array_equal(Forecaster.load(tmp_path).predict(test, context=context),
                                  model.predict(test, context=context))


def test_a_model_saved_under_the_earlier_fallback_rule_still_loads(tmp_path: Path) -> None:
    # The earlier rule dropped q and kept d: params (0, 1, 1) fitted as (0, 1, 0). Such a model still loads;
    # an order larger than the params' in any of p, d, q is refused.
    frame = series_frame(np.random.default_rng(0).normal(0, 0.01, 500))
    model = fitted(frame, p=0, d=1, q=0, max_fallbacks=0)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))
    meta["params"].update(q=1, max_fallbacks=2)
    (tmp_path / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    test, context = frame.slice(450, 50), frame.slice(0, 450)
    np.testing.assert_array_equal(Forecaster.load(tmp_path).predict(test, context=context),
                                  model.predict(test, context=context))
    meta["params"].update(d=0)
    (tmp_path / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match=r"holds order \[0, 1, 0\].*allows orders up to \(0, 0, 1\)"):
        Forecaster.load(tmp_path)

def test_differenced_real_returns_fall_back_to_the_undifferenced_order() -> None:
    # GOOG's daily log returns: ARIMA(1, 1, 2) over-differences them. Holding d = 1 while dropping q ended at
    # ARIMA(1, 1, 0), whose forecasts missed by about 20 % more than forecasting 0; undoing the
    # differencing ends at ARIMA(1, 0, 1), within a few percent of it.
    from backtesting.test import GOOG

    returns = np.diff(np.log(GOOG["Close"].to_numpy()))
    frame = series_frame(returns)
    for start in (0, 700, 1400):
        fit, test = frame.slice(start, 500), frame.slice(start + 500, 60)
        model = ArimaForecaster(FEATURES, ArimaParams(p=1, d=1, q=2)).fit(fit, test)
        assert model._fitted_order[1] == 0
        labels = test[LABEL].to_numpy()
        error = np.sqrt(np.mean((model.predict(test, context=frame.slice(0, start + 500)) - labels) ** 2))
        assert error < 1.05 * np.sqrt(np.mean(labels ** 2))


def test_tuning_never_differences_the_returns() -> None:
    import optuna

    drawn = {"p": 2, "q": 1, "trend": "n", "n_exog": 3}  # a FixedTrial refuses any parameter not given here
    assert ArimaForecaster.suggest(optuna.trial.FixedTrial(drawn)) == ArimaParams(d=0, **drawn)  # type: ignore[arg-type]
