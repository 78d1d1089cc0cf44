"""The Forecaster contract every model type implements.

Public `fit` / `predict` / `save` / `load` validate, then call the model's own `_fit` / `_predict` /
`_save` / `_load`. Models never import Prefect and never choose file paths: callers hand them a folder.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from models.notices import counted_notices

if TYPE_CHECKING:
    import optuna

__all__ = ["LABEL", "MODEL_FILE", "TRAIN_SAMPLE", "VAL_SAMPLE", "Forecaster", "ModelError", "ModelParams",
           "feature_matrix"]

LABEL = "label"
MODEL_FILE = "model.json"


class ModelError(RuntimeError):
    """A model cannot be fitted, used or loaded; the message says which and why."""


class ModelParams(BaseModel):
    """Hyper-parameters of one model type: defaults here, search space in `Forecaster.suggest`."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def feature_matrix(frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The feature columns as a float64 array (rows, features); a copy, so callers may not alter inputs."""
    return frame.select(pl.col(list(features)).cast(pl.Float64)).to_numpy().astype(np.float64, copy=True)


TRAIN_SAMPLE, VAL_SAMPLE = 0, 1
"""salts of the seeded row-budget samples of a fit's train and val rows (Forecaster.budget_rows)."""


class Forecaster(ABC):
    """Predicts the label (forward log return over `horizon` days) from the feature columns.

    Args:
        features: the feature columns to use, in order.
        params: hyper-parameters; the type's defaults when None.
        horizon: label horizon in days (models that read past labels must not use the last `horizon`).
        seed: makes fitting deterministic.
        threads: CPU threads the model may use.
    """

    model_type: ClassVar[str]
    params_type: ClassVar[type[ModelParams]]
    samples_rows: ClassVar[bool] = False
    """True: a fit under a `row_budget` reads one row at a time, only the `budget_rows` sample (salts TRAIN_SAMPLE
    and VAL_SAMPLE) of its train and val rows stacked in order."""

    def __init__(self, features: Sequence[str], params: ModelParams | None = None, *, horizon: int = 1,
                 seed: int = 0, threads: int = 1) -> None:
        if not features:
            raise ModelError(f"{self.model_type}: no features given")
        if params is not None and not isinstance(params, self.params_type):
            raise ModelError(f"{self.model_type}: params must be {self.params_type.__name__}, "
                             f"got {type(params).__name__}")
        self.features = tuple(features)
        self.params = params if params is not None else self.params_type()
        self.horizon = horizon
        self.seed = seed
        self.threads = threads
        self.fitted = False
        self.fit_notices: dict[str, int] = {}
        """statsmodels' routine warnings the last fit raised, by kind (models/notices.py); none was shown."""
        self.row_budget: int | None = None
        """at most this many train rows one pass of a fit reads (None: all): CatBoost fits on a seeded sample of
        this many train rows (and val rows), a network draws this many training windows afresh each epoch and
        validates on a fixed seeded sample of this many. Pooled models set it (models.pooled_max_rows)."""

    # -- the contract -------------------------------------------------------------------------------
    @property
    def context_rows(self) -> int | None:
        """How many of the context rows right before a predicted frame `predict` reads (None: all of them)."""
        return None

    @classmethod
    @abstractmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> ModelParams:
        """Draw hyper-parameters from this type's Optuna search space."""

    def fit(self, train: pl.DataFrame, val: pl.DataFrame) -> Self:
        """Fit on `train`, using `val` only for early stopping / model choice; `fit_notices` then counts the
        routine library warnings the fit raised."""
        for name, frame in (("train", train), ("val", val)):
            self._check(frame, name, need_label=True)
        with counted_notices() as notices:
            self._fit(train, val)
        self.fit_notices = dict(notices)
        self.fitted = True
        return self

    def predict(self, frame: pl.DataFrame, context: pl.DataFrame | None = None) -> np.ndarray:
        """One prediction per row of `frame`.

        Args:
            frame: rows to predict, in date order.
            context: the rows right before `frame` (same columns), for models that read history.
        """
        if not self.fitted:
            raise ModelError(f"{self.model_type}: predict called before fit or load")
        self._check(frame, "frame", need_label=False)
        if context is not None and context.height:
            self._check(context, "context", need_label=False)
            if context["date"].max() >= frame["date"].min():  # type: ignore[operator]
                raise ModelError(f"{self.model_type}: context must end before the first predicted row")
        predictions = np.asarray(self._predict(frame, context), dtype=np.float64).reshape(-1)
        if predictions.shape != (frame.height,):
            raise ModelError(f"{self.model_type}: produced {predictions.shape[0]} predictions "
                             f"for {frame.height} rows")
        if not np.isfinite(predictions).all():
            raise ModelError(f"{self.model_type}: produced non-finite predictions")
        return predictions

    def save(self, directory: Path) -> None:
        """Write the fitted model into `directory` (created if missing): no pickles."""
        if not self.fitted:
            raise ModelError(f"{self.model_type}: cannot save an unfitted model")
        directory.mkdir(parents=True, exist_ok=True)
        description = {"model_type": self.model_type, "params": self.params.model_dump(mode="json"),
                       "features": list(self.features), "horizon": self.horizon, "seed": self.seed,
                       "state": self._save(directory)}
        (directory / MODEL_FILE).write_text(json.dumps(description, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, threads: int = 1) -> Forecaster:
        """Load a model saved by `save`, whatever its type."""
        from models.registry import model_class

        path = directory / MODEL_FILE
        try:
            description = json.loads(path.read_text(encoding="utf-8"))
            model_type = description["model_type"]
        except FileNotFoundError:
            raise ModelError(f"model file missing: {path}") from None
        except (ValueError, KeyError) as exc:
            raise ModelError(f"model file corrupt: {path} ({exc})") from None
        kind = model_class(model_type)
        if cls is not Forecaster and kind is not cls:
            raise ModelError(f"{path} holds a {model_type} model, not {cls.model_type}")
        model = kind(description["features"], kind.params_type(**description["params"]),
                     horizon=description["horizon"], seed=description["seed"], threads=threads)
        try:
            model._load(directory, description["state"])
        except ModelError:
            raise
        except Exception as exc:  # a damaged weights file surfaces as whatever its reader raises
            raise ModelError(f"cannot load {model_type} model from {directory}: {exc}") from exc
        model.fitted = True
        return model

    def fit_segments(self, train: Sequence[pl.DataFrame], val: Sequence[pl.DataFrame]) -> Self:
        """Fit on several series at once (one per symbol): `train[i]` and `val[i]` are the train and val rows of
        series i. Models that read past rows never read across two series."""
        if not train or len(train) != len(val):
            raise ModelError(f"{self.model_type}: {len(train)} train and {len(val)} val series")
        for i, (t, v) in enumerate(zip(train, val, strict=True)):
            self._check(t, f"train series {i}", need_label=True)
            self._check(v, f"val series {i}", need_label=True)
        with counted_notices() as notices:
            self._fit_segments(list(train), list(val))
        self.fit_notices = dict(notices)
        self.fitted = True
        return self

    def budget_rows(self, height: int, salt: int) -> np.ndarray | None:
        """The rows, in order, of a seeded sample of `row_budget` out of `height` rows; None: all of them."""
        if self.row_budget is None or height <= self.row_budget:
            return None
        return np.sort(np.random.default_rng([self.seed, salt]).choice(height, self.row_budget, replace=False))

    def _within_budget(self, frame: pl.DataFrame, salt: int) -> pl.DataFrame:
        """`frame`, or the rows `budget_rows` keeps of it when it has more than `row_budget`."""
        rows = self.budget_rows(frame.height, salt)
        return frame if rows is None else frame[rows]

    # -- what each model type implements ----------------------------------------------------------
    @abstractmethod
    def _fit(self, train: pl.DataFrame, val: pl.DataFrame) -> None: ...

    def _fit_segments(self, train: list[pl.DataFrame], val: list[pl.DataFrame]) -> None:
        """Several series: by default their rows stacked, for models that read one row at a time."""
        self._fit(pl.concat(train, how="vertical_relaxed"), pl.concat(val, how="vertical_relaxed"))

    @abstractmethod
    def _predict(self, frame: pl.DataFrame, context: pl.DataFrame | None) -> np.ndarray: ...

    @abstractmethod
    def _save(self, directory: Path) -> dict[str, Any]:
        """Write model files; return small JSON-able state (e.g. scaler values) kept in model.json."""

    @abstractmethod
    def _load(self, directory: Path, state: dict[str, Any]) -> None: ...

    # -- helpers ----------------------------------------------------------------------------------
    def _check(self, frame: pl.DataFrame, name: str, need_label: bool) -> None:
        required = [*self.features, "date"] + ([LABEL] if need_label else [])
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise ModelError(f"{self.model_type}: {name} lacks column(s) {', '.join(missing[:5])}")
        if frame.height == 0:
            raise ModelError(f"{self.model_type}: {name} has no rows")
        values = feature_matrix(frame, self.features)
        if not np.isfinite(values).all():
            raise ModelError(f"{self.model_type}: {name} has null or non-finite feature values")
        if need_label and frame[LABEL].null_count():
            raise ModelError(f"{self.model_type}: {name} has rows without a label")
