"""How a pooled model normalises its symbols' rows (models/pooled.py says which to use when):
- `SymbolScale`: one symbol's features and label scaled on that symbol's own train rows;
- `CrossSection`: per date, each feature's mean and std across the symbols, for z-scores (clipped to +-CLIP);
- `label_means` / `excess_labels`: each date's mean label across the symbols, and the labels less it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from models.base import LABEL, ModelError, feature_matrix

__all__ = ["CLIP", "SYMBOLS_PER_QUERY", "CrossSection", "SymbolScale", "excess_labels", "label_means"]

CLIP = 3.0
"""cross-sectional z-scores are clipped to [-CLIP, CLIP]: one symbol's outlier day cannot dominate."""
SYMBOLS_PER_QUERY = 32
"""symbols whose rows one normalisation query reads at once (CrossSection.apply_many)."""
_SYMBOL = "__symbol"


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


def _columns(frame: pl.DataFrame, features: Sequence[str], present: Sequence[str] | None = None) -> list[pl.Expr]:
    """`features` of `frame` as Float64; null where the frame lacks one (or `present` does not name it)."""
    return [pl.col(f).cast(pl.Float64) if f in frame.columns and (present is None or f in present)
            else pl.lit(None, pl.Float64).alias(f) for f in features]


@dataclass(frozen=True)
class CrossSection:
    """Per date, the mean and population std of each feature over the symbols with a value that day.

    `stats` has a `date` column, then `<feature>:mean` and `<feature>:std` for each feature, one row per date.
    """

    features: tuple[str, ...]
    stats: pl.DataFrame

    @classmethod
    def of(cls, frames: Mapping[str, pl.DataFrame], features: Sequence[str]) -> CrossSection:
        """The statistics of every date of `frames` (symbol -> rows with `date` and some of `features`)."""
        names = tuple(features)
        long = pl.concat([frame.select(pl.col("date"), *_columns(frame, names)) for frame in frames.values()])
        stats = long.group_by("date").agg(
            *(pl.col(f).mean().alias(f"{f}:mean") for f in names),
            *(pl.col(f).std(ddof=0).alias(f"{f}:std") for f in names)).sort("date")
        return cls(names, stats)

    @property
    def last_date(self) -> Any:
        return self.stats["date"].max()

    def extend(self, newer: CrossSection) -> CrossSection:
        """These statistics, plus `newer`'s for the dates these lack; the dates these have are kept as they are."""
        if newer.features != self.features:
            raise ModelError("cross-sections of different features cannot be merged")
        added = newer.stats.join(self.stats.select("date"), on="date", how="anti")
        return CrossSection(self.features, pl.concat([self.stats, added]).sort("date"))

    def apply(self, frame: pl.DataFrame, present: Sequence[str]) -> pl.DataFrame:
        """`frame`'s date with each feature z-scored against its date's statistics and clipped; 0 (the day's
        mean) where the symbol has not got the feature, the value is missing or the day's std is 0.

        Raises:
            ModelError: a date of `frame` has no statistics.
        """
        return self.apply_many([(frame, present)])[0]

    def apply_many(self, items: Sequence[tuple[pl.DataFrame, Sequence[str]]]) -> list[pl.DataFrame]:
        """`apply(frame, present)` of every (frame, present) item, in order: the rows of SYMBOLS_PER_QUERY
        symbols at a time go through one query (a query per symbol costs more than its rows at market scale;
        all of them at once would hold the statistics' columns beside every row)."""
        out: list[pl.DataFrame] = []
        for start in range(0, len(items), SYMBOLS_PER_QUERY):
            chunk = items[start:start + SYMBOLS_PER_QUERY]
            long = pl.concat([frame.select("date", *_columns(frame, self.features, present),
                                           pl.lit(i, pl.UInt32).alias(_SYMBOL)) for i, (frame, present) in
                              enumerate(chunk)])
            self._check_dates(long)
            joined = long.join(self.stats, on="date", how="left", maintain_order="left")
            zscores = joined.select(_SYMBOL, "date", *(
                pl.when(pl.col(f"{f}:std") > 0).then(((pl.col(f) - pl.col(f"{f}:mean")) / pl.col(f"{f}:std"))
                                                     .clip(-CLIP, CLIP)).fill_null(0.0).alias(f)
                for f in self.features))
            parts = zscores.partition_by(_SYMBOL, as_dict=True, include_key=False, maintain_order=True)
            out += [parts.get((i,), zscores.clear().drop(_SYMBOL)) for i in range(len(chunk))]
        return out

    def _check_dates(self, frame: pl.DataFrame) -> None:
        unknown = frame.select("date").join(self.stats.select("date"), on="date", how="anti")
        if unknown.height:
            dates = unknown["date"].sort()
            raise ModelError(f"no cross-section for {unknown.height} date(s) {dates[0]}..{dates[-1]}: the model "
                             f"z-scores features across its symbols per date and knows dates up to "
                             f"{self.last_date}; extend it from the current feature sets or retrain it")


def label_means(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Per date, the mean label over the symbols' rows of that date (these rows' labels only)."""
    return pl.concat([f.select("date", pl.col(LABEL).cast(pl.Float64)) for f in frames]).group_by("date").agg(
        pl.col(LABEL).mean().alias("__day_mean"))


def excess_labels(frames: Mapping[str, pl.DataFrame], label_means: pl.DataFrame | None) -> dict[str, pl.DataFrame]:
    """Each of `frames` with its label minus that date's mean label over the symbols (as is without
    `label_means`): one query over every symbol's labels."""
    if label_means is None:
        return dict(frames)
    labels = pl.concat([f.select("date", LABEL, pl.lit(i, pl.UInt32).alias(_SYMBOL)) for i, f in
                        enumerate(frames.values())], how="vertical_relaxed")
    excess = labels.join(label_means, on="date", how="left", maintain_order="left").select(
        _SYMBOL, (pl.col(LABEL) - pl.col("__day_mean")).alias(LABEL))
    parts = excess.partition_by(_SYMBOL, as_dict=True, include_key=False, maintain_order=True)
    return {s: f.with_columns(parts[(i,)][LABEL]) if (i,) in parts else f
            for i, (s, f) in enumerate(frames.items())}
