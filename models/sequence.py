"""What the LSTM and Transformer forecasters share: params, the LightningModule, fit/predict (their rows are
scaled and cut into windows by models/windows.py).

A window ending at row t holds rows t - lookback + 1 .. t, so a prediction for row t never sees a later row.
At predict time the window reaches back into `context`; where there is too little history (no context, or a
short one) the window is padded at the front with zeros, which is the train mean once features are scaled.

Networks train in a pool of worker processes, one per CPU core (`fit_workers`, models/workers.py): torch's RNG,
thread count and determinism flags are process-wide, so fits in threads of one process must take turns, while fits
in processes run side by side. A fit returns its weights, bit for bit those it would have in this process. In a
daemonic process (a Dask worker), or on one core, fits take turns here instead.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import threading
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any, ClassVar, cast

import lightning as L
import numpy as np
import polars as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from pydantic import Field
from torch import nn

from models.base import LABEL, Forecaster, ModelError, ModelParams, feature_matrix
from models.windows import PREDICT_CHUNK, Scaler, Stacked, WindowDataModule, sliding_windows, with_history
from models.workers import WorkerDied, WorkerPool

if TYPE_CHECKING:
    import optuna

__all__ = ["WEIGHTS_FILE", "SequenceForecaster", "SequenceParams", "SequenceRegressor", "fit_workers"]

WEIGHTS_FILE = "weights.pt"
# Lightning logs banners (hardware, tensor cores, tips, "fit stopped") at info level; its warnings still pass.
_CHATTY_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class SequenceParams(ModelParams):
    """Hyper-parameters every windowed network shares."""

    # Defaults measured on a known signal (benchmarks/sanity.py) and a real series (GOOG): on noisy returns
    # the network part mostly fits noise, so strong dropout before the output layer, a high learning rate
    # and AdamW's decay let the linear skip carry what is learnable within the early-stopping budget.
    lookback: int = Field(10, ge=1, description="rows per window, the predicted row included")
    dropout: float = Field(0.7, ge=0.0, lt=1.0)
    learning_rate: float = Field(1e-2, gt=0.0)
    weight_decay: float = Field(1.0, ge=0.0, description="AdamW's decoupled decay")
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(50, ge=1)
    patience: int = Field(5, ge=1, description="epochs without a better val_loss before stopping")


class SequenceRegressor(L.LightningModule):
    """MSE regression of the scaled label on a window, with AdamW; the network is injected."""

    def __init__(self, net: nn.Module, learning_rate: float, weight_decay: float) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.learning_rate, self.weight_decay = learning_rate, weight_decay

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(batch, lookback, n_features) -> (batch,)."""
        return self.net(windows)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        windows, target = batch  # not logged: nothing reads it, and Lightning's logging costs a little every step
        return nn.functional.mse_loss(self.net(windows), target)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        windows, target = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(windows), target), batch_size=len(target))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # foreach: one kernel per step for all parameters, not one per parameter (the same numbers, bit for bit)
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay,
                                 foreach=True)


# torch's RNG, thread count and determinism flags are process-wide: two fits interleaving in threads would
# draw from one RNG and make results depend on timing. One torch session at a time keeps every fit seeded.
_TORCH_LOCK = threading.Lock()


@contextmanager
def _torch_session(threads: int) -> Iterator[None]:
    """CPU threads for this model, one session at a time; torch's process-wide settings restored afterwards."""
    with _TORCH_LOCK:
        previous_threads = torch.get_num_threads()
        deterministic = (torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled())
        torch.set_num_threads(threads)
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            torch.set_num_threads(previous_threads)
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])  # Trainer sets it


@dataclass(frozen=True)
class _FitJob:
    """What a worker process needs to train one network: the forecaster class, its params and the scaled rows."""

    cls: type[SequenceForecaster]
    features: tuple[str, ...]
    params: dict[str, Any]
    horizon: int
    seed: int
    threads: int
    train: Stacked
    val: Stacked
    budget: int | None = None


