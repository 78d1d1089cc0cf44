"""What a network reads: train-fitted scaling, windows of rows (one gather per batch) and the Lightning data module.

A window ending at row t holds rows t - lookback + 1 .. t; windows never span two series. Val windows, and windows
at predict time, reach back into the rows before them, padded at the front with zeros (the train mean once
features are scaled) where there are too few.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

__all__ = ["PREDICT_CHUNK", "Rows", "Scaler", "Stacked", "WindowDataModule", "Windows", "sliding_windows",
           "with_history"]

PREDICT_CHUNK = 4096  # windows per forward pass at predict time: bounds memory, same chunks on every call


@dataclass(frozen=True)
class Scaler:
    """Feature mean/std and the label scale, fitted on train only, so the nets see O(1) numbers."""

    mean: np.ndarray  # (n_features,)
    std: np.ndarray  # (n_features,)
    target_scale: float

    @classmethod
    def fit(cls, features: np.ndarray, target: np.ndarray) -> Scaler:
        """Fit on train features (rows, n_features) and labels (rows,); constant columns get std 1."""
        std = features.std(axis=0)
        target_scale = float(target.std())
        return cls(features.mean(axis=0), np.where(std > 0, std, 1.0),
                   target_scale if target_scale > 0 else 1.0)

    def features(self, values: np.ndarray) -> np.ndarray:
        """(rows, n_features) -> the same, standardised."""
        return (values - self.mean) / self.std

    def to_state(self) -> dict[str, Any]:
        """JSON-able; floats survive the round trip exactly."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "target_scale": self.target_scale}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Scaler:
        """Inverse of `to_state`."""
        return cls(np.asarray(state["mean"], dtype=np.float64), np.asarray(state["std"], dtype=np.float64),
                   float(state["target_scale"]))


def with_history(values: np.ndarray, history: np.ndarray | None, lookback: int) -> np.ndarray:
    """The last `lookback - 1` history rows, then `values`: (lookback - 1 + rows, n_features).

    Missing history is padded at the front with zeros, i.e. the train mean once features are scaled, so
    the first rows still get a full window (the padded part carries no information).
    """
    need = lookback - 1
    tail = history[max(len(history) - need, 0):] if history is not None and need else values[:0]
    padding = np.zeros((need - len(tail), values.shape[1]), dtype=values.dtype)
    return np.concatenate([padding, tail, values])


def sliding_windows(rows: np.ndarray, lookback: int) -> torch.Tensor:
    """(n, n_features) -> float32 (n - lookback + 1, lookback, n_features); window i ends at row i + lookback - 1."""
    values = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))  # (n, n_features)
    return values.unfold(0, lookback, 1).transpose(1, 2)  # a view: no copy per window


Rows = tuple[np.ndarray, np.ndarray]
"""scaled features (rows, n_features) and targets (rows,) of one series, in date order."""


@dataclass(frozen=True)
class Stacked:
    """Several series' scaled rows one after another: features float32 (rows, n_features), targets (rows,), and
    each series' row count, in order. A pooled fit's rows are one matrix, not one array per symbol."""

    x: np.ndarray
    y: np.ndarray
    heights: tuple[int, ...]

    @classmethod
    def of(cls, series: Rows | list[Rows] | Stacked) -> Stacked:
        """`series` stacked (a copy of the rows; none when they already are)."""
        if isinstance(series, Stacked):
            return series
        parts = series if isinstance(series, list) else [series]
        return cls(np.concatenate([np.asarray(x, dtype=np.float32) for x, _ in parts]),
                   np.concatenate([np.asarray(y, dtype=np.float64) for _, y in parts]),
                   tuple(len(x) for x, _ in parts))

    def parts(self) -> Iterator[tuple[int, int]]:
        """Each series' first row and row count."""
        start = 0
        for height in self.heights:
            yield start, height
            start += height


