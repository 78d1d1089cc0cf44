"""Model-type name -> Forecaster class. Classes are imported on demand: torch and statsmodels are slow."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.base import Forecaster

__all__ = ["MODEL_CLASSES", "MODEL_MODULES", "model_class"]

MODEL_CLASSES = {
    "arima": "models.arima:ArimaForecaster",
    "catboost": "models.catboost:CatBoostForecaster",
    "lstm": "models.lstm:LSTMForecaster",
    "transformer": "models.transformer:TransformerForecaster",
    # One model over many symbols (models/pooled.py); ARIMA models one series and has no pooled form.
    "catboost-pooled": "models.pooled:PooledCatBoostForecaster",
    "lstm-pooled": "models.pooled:PooledLSTMForecaster",
    "transformer-pooled": "models.pooled:PooledTransformerForecaster",
}

# Every module whose code shapes a fitted model: a change to any of them invalidates cached tuning.
MODEL_MODULES = ("models.base", "models.nets", "models.sequence", "models.windows",
                 *sorted({path.split(":")[0] for path in MODEL_CLASSES.values()}))


def model_class(model_type: str) -> type[Forecaster]:
    """The Forecaster class registered under `model_type`."""
    try:
        module, name = MODEL_CLASSES[model_type].split(":")
    except KeyError:
        raise ValueError(f"unknown model type {model_type!r}: expected one of "
                         f"{', '.join(sorted(MODEL_CLASSES))}") from None
    cls: type[Forecaster] = getattr(importlib.import_module(module), name)
    return cls
