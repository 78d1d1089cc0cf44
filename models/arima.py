"""ARIMA(p, d, q) on the label series, optionally with standardized features as regressors (SARIMAX).

Labels are divided by their train standard deviation before fitting (daily returns have variances near
1e-4, on which L-BFGS line searches fail) and forecasts multiplied back. A fit counts only when the
optimizer converged and every AR and MA root lies clearly outside the unit circle (|root| >= 1.01): a
near-unit root makes forecasts explode or the model non-invertible. Otherwise the next simpler order is
fitted, at most `max_fallbacks` times (`fallback_orders`); then the fit fails with every order's reason. The
order actually fitted is saved with the model.

The label is a return, the difference of log prices: a stationary series. Differencing it again (d = 1)
puts a unit root into the MA polynomial, the textbook sign of over-differencing, and ARIMA(p, d, q) with
that root is ARIMA(p, d - 1, q - 1). So the first simpler orders undo the differencing; then the larger of p
and q drops.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from models.base import LABEL, Forecaster, ModelError, ModelParams, feature_matrix

if TYPE_CHECKING:
    import optuna
    from statsmodels.tsa.statespace.sarimax import SARIMAX

__all__ = ["STATE_FILE", "ArimaForecaster", "ArimaParams", "fallback_orders"]

STATE_FILE = "arima.json"
MIN_ROOT = 1.01
"""smallest |root| of the AR and MA polynomials a fit may have (a root on the unit circle is 1.0)."""
log = logging.getLogger(__name__)


class ArimaParams(ModelParams):
    """Order and trend of the ARIMA model, and how many features enter as exogenous regressors."""

    p: int = Field(1, ge=0)
    d: int = Field(0, ge=0, le=2)
    q: int = Field(0, ge=0)
    trend: Literal["n", "c"] = "c"
    n_exog: int = Field(0, ge=0, description="leading feature columns used as regressors")
    maxiter: int = Field(50, ge=1)
    max_fallbacks: int = Field(2, ge=0, description="simpler orders tried after a fit that did not converge or "
                               "has a root near the unit circle")


def fallback_orders(p: int, d: int, q: int, fallbacks: int) -> list[tuple[int, int, int]]:
    """(p, d, q), then up to `fallbacks` simpler orders: while d > 0, d and q less one (q not below 0); then the
    larger of p and q less one, q on a tie."""
    orders = [(p, d, q)]
    while len(orders) <= fallbacks and (p or d or q):
        if d:
            d, q = d - 1, max(q - 1, 0)
        elif q >= p:
            q -= 1
        else:
            p -= 1
        orders.append((p, d, q))
    return orders


class ArimaForecaster(Forecaster):
    """SARIMAX on the labels; row t is forecast only from labels of rows <= t - horizon."""

    model_type = "arima"
    params_type = ArimaParams
    params: ArimaParams

    _exog: tuple[str, ...]
    _fitted_order: tuple[int, int, int]
    _scale: float
    _mean: np.ndarray
    _std: np.ndarray
    _param_names: list[str]
    _param_values: np.ndarray

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> ArimaParams:
        """Draw p, q, trend and the number of exogenous features; d stays 0, since the label is a return
        (differencing it again only adds a unit MA root, which the fallbacks would undo)."""
        return ArimaParams(p=trial.suggest_int("p", 0, 3), q=trial.suggest_int("q", 0, 2),
                           trend=trial.suggest_categorical("trend", ["n", "c"]),
                           n_exog=trial.suggest_int("n_exog", 0, 5))

    def _fit(self, train: pl.DataFrame, val: pl.DataFrame) -> None:
        # val is unused: maximum likelihood has no early stopping, and the order is chosen by tuning.
        self._exog = self.features[:self.params.n_exog]
        raw = feature_matrix(train, self._exog) if self._exog else np.empty((train.height, 0))
        std = raw.std(axis=0)
        self._mean, self._std = raw.mean(axis=0), np.where(std > 0, std, 1.0)
        labels, exog = _labels(train), self._exog_matrix(train) if self._exog else None
        spread = float(np.nanstd(labels)) if np.isfinite(labels).any() else 0.0
        self._scale = spread if spread > 0 else 1.0
        labels = labels / self._scale
        problems = []
        for order in self._orders():
            model = self._sarimax(labels, exog, order)
            try:  # convergence is checked below, not warned about
                results = model.fit(disp=False, maxiter=self.params.maxiter, warn_convergence=False)
            except (ValueError, np.linalg.LinAlgError) as exc:
                problems.append(f"order {order}: fit failed: {exc}")
                continue
            problem = self._problem(results)
            if problem is None:
                if problems:
                    log.warning("arima: fitted order %s instead (%s)", order, "; ".join(problems))
                self._fitted_order = order
                self._param_names = list(model.param_names)
                self._param_values = np.asarray(results.params, dtype=np.float64)
                return
            problems.append(f"order {order}: {problem}")
        raise ModelError("arima: no acceptable fit: " + "; ".join(problems))

    def _problem(self, results: Any) -> str | None:
        """Why a fit is not acceptable, or None."""
        if not results.mle_retvals.get("converged", True):
            return f"did not converge in maxiter={self.params.maxiter} iterations"
        if not np.isfinite(np.asarray(results.params, dtype=np.float64)).all():
            return "non-finite parameters"
        for name, roots, kind in (("AR", results.arroots, "non-stationary"), ("MA", results.maroots, "not invertible")):
            smallest = float(np.abs(roots).min()) if np.size(roots) else np.inf
            if smallest < MIN_ROOT:
                return f"an {name} root of modulus {smallest:.4f} lies on or near the unit circle ({kind})"
        return None

    def _predict(self, frame: pl.DataFrame, context: pl.DataFrame | None) -> np.ndarray:
        parts = [context, frame] if context is not None and context.height else [frame]
        labels = np.concatenate([_labels(part) for part in parts])
        exog = np.concatenate([self._exog_matrix(part) for part in parts]) if self._exog else None
        model = self._sarimax(labels / self._scale, exog, self._fitted_order)
        if list(model.param_names) != self._param_names:
            raise ModelError(f"arima: saved parameters {self._param_names} do not fit order {self._fitted_order}")
        # Re-applying the fitted parameters to the whole series: history conditions the state, no refit.
        filtered = model.filter(self._param_values).filter_results
        rows = np.arange(labels.shape[0] - frame.height, labels.shape[0])
        return _ahead(model.ssm, filtered.predicted_state, rows, self.horizon) * self._scale

    def _save(self, directory: Path) -> dict[str, Any]:
        state = {"order": list(self._fitted_order), "trend": self.params.trend, "label_scale": self._scale,
                 "exog": list(self._exog),
                 "exog_mean": self._mean.tolist(), "exog_std": self._std.tolist(),
                 "param_names": self._param_names, "params": self._param_values.tolist()}
        # json writes floats as their shortest round-trip repr, so loading gives identical parameters.
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        return {"file": STATE_FILE}

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        saved = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        # Any order no larger than the tuned one in p, d and q: models saved under an earlier fallback rule
        # (which kept d) still load.
        order, tuned = tuple(saved["order"]), (self.params.p, self.params.d, self.params.q)
        if len(order) != 3 or any(o > t for o, t in zip(order, tuned, strict=True)) \
                or saved["trend"] != self.params.trend:
            raise ModelError(f"arima: {STATE_FILE} holds order {saved['order']} / trend {saved['trend']}, "
                             f"model.json allows orders up to {tuned} / {self.params.trend}")
        self._fitted_order = tuple(saved["order"])  # type: ignore[assignment]
        self._scale = float(saved.get("label_scale", 1.0))  # models saved before labels were scaled
        if tuple(saved["exog"]) != self.features[:self.params.n_exog]:
            raise ModelError(f"arima: {STATE_FILE} exogenous columns {saved['exog']} do not match the features")
        self._exog = tuple(saved["exog"])
        self._mean = np.asarray(saved["exog_mean"], dtype=np.float64)
        self._std = np.asarray(saved["exog_std"], dtype=np.float64)
        self._param_names = list(saved["param_names"])
        self._param_values = np.asarray(saved["params"], dtype=np.float64)

    # -- helpers ----------------------------------------------------------------------------------
    def _orders(self) -> list[tuple[int, int, int]]:
        p = self.params
        return fallback_orders(p.p, p.d, p.q, p.max_fallbacks)

    def _sarimax(self, labels: np.ndarray, exog: np.ndarray | None, order: tuple[int, int, int]) -> SARIMAX:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        return SARIMAX(labels, exog=exog, order=order, trend=self.params.trend)

    def _exog_matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """The exogenous columns standardized with the train mean / std."""
        return (feature_matrix(frame, self._exog) - self._mean) / self._std


def _labels(frame: pl.DataFrame) -> np.ndarray:
    """Labels as float64 with NaN where unknown: the Kalman filter skips missing observations."""
    if LABEL not in frame.columns:
        return np.full(frame.height, np.nan)
    values = frame[LABEL].cast(pl.Float64).to_numpy().astype(np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _at(matrix: np.ndarray, times: np.ndarray) -> np.ndarray:
    """System matrix (..., 1 or nobs) at each of `times`: shape (..., len(times))."""
    return matrix[..., times] if matrix.shape[-1] > 1 else np.repeat(matrix, len(times), axis=-1)


def _ahead(ssm: Any, predicted_state: np.ndarray, rows: np.ndarray, horizon: int) -> np.ndarray:
    """E[y_t | labels <= t - horizon] for each row t, from one pass of the Kalman filter.

    predicted_state[:, j] is a_{j | j-1}; start at j = t - horizon + 1 (or 0 before any label) and
    step with alpha_{s+1} = c_s + T_s alpha_s until t, then y_t = d_t + Z_t alpha_t.
    """
    times = np.maximum(rows - horizon + 1, 0)
    state = predicted_state[:, times].copy()  # (k_states, rows)
    for _ in range(horizon - 1):
        moving = times < rows
        if not moving.any():
            break
        s = times[moving]
        state[:, moving] = (np.einsum("ijr,jr->ir", _at(ssm.transition, s), state[:, moving])
                            + _at(ssm.state_intercept, s))
        times = np.where(moving, times + 1, times)
    forecast = np.einsum("ijr,jr->ir", _at(ssm.design, rows), state) + _at(ssm.obs_intercept, rows)
    return np.asarray(forecast[0], dtype=np.float64)
