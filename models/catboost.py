"""Gradient-boosted trees (CatBoost) on the features of each row, early-stopped on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from pydantic import Field

from models.base import LABEL, TRAIN_SAMPLE, VAL_SAMPLE, Forecaster, ModelError, ModelParams, feature_matrix

if TYPE_CHECKING:
    import optuna
    from catboost import CatBoostRegressor, Pool

__all__ = ["WEIGHTS_FILE", "CatBoostForecaster", "CatBoostParams"]

WEIGHTS_FILE = "model.cbm"


class CatBoostParams(ModelParams):
    """Boosting size and regularisation; early stopping trims `iterations` on the validation split."""

    iterations: int = Field(500, ge=1)
    depth: int = Field(6, ge=1, le=16)
    learning_rate: float = Field(0.05, gt=0)
    l2_leaf_reg: float = Field(3.0, ge=0)
    early_stopping_rounds: int = Field(50, ge=1)


class CatBoostForecaster(Forecaster):
    """CatBoostRegressor (RMSE) on the features at row t; past rows are not read, so context is unused."""

    model_type = "catboost"
    samples_rows = True
    params_type = CatBoostParams
    params: CatBoostParams

    _regressor: CatBoostRegressor
    best_iteration: int | None = None

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> CatBoostParams:
        """Draw tree count, depth, learning rate and L2 regularisation."""
        return CatBoostParams(iterations=trial.suggest_int("iterations", 100, 1500),
                              depth=trial.suggest_int("depth", 3, 8),
                              learning_rate=trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
                              l2_leaf_reg=trial.suggest_float("l2_leaf_reg", 1.0, 10.0, log=True))

    @property
    def context_rows(self) -> int:
        return 0  # each row on its own features

    def _fit(self, train: pl.DataFrame, val: pl.DataFrame) -> None:
        from catboost import CatBoostError, CatBoostRegressor

        p = self.params
        self._regressor = CatBoostRegressor(
            iterations=p.iterations, depth=p.depth, learning_rate=p.learning_rate, l2_leaf_reg=p.l2_leaf_reg,
            loss_function="RMSE", random_seed=self.seed, thread_count=self.threads, verbose=False,
            allow_writing_files=False)
        train, val = self._within_budget(train, TRAIN_SAMPLE), self._within_budget(val, VAL_SAMPLE)
        try:
            self._regressor.fit(self._pool(train), eval_set=self._pool(val),
                                early_stopping_rounds=p.early_stopping_rounds, use_best_model=True)
        except CatBoostError as exc:
            raise ModelError(f"catboost: fit failed: {exc}") from exc
        self.best_iteration = self._regressor.get_best_iteration()

    def _predict(self, frame: pl.DataFrame, context: pl.DataFrame | None) -> np.ndarray:
        values = self._regressor.predict(feature_matrix(frame, self.features), thread_count=self.threads)
        return np.asarray(values, dtype=np.float64)

    def _save(self, directory: Path) -> dict[str, Any]:
        self._regressor.save_model(str(directory / WEIGHTS_FILE), format="cbm")
        return {"file": WEIGHTS_FILE, "best_iteration": self.best_iteration,
                "tree_count": self._regressor.tree_count_}

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        from catboost import CatBoostRegressor

        path = directory / WEIGHTS_FILE
        if not path.is_file():
            raise ModelError(f"catboost: weights missing: {path}")
        self._regressor = CatBoostRegressor().load_model(str(path), format="cbm")
        self.best_iteration = state.get("best_iteration")

    def _pool(self, frame: pl.DataFrame) -> Pool:
        """Features and labels, with feature names so importances read by column."""
        from catboost import Pool

        return Pool(feature_matrix(frame, self.features), frame[LABEL].cast(pl.Float64).to_numpy(),
                         feature_names=list(self.features))