@dataclass(frozen=True)
class _Fitted:
    weights: bytes
    """the best epoch's state_dict, as torch.save writes it."""
    summary: dict[str, Any]


def _train(job: _FitJob) -> _Fitted:
    """Train one network on `job`'s rows (in a worker process, or in this one) and return its best weights."""
    model = job.cls(job.features, job.cls.params_type(**job.params), horizon=job.horizon, seed=job.seed,
                    threads=job.threads)
    p = model.params
    data = WindowDataModule(job.train, job.val, p.lookback, p.batch_size, job.seed, job.budget)
    with _torch_session(job.threads), TemporaryDirectory(prefix="sequence-fit-") as scratch:
        L.seed_everything(job.seed, workers=True, verbose=False)
        regressor = SequenceRegressor(model._build_net(len(job.features)), p.learning_rate, p.weight_decay)
        checkpoint = ModelCheckpoint(dirpath=scratch, monitor="val_loss", mode="min", save_weights_only=True)
        trainer = L.Trainer(
            accelerator="auto", devices=1, deterministic=True, max_epochs=p.max_epochs,
            callbacks=[EarlyStopping(monitor="val_loss", mode="min", patience=p.patience), checkpoint],
            logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=scratch)
        trainer.fit(regressor, datamodule=data)
        if not checkpoint.best_model_path:
            raise ModelError(f"{model.model_type}: training produced no finite validation loss")
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    regressor.load_state_dict(best["state_dict"])
    buffer = io.BytesIO()
    torch.save(regressor.net.cpu().state_dict(), buffer)
    return _Fitted(buffer.getvalue(), {"epochs": int(trainer.current_epoch), "best_epoch": int(best["epoch"]),
                                       "best_val_loss": float(cast(torch.Tensor, checkpoint.best_model_score))})


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def fit_workers() -> int:
    """Worker processes networks train in: one per CPU core available to this process; 0 where fits take turns in
    this process (one core, or a daemonic process: a Dask worker, whose cluster already spreads the jobs)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores < 2 or multiprocessing.current_process().daemon else cores


def _pool() -> WorkerPool | None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None and (workers := fit_workers()):
            _POOL = WorkerPool(workers)
        return _POOL


def _run_fit(job: _FitJob) -> _Fitted:
    """`_train(job)` in a worker process (models/workers.py), or here when there is no pool. A worker that died
    (killed, out of memory) fails this fit with a ModelError; the next fit starts a fresh worker."""
    pool = _pool()
    if pool is None:
        return _train(job)
    try:
        return pool.run(_train, job)
    except WorkerDied as exc:
        raise ModelError(f"{job.cls.model_type}: the process training the network died ({exc})") from None


def _stacked(frames: list[pl.DataFrame], features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every frame's features (rows, n_features) and labels (rows,) as float64, one frame after another."""
    stacked = pl.concat(frames, how="vertical_relaxed", rechunk=False)
    return feature_matrix(stacked, features), stacked[LABEL].to_numpy().astype(np.float64)


def _scaled(x: np.ndarray, y: np.ndarray, heights: list[int], scaler: Scaler) -> Stacked:
    """`x` and `y` scaled as the network reads them (float32 features), one series at a time: a float64 copy of
    one series' rows, not of all of them, is made on the way."""
    out = np.empty(x.shape, dtype=np.float32)
    for start, height in Stacked(out, y, tuple(heights)).parts():
        out[start:start + height] = scaler.features(x[start:start + height])
    return Stacked(out, y / scaler.target_scale, tuple(heights))


