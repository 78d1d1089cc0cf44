"""The naive forecasts every model must beat, scored on the model's own test rows: `zero` (always predict a zero
return) and `last_return` (the newest fully known `horizon`-day return)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.evaluation.crossval import PredictionMetrics, prediction_metrics

__all__ = ["Baselines", "last_return_baseline", "naive_baselines"]


@dataclass(frozen=True)
class Baselines:
    """Naive forecasts scored on the model's test rows."""

    zero: PredictionMetrics
    """always predict a zero return."""
    last_return: PredictionMetrics
    """predict the last fully known `horizon`-day log return, ln(close_t / close_{t-horizon})."""

    @property
    def best_rmse(self) -> float:
        """The lower of the two baselines' RMSE: what a model must beat."""
        return min(self.zero.rmse, self.last_return.rmse)

    @property
    def best_name(self) -> str:
        return "zero" if self.zero.rmse <= self.last_return.rmse else "last_return"



def last_return_baseline(close: np.ndarray, context_close: np.ndarray, horizon: int) -> np.ndarray:
    """At each row t, ln(close_t / close_{t-horizon}): the newest `horizon`-day return known at t's close.

    Closes before the first row come from `context_close` (the rows right before, in date order); a row
    with fewer than `horizon` earlier closes gets 0.0.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    closes = np.concatenate([np.asarray(context_close, dtype=np.float64), np.asarray(close, dtype=np.float64)])
    if not (np.isfinite(closes).all() and (closes > 0).all()):
        raise ValueError("closes must be finite and positive")
    rows = np.arange(closes.size - len(close), closes.size)
    known = rows >= horizon
    out = np.zeros(rows.size)
    out[known] = np.log(closes[rows[known]] / closes[rows[known] - horizon])
    return out


def naive_baselines(actual: np.ndarray, close: np.ndarray, context_close: np.ndarray, horizon: int) -> Baselines:
    """Score the `zero` and `last_return` forecasts on the rows whose labels are `actual`."""
    return Baselines(
        zero=prediction_metrics(np.zeros(len(actual)), actual),
        last_return=prediction_metrics(last_return_baseline(close, context_close, horizon), actual),
    )