class Windows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows of `lookback` rows: window i is rows[starts[i]:starts[i] + lookback] and its target targets[i].

    A batch is read by one gather (`__getitems__`, which a DataLoader calls with a batch's indices), not as a stack
    of single windows: the same numbers, without a Python call per window.
    """

    def __init__(self, rows: torch.Tensor, starts: torch.Tensor, targets: torch.Tensor, lookback: int) -> None:
        self.rows, self.starts, self.targets = rows, starts, targets
        self._offsets = torch.arange(lookback)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([i])[0][0], self.targets[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.rows[self.starts[index, None] + self._offsets], self.targets[index]

    def subset(self, index: torch.Tensor) -> Windows:
        """The windows at `index`, in its order."""
        return Windows(self.rows, self.starts[index], self.targets[index], len(self._offsets))

    @classmethod
    def within(cls, series: Stacked, lookback: int) -> Windows:
        """Every window that lies inside one series (none spans two; a series shorter than `lookback` has none),
        series by series; its target is its last row's."""
        starts = [torch.arange(first, first + height - lookback + 1) for first, height in series.parts()
                  if height >= lookback]
        start = torch.cat(starts) if starts else torch.zeros(0, dtype=torch.long)
        return cls(torch.from_numpy(np.ascontiguousarray(series.x, dtype=np.float32)), start,
                   torch.tensor(series.y, dtype=torch.float32)[start + lookback - 1], lookback)

    @classmethod
    def after(cls, series: Stacked, history: Stacked, lookback: int) -> Windows:
        """One window per row of `series`, reaching back into the tail of the same series of `history` (padded
        with zeros where it is short, as `with_history`)."""
        rows, starts, first = [], [], 0
        for (start, height), (past, past_height) in zip(series.parts(), history.parts(), strict=True):
            block = with_history(series.x[start:start + height], history.x[past:past + past_height], lookback)
            rows.append(block)
            starts.append(torch.arange(first, first + height))
            first += len(block)
        return cls(torch.from_numpy(np.ascontiguousarray(np.concatenate(rows), dtype=np.float32)),
                   torch.cat(starts), torch.tensor(series.y, dtype=torch.float32), lookback)


def _as_batch(batch: Any) -> Any:
    """The DataLoader's collate step for `Windows`: its batches come batched."""
    return batch


class WindowDataModule(L.LightningDataModule):
    """Scaled train and val rows as sliding windows; val windows reach back into the tail of train.

    Args:
        train: one series' train rows, or several series' (one per symbol, or stacked): windows never span two
            series.
        val: the val rows that follow each train series, in the same order.
        lookback: rows per window.
        batch_size: training windows per batch (validation reads larger batches: no gradients).
        seed: seeds the shuffling of training windows.
        budget: at most this many training windows per epoch, drawn afresh each epoch, and a fixed sample of this
            many val windows (None: all of them).
    """

    def __init__(self, train: Rows | list[Rows] | Stacked, val: Rows | list[Rows] | Stacked, lookback: int,
                 batch_size: int, seed: int, budget: int | None = None) -> None:
        super().__init__()
        self.train_rows, self.val_rows = Stacked.of(train), Stacked.of(val)
        self.lookback, self.batch_size, self.seed, self.budget = lookback, batch_size, seed, budget

    def setup(self, stage: str) -> None:
        # Train windows end at rows t >= lookback - 1 of their series, so none is padded.
        self.train_set = Windows.within(self.train_rows, self.lookback)
        self.val_set = Windows.after(self.val_rows, self.train_rows, self.lookback)
        if self.budget is not None and len(self.val_set) > self.budget:  # the same windows every epoch
            chosen = torch.randperm(len(self.val_set), generator=torch.Generator().manual_seed(self.seed + 1))
            self.val_set = self.val_set.subset(chosen[:self.budget].sort().values)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        if self.budget is not None and len(self.train_set) > self.budget:  # a fresh draw of windows each epoch
            sampler = RandomSampler(self.train_set, num_samples=self.budget, generator=generator)
            return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, collate_fn=_as_batch)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=generator,
                          collate_fn=_as_batch)

    def val_dataloader(self) -> DataLoader:
        # No gradients: batches as large as prediction's (training's batch size only sets the steps' noise).
        return DataLoader(self.val_set, batch_size=max(self.batch_size, PREDICT_CHUNK), collate_fn=_as_batch)
