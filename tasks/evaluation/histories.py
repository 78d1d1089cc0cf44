"""The rows a walk-forward CV reads of a feature set, and one copy of a universe's of them for every pooled CV of
this process that reads them at the same time."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import polars as pl

from models.base import LABEL
from schemas import FeatureSetRef
from stores.features import read_split
from tasks.data.split import PART

__all__ = ["CV_PARTS", "cv_history", "shared_histories"]

CV_PARTS = ("train", "embargo", "val")
"""parts of the `all` split that walk-forward cross-validation may read (never test or latest)."""


def cv_history(ref: FeatureSetRef, features: Sequence[str] | None = None) -> pl.DataFrame:
    """The rows walk-forward CV may read: up to the last validation row; the embargo after val is left out,
    its labels read test closes. `features`: only those feature columns (with date and label), else all columns."""
    everything = read_split(ref, "all", None if features is None else ["date", LABEL, PART, *features])
    last_val = everything.filter(pl.col(PART) == "val")["date"].max()
    return everything.filter((pl.col("date") <= last_val) & pl.col(PART).is_in(CV_PARTS)).drop(PART)


@dataclass
class _Shared:
    users: int = 0
    frames: dict[str, pl.DataFrame] | None = None
    reading: threading.Lock = field(default_factory=threading.Lock)


_SHARED: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], _Shared] = {}
_SHARED_LOCK = threading.Lock()


@contextmanager
def shared_histories(refs: Mapping[str, FeatureSetRef], features: Sequence[str]) -> Iterator[dict[str, pl.DataFrame]]:
    """`cv_history(ref, features)` of every symbol of `refs`, read once for all the pooled CVs of this process that
    read the same feature sets and features while it is open (a universe's pooled types do, side by side): at
    market scale each copy is gigabytes. The frames are dropped when the last of them ends; do not modify them.
    (Tasks name this function, not its lock: Dask pickles what a task's code names, and a lock cannot be pickled.)"""
    key = (tuple(sorted((symbol, ref.content_hash) for symbol, ref in refs.items())), tuple(features))
    with _SHARED_LOCK:
        shared = _SHARED.setdefault(key, _Shared())
        shared.users += 1
    try:
        with shared.reading:  # the first reads, the others wait for its frames; a failed read is retried by the next
            if shared.frames is None:
                shared.frames = {symbol: cv_history(ref, features) for symbol, ref in refs.items()}
        yield shared.frames
    finally:
        with _SHARED_LOCK:
            shared.users -= 1
            if not shared.users:
                del _SHARED[key]
