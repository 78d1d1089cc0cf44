"""Pooled forecasters: one model of a type fitted on the train rows of many symbols at once.

Two normalisations (`models.pooled_normalisation`):
- `symbol`: a symbol's features are normalised on that symbol's own train rows (mean 0, std 1) and its label
  divided by its train label std.
- `zscore` (cross-sectional, qlib's CSZScoreNorm): each feature is z-scored per date across the model's symbols
  (clipped to +-3) and the label demeaned per date across them, then divided by the symbol's train std of that
  excess label. The model learns what sets a symbol apart from the others that day; the market's move drops
  out. Each date's statistics read that date's features only, so no later row leaks in; the model keeps them
  (CrossSection) for every date it was given, and `extend` adds later dates from newer feature sets.
Either way predictions are scaled back with the symbol's label std. The symbol is not a feature. Sequence
models build their windows within each symbol, never across two (Forecaster.fit_segments).

A pooled model reads the features selected over its universe (tasks/data/select_universe.py); a symbol whose
feature set lacks one of them reads it as 0, its train mean after normalisation, at fit and predict time alike.
A loaded pooled model predicts for one symbol at a time: `bind(symbol)` chooses that symbol's scaling and narrows
`features` to the ones the symbol has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import polars as pl

from models.base import LABEL, TRAIN_SAMPLE, VAL_SAMPLE, Forecaster, ModelError, ModelParams
from models.normalisation import CLIP, CrossSection, SymbolScale, excess_labels, label_means

if TYPE_CHECKING:
    import optuna

__all__ = ["CLIP", "CROSS_SECTION_FILE", "MIN_SYMBOLS", "POOLED_FOLDER", "POOLED_SUFFIX", "CrossSection",
           "PooledForecaster",
           "SymbolScale", "base_type", "is_pooled", "normalisation_of", "pooled_type", "row_budget_of",
           "symbol_features"]

POOLED_SUFFIX = "-pooled"
POOLED_FOLDER = "_POOLED_"
"""the registry folder of pooled versions, in place of a symbol: no symbol can take this name."""
CROSS_SECTION_FILE = "cross_section.parquet"
MIN_SYMBOLS = 2
"""symbols a pooled model needs; a cross-sectional one also fits only dates shared by this many (a date of one
symbol has no spread: its features are 0 and its label, less the day's mean, is 0 too)."""


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


def row_budget_of(description: Mapping[str, Any]) -> int | None:
    """The rows per pass a pooled model saved as `description` (its model.json) was fitted with (None: all)."""
    budget = description.get("state", {}).get("row_budget")
    return None if budget is None else int(budget)


def normalisation_of(description: Mapping[str, Any]) -> str:
    """How a pooled model saved as `description` (its model.json) normalises: "zscore" or "symbol"."""
    return str(description.get("state", {}).get("normalisation", "symbol"))


def _shared_dates(frames: Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Each symbol's rows on dates that at least MIN_SYMBOLS of `frames` share; symbols left without rows go.

    Raises:
        ModelError: fewer than MIN_SYMBOLS symbols keep any row.
    """
    counts = pl.concat([f.select("date") for f in frames.values()]).group_by("date").len()
    shared = counts.filter(pl.col("len") >= MIN_SYMBOLS).select("date")
    kept = dict(frames) if shared.height == counts.height else {  # every date shared: the rows as they are
        s: f.join(shared, on="date", how="semi", maintain_order="left") for s, f in frames.items()}
    kept = {s: f for s, f in kept.items() if f.height}
    if len(kept) < MIN_SYMBOLS:
        raise ModelError(f"no date is shared by {MIN_SYMBOLS} of the {len(frames)} symbols: a cross-sectional "
                         "pooled model has nothing to compare")
    return kept


class PooledForecaster(Forecaster):
    """One `base` model over many symbols (see the module docstring). Subclasses name the base type."""

    base: ClassVar[type[Forecaster]]
    _prepared: tuple[pl.DataFrame, pl.DataFrame | None] | None = None
    """the normalised rows and context of the next `_predict` (predict_many), else None."""

    def __init__(self, features: Sequence[str], params: ModelParams | None = None, *, horizon: int = 1,
                 seed: int = 0, threads: int = 1) -> None:
        super().__init__(features, params, horizon=horizon, seed=seed, threads=threads)
        self.pooled = tuple(features)
        """every feature the model reads; `features` narrows to a bound symbol's."""
        self.inner = self.base(self.pooled, self.params, horizon=horizon, seed=seed, threads=threads)
        self.scales: dict[str, SymbolScale] = {}
        self.symbol: str | None = None
        self.cross_section: CrossSection | None = None
        """None: each symbol normalised on its own train rows; else z-scores across symbols per date."""

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> ModelParams:
        return cls.base.suggest(trial)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols the model was fitted on, sorted."""
        return tuple(sorted(self.scales))

    def fit_symbols(self, train: Mapping[str, pl.DataFrame], val: Mapping[str, pl.DataFrame],
                    cross_section: CrossSection | None = None, row_budget: int | None = None) -> Self:
        """Fit on every symbol's train rows at once (`val` for early stopping).

        Args:
            cross_section: None normalises each symbol on its own train rows; else the per-date statistics of
                the pooled features over the symbols (CrossSection.of), covering every date the model will be
                asked about: features are z-scored per date and the label demeaned per date.
            row_budget: at most this many rows (windows) per pass of the fit, drawn over every symbol (the
                inner model's `row_budget`); None: all. Kept with the model, so a walk-forward refit reads the
                same (`row_budget_of`).
        """
        if not train:
            raise ModelError(f"{self.model_type}: no symbols to fit on")
        if set(train) != set(val):
            raise ModelError(f"{self.model_type}: train and val name different symbols")
        if cross_section is not None and cross_section.features != self.pooled:
            raise ModelError(f"{self.model_type}: the cross-section covers other features than the model reads")
        if len(train) < MIN_SYMBOLS:
            raise ModelError(f"{self.model_type}: {len(train)} symbol(s) to fit on; a pooled model needs {MIN_SYMBOLS}")
        if cross_section is not None:
            train, val = _shared_dates(train), _shared_dates(val)
            both = set(train) & set(val)
            if len(both) < MIN_SYMBOLS:
                raise ModelError(f"{self.model_type}: {len(both)} symbol(s) have train and val rows on dates shared "
                                 f"with another symbol; a pooled model needs {MIN_SYMBOLS}")
            train, val = {s: train[s] for s in both}, {s: val[s] for s in both}
        self.cross_section = cross_section
        day_means = None if cross_section is None else label_means([*train.values(), *val.values()])
        train, val = excess_labels(train, day_means), excess_labels(val, day_means)
        self.scales = {s: SymbolScale.fit(train[s], self.pooled) for s in sorted(train)}
        if not any(scale.features for scale in self.scales.values()):
            raise ModelError(f"{self.model_type}: none of the symbols has any of the pooled features")
        self.symbol = None
        self.row_budget = self.inner.row_budget = row_budget
        if self.inner.samples_rows:  # only the rows its sample keeps are normalised
            self.inner.fit(self._sampled_inputs(train, TRAIN_SAMPLE), self._sampled_inputs(val, VAL_SAMPLE))
        else:
            self.inner.fit_segments(self._inputs_many(train), self._inputs_many(val))
        self.fitted, self.features = True, self.pooled
        return self

    def extend(self, newer: CrossSection) -> Self:
        """Add the statistics of dates the model has not seen (from newer feature sets); known dates keep theirs."""
        if self.cross_section is None:
            raise ModelError(f"{self.model_type}: normalised per symbol, it has no cross-section to extend")
        self.cross_section = self.cross_section.extend(newer)
        return self

    def _inputs_many(self, frames: Mapping[str, pl.DataFrame]) -> list[pl.DataFrame]:
        """`_inputs(s, frames[s], label=True)` of every symbol of `symbols`, in order, the z-scores of many
        symbols per query."""
        if self.cross_section is None:
            return [self._inputs(s, frames[s], label=True) for s in self.symbols]
        rows = self.cross_section.apply_many([(frames[s], self.scales[s].features) for s in self.symbols])
        return [r.with_columns((frames[s][LABEL].cast(pl.Float64) / self.scales[s].label_std).alias(LABEL))
                for s, r in zip(self.symbols, rows, strict=True)]

    def _sampled_inputs(self, frames: Mapping[str, pl.DataFrame], salt: int) -> pl.DataFrame:
        """What an inner model that samples rows reads of `_inputs_many(frames)` stacked: the rows of its row-budget
        sample (`budget_rows`), the same values, normalising only those rows (a fold at market scale has ~1M rows
        for a 50k sample)."""
        heights = [frames[s].height for s in self.symbols]
        rows = self.inner.budget_rows(sum(heights), salt)
        if rows is not None:
            starts = np.cumsum([0, *heights])
            cuts = np.searchsorted(rows, starts)
            frames = {s: frames[s][rows[cuts[i]:cuts[i + 1]] - starts[i]] for i, s in enumerate(self.symbols)}
        return pl.concat(self._inputs_many(frames), how="vertical_relaxed")

    def _inputs(self, symbol: str, frame: pl.DataFrame, label: bool) -> pl.DataFrame:
        """`frame` as the inner model reads it: date, every pooled feature normalised (and the scaled label)."""
        scale = self.scales[symbol]
        if self.cross_section is None:
            return scale.apply(frame, self.pooled, label)
        rows = self.cross_section.apply(frame, scale.features)
        if label:
            rows = rows.with_columns((frame[LABEL].cast(pl.Float64) / scale.label_std).alias(LABEL))
        return rows

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
        prepared, self._prepared = self._prepared, None
        rows, history = prepared if prepared is not None else (
            self._inputs(self.symbol, frame, label=False),
            None if (read := self._context(context)) is None else self._inputs(self.symbol, read, label=False))
        return self.inner.predict(rows, history) * self.scales[self.symbol].label_std

    @property
    def context_rows(self) -> int | None:
        return self.inner.context_rows

    def _context(self, context: pl.DataFrame | None) -> pl.DataFrame | None:
        """The rows of `context` the inner model reads (only those are normalised); None without any."""
        if context is not None and self.context_rows is not None:
            context = context.tail(self.context_rows)
        return context if context is not None and context.height else None

    def predict_many(self, items: Mapping[str, tuple[pl.DataFrame, pl.DataFrame | None]]) -> dict[str, np.ndarray]:
        """`bind(symbol).predict(frame, context)` of every symbol -> (frame, context) of `items`, the same numbers;
        a cross-sectional model z-scores the rows of many symbols per query (CrossSection.apply_many): over a
        universe a query per symbol costs more than its rows. The model stays bound to the last symbol."""
        prepared: dict[str, tuple[pl.DataFrame, pl.DataFrame | None]] = {}
        if self.cross_section is not None:
            for symbol in items:
                self.bind(symbol)  # an unknown symbol is refused before any work
            contexts = {s: self._context(context) for s, (_, context) in items.items()}
            asked = [(frame, self.scales[s].features) for s, (frame, _) in items.items()]
            asked += [(context, self.scales[s].features) for s, context in contexts.items() if context is not None]
            normalised = iter(self.cross_section.apply_many(asked))
            rows = {s: next(normalised) for s in items}
            prepared = {s: (rows[s], None if context is None else next(normalised)) for s, context in contexts.items()}
        out = {}
        try:
            for symbol, (frame, context) in items.items():
                self._prepared = prepared.get(symbol)
                out[symbol] = self.bind(symbol).predict(frame, context)
        finally:
            self._prepared = None
        return out

    def _save(self, directory: Path) -> dict[str, Any]:
        if self.cross_section is not None:
            self.cross_section.stats.write_parquet(directory / CROSS_SECTION_FILE)
        return {"inner": self.inner._save(directory), "pooled_features": list(self.pooled),
                "symbols": {s: scale.to_state() for s, scale in self.scales.items()},
                "normalisation": "symbol" if self.cross_section is None else "zscore", "row_budget": self.row_budget}

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        self.pooled = tuple(state["pooled_features"])
        if self.pooled != self.features:
            raise ModelError(f"{self.model_type}: model.json lists other features than the pooled state")
        self.inner = self.base(self.pooled, self.params, horizon=self.horizon, seed=self.seed, threads=self.threads)
        self.inner._load(directory, state["inner"])
        self.inner.fitted = True
        self.scales = {s: SymbolScale.from_state(v) for s, v in state["symbols"].items()}
        self.cross_section = CrossSection(self.pooled, pl.read_parquet(directory / CROSS_SECTION_FILE)) \
            if state.get("normalisation") == "zscore" else None
        self.row_budget = self.inner.row_budget = row_budget_of({"state": state})

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
