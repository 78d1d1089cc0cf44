"""Pooled forecasters: one model of a type fitted on the train rows of many symbols at once.

A symbol's features are normalised on that symbol's own train rows (mean 0, std 1) and its label divided by its
train label std, so symbols of different price levels and volatilities share one scale; predictions are scaled
back with the symbol's label std. The symbol is not a feature. Sequence models build their windows within each
symbol, never across two (Forecaster.fit_segments).

Feature selection runs per symbol, so symbols keep different features. A pooled model reads the features kept
by the most symbols (at most `max_features`); a symbol that did not keep one of them reads it as 0, its train
mean after normalisation, at fit and predict time alike. A loaded pooled model predicts for one symbol at a
time: `bind(symbol)` chooses that symbol's scaling and narrows `features` to the ones the symbol has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import polars as pl

from models.base import LABEL, Forecaster, ModelError, ModelParams, feature_matrix

if TYPE_CHECKING:
    import optuna

__all__ = ["POOLED_FOLDER", "POOLED_SUFFIX", "PooledForecaster", "SymbolScale", "base_type", "is_pooled",
           "pooled_features", "pooled_type", "symbol_features"]

POOLED_SUFFIX = "-pooled"
POOLED_FOLDER = "_POOLED_"
"""the registry folder of pooled versions, in place of a symbol: no symbol can take this name."""


def pooled_type(model_type: str) -> str:
    """"catboost" -> "catboost-pooled"."""
    return f"{model_type}{POOLED_SUFFIX}"


def is_pooled(model_type: str) -> bool:
    return model_type.endswith(POOLED_SUFFIX)


def base_type(model_type: str) -> str:
    """"catboost-pooled" -> "catboost"; a per-symbol type is its own base."""
    return model_type.removesuffix(POOLED_SUFFIX)


def symbol_features(description: Mapping[str, Any], symbol: str) -> list[str]:
    """The features a pooled model saved as `description` (its model.json) reads for `symbol`."""
    scales = description.get("state", {}).get("symbols", {})
    if symbol not in scales:
        raise ModelError(f"{description.get('model_type')}: not fitted on {symbol}")
    return [str(f) for f in scales[symbol]["features"]]


def pooled_features(kept: Mapping[str, Sequence[str]], max_features: int) -> tuple[str, ...]:
    """The features kept by the most symbols (ties: the name), at most `max_features`."""
    counts = Counter(f for features in kept.values() for f in dict.fromkeys(features))
    return tuple(sorted(counts, key=lambda f: (-counts[f], f))[:max_features])


@dataclass(frozen=True)
class SymbolScale:
    """One symbol's normalisation, fitted on its train rows: per feature it has, mean and std; label std."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_std: float

    @classmethod
    def fit(cls, train: pl.DataFrame, features: Sequence[str]) -> SymbolScale:
        present = tuple(f for f in features if f in train.columns)
        values = feature_matrix(train, present) if present else np.zeros((train.height, 0))
        std = values.std(axis=0)
        labels = train[LABEL].cast(pl.Float64).to_numpy()
        label_std = float(labels.std()) if labels.size else 0.0
        return cls(present, tuple(values.mean(axis=0).tolist()), tuple(np.where(std > 0, std, 1.0).tolist()),
                   label_std if label_std > 0 else 1.0)

    def apply(self, frame: pl.DataFrame, features: Sequence[str], label: bool) -> pl.DataFrame:
        """`frame`'s date (and label, scaled, when `label`) with every pooled feature normalised; 0 where the
        symbol has not got the feature."""
        scaled = {f: (pl.col(f).cast(pl.Float64) - m) / s for f, m, s in zip(self.features, self.mean, self.std,
                                                                              strict=True)}
        columns = [scaled.get(f, pl.lit(0.0)).alias(f) for f in features]
        if label:
            columns.append((pl.col(LABEL).cast(pl.Float64) / self.label_std).alias(LABEL))
        return frame.select("date", *columns)

    def to_state(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": list(self.mean), "std": list(self.std),
                "label_std": self.label_std}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SymbolScale:
        return cls(tuple(state["features"]), tuple(float(v) for v in state["mean"]),
                   tuple(float(v) for v in state["std"]), float(state["label_std"]))