class SequenceForecaster(Forecaster):
    """Fit / predict / save / load for any network that maps (batch, lookback, n_features) to (batch,)."""

    params_type: ClassVar[type[SequenceParams]]
    params: SequenceParams
    training_summary: dict[str, Any]  # epochs run, best epoch and its val_loss (scaled units)
    _net: nn.Module
    _scaler: Scaler

    @abstractmethod
    def _build_net(self, n_features: int) -> nn.Module:
        """A freshly initialised network for this model's params."""

    @staticmethod
    def _suggest_training(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """The search space shared by every windowed network."""
        return {"lookback": trial.suggest_int("lookback", 5, 60),
                "dropout": trial.suggest_float("dropout", 0.0, 0.9),
                "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
                "weight_decay": trial.suggest_float("weight_decay", 1e-3, 10.0, log=True)}

    def _fit(self, train: pl.DataFrame, val: pl.DataFrame) -> None:
        self._fit_segments([train], [val])

    @property
    def context_rows(self) -> int:
        return self.params.lookback - 1  # a window's rows before the predicted one

    def _fit_segments(self, train: list[pl.DataFrame], val: list[pl.DataFrame]) -> None:
        p = self.params
        if max(t.height for t in train) < p.lookback:
            raise ModelError(f"{self.model_type}: train has {max(t.height for t in train)} rows, "
                             f"lookback needs {p.lookback}")
        # One float64 matrix of every series' train rows (the scaler's input), cut into per-series views: a pooled
        # fit's rows are gigabytes at market scale, so no second copy of them is made.
        train_x, train_y = _stacked(train, self.features)
        scaler = Scaler.fit(train_x, train_y)
        val_x, val_y = _stacked(val, self.features)
        # float32, as the windows read them: half the bytes sent to and held by the worker
        job = _FitJob(type(self), self.features, p.model_dump(), self.horizon, self.seed, self.threads,
                      _scaled(train_x, train_y, [t.height for t in train], scaler),
                      _scaled(val_x, val_y, [v.height for v in val], scaler), self.row_budget)
        del train_x, train_y, val_x, val_y
        fitted = _run_fit(job)
        with _torch_session(self.threads):
            net = self._build_net(len(self.features))
            net.load_state_dict(torch.load(io.BytesIO(fitted.weights), map_location="cpu", weights_only=True))
        self._net = net.eval()
        self._scaler = scaler
        self.training_summary = fitted.summary

    def _predict(self, frame: pl.DataFrame, context: pl.DataFrame | None) -> np.ndarray:
        lookback = self.params.lookback
        history = None
        if context is not None and context.height and lookback > 1:
            history = self._scaler.features(feature_matrix(context.tail(lookback - 1), self.features))
        rows = with_history(self._scaler.features(feature_matrix(frame, self.features)), history, lookback)
        windows = sliding_windows(rows, lookback)  # (frame.height, lookback, n_features)
        # Always on CPU: the same kernels as a loaded model, so saved and served predictions match bit for bit.
        with _torch_session(self.threads), torch.inference_mode():
            scaled = torch.cat([self._net(chunk) for chunk in windows.split(PREDICT_CHUNK)])  # (frame.height,)
        return scaled.numpy().astype(np.float64) * self._scaler.target_scale

    def _save(self, directory: Path) -> dict[str, Any]:
        torch.save(self._net.state_dict(), directory / WEIGHTS_FILE)
        return {"scaler": self._scaler.to_state(), "training": self.training_summary}

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        scaler = Scaler.from_state(state["scaler"])
        if scaler.mean.shape != (len(self.features),):
            raise ModelError(f"{self.model_type}: scaler has {scaler.mean.size} features, "
                             f"model has {len(self.features)}")
        net = self._build_net(len(self.features))
        try:
            net.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        except RuntimeError as error:  # saved by a network of another shape (another code version)
            mismatch = str(error).strip().splitlines()[-1].strip()
            raise ModelError(f"{self.model_type}: {WEIGHTS_FILE} does not fit this network ({mismatch}); "
                             "it was saved by another version of models/nets.py: retrain the model") from None
        self._net, self._scaler = net.eval(), scaler
        self.training_summary = dict(state.get("training", {}))