class PooledForecaster(Forecaster):
    """One `base` model over many symbols (see the module docstring). Subclasses name the base type."""

    base: ClassVar[type[Forecaster]]

    def __init__(self, features: Sequence[str], params: ModelParams | None = None, *, horizon: int = 1,
                 seed: int = 0, threads: int = 1) -> None:
        super().__init__(features, params, horizon=horizon, seed=seed, threads=threads)
        self.pooled = tuple(features)
        """every feature the model reads; `features` narrows to a bound symbol's."""
        self.inner = self.base(self.pooled, self.params, horizon=horizon, seed=seed, threads=threads)
        self.scales: dict[str, SymbolScale] = {}
        self.symbol: str | None = None

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> ModelParams:
        return cls.base.suggest(trial)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols the model was fitted on, sorted."""
        return tuple(sorted(self.scales))

    def fit_symbols(self, train: Mapping[str, pl.DataFrame], val: Mapping[str, pl.DataFrame]) -> Self:
        """Fit on every symbol's train rows at once (`val` for early stopping), each normalised on its own."""
        if not train:
            raise ModelError(f"{self.model_type}: no symbols to fit on")
        if set(train) != set(val):
            raise ModelError(f"{self.model_type}: train and val name different symbols")
        self.scales = {s: SymbolScale.fit(train[s], self.pooled) for s in sorted(train)}
        if not any(scale.features for scale in self.scales.values()):
            raise ModelError(f"{self.model_type}: none of the symbols has any of the pooled features")
        self.inner.fit_segments([self.scales[s].apply(train[s], self.pooled, label=True) for s in self.symbols],
                                [self.scales[s].apply(val[s], self.pooled, label=True) for s in self.symbols])
        self.fitted, self.symbol, self.features = True, None, self.pooled
        return self

    def bind(self, symbol: str) -> Self:
        """Predict for `symbol` from now on: its scaling, and `features` narrowed to the ones it has."""
        if symbol not in self.scales:
            raise ModelError(f"{self.model_type}: not fitted on {symbol} (fitted on {len(self.scales)} symbols: "
                             f"{', '.join(self.symbols[:10])}{' ...' if len(self.scales) > 10 else ''})")
        self.symbol, self.features = symbol, self.scales[symbol].features
        return self

    def _fit(self, train: pl.DataFrame, val: pl.DataFrame) -> None:
        raise ModelError(f"{self.model_type}: a pooled model is fitted on many symbols (fit_symbols); "
                         "walk-forward folds of one symbol cannot refit it")

    def _predict(self, frame: pl.DataFrame, context: pl.DataFrame | None) -> np.ndarray:
        if self.symbol is None:
            raise ModelError(f"{self.model_type}: bind(symbol) before predicting: the model serves "
                             f"{len(self.scales)} symbols")
        scale = self.scales[self.symbol]
        rows = scale.apply(frame, self.pooled, label=False)
        history = scale.apply(context, self.pooled, label=False) if context is not None and context.height else None
        return self.inner.predict(rows, history) * scale.label_std

    def _save(self, directory: Path) -> dict[str, Any]:
        return {"inner": self.inner._save(directory), "pooled_features": list(self.pooled),
                "symbols": {s: scale.to_state() for s, scale in self.scales.items()}}

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        self.pooled = tuple(state["pooled_features"])
        if self.pooled != self.features:
            raise ModelError(f"{self.model_type}: model.json lists other features than the pooled state")
        self.inner = self.base(self.pooled, self.params, horizon=self.horizon, seed=self.seed, threads=self.threads)
        self.inner._load(directory, state["inner"])
        self.inner.fitted = True
        self.scales = {s: SymbolScale.from_state(v) for s, v in state["symbols"].items()}

    def save(self, directory: Path) -> None:
        """Write the model with every symbol's scaling; `features` in model.json are all pooled ones."""
        bound, self.features = self.features, self.pooled
        try:
            super().save(directory)
        finally:
            self.features = bound


def _pooled(base: type[Forecaster]) -> type[PooledForecaster]:
    name = f"Pooled{base.__name__}"
    return type(name, (PooledForecaster,), {"base": base, "model_type": pooled_type(base.model_type),
                                            "params_type": base.params_type, "__module__": __name__})


def _base(name: str) -> type[Forecaster]:
    from models.registry import model_class

    return model_class(name)


def __getattr__(name: str) -> type[PooledForecaster]:
    """`models.pooled.PooledCatBoostForecaster` and the like, built on first use (their bases import slowly)."""
    bases = {"PooledCatBoostForecaster": "catboost", "PooledLSTMForecaster": "lstm",
             "PooledTransformerForecaster": "transformer"}
    if name not in bases:
        raise AttributeError(name)
    cls = _pooled(_base(bases[name]))
    globals()[name] = cls
    return cls
