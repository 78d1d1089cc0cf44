"""Walk-forward cross-validation: which rows each fold fits, stops early on, reads as context and scores."""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import optuna
import polars as pl
import pytest

import tasks.evaluation.crossval as crossval
from models.base import LABEL, Forecaster, ModelParams
from models.registry import MODEL_CLASSES, model_class
from tasks.evaluation.crossval import (
    PredictionMetrics,
    pooled_walk_forward_metrics,
    prediction_metrics,
    summarize,
    walk_forward_metrics,
)
from tests.models.test_contract import FEATURES, ar1_frame


class MeanParams(ModelParams):
    pass


@dataclass
class Seen:
    """Dates one fold's model was fitted on, stopped early on, given as context and asked to predict."""

    train: list[date] = field(default_factory=list)
    val: list[date] = field(default_factory=list)
    context: list[date] = field(default_factory=list)
    scored: list[date] = field(default_factory=list)


class MeanForecaster(Forecaster):
    """Predicts the mean label of its fit rows, and records the dates of every frame it is handed."""

    model_type = "mean"
    params_type = MeanParams
    folds: ClassVar[list[Seen]] = []

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> ModelParams:
        return MeanParams()

    def _fit(self, train: pl.DataFrame, val: pl.DataFrame) -> None:
        self.folds.append(Seen(train=train["date"].to_list(), val=val["date"].to_list()))
        self._mean = float(train[LABEL].mean())  # type: ignore[arg-type]

    def _predict(self, frame: pl.DataFrame, context: pl.DataFrame | None) -> np.ndarray:
        self.folds[-1].context = [] if context is None else context["date"].to_list()
        self.folds[-1].scored = frame["date"].to_list()
        return np.full(frame.height, self._mean)

    def _save(self, directory: Path) -> dict[str, Any]:
        return {}

    def _load(self, directory: Path, state: dict[str, Any]) -> None: ...


@pytest.fixture
def mean_model(monkeypatch: pytest.MonkeyPatch) -> type[MeanForecaster]:
    monkeypatch.setitem(MODEL_CLASSES, "mean", f"{__name__}:MeanForecaster")
    monkeypatch.setattr(MeanForecaster, "folds", [])
    return MeanForecaster


def frame(rows: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"date": [date(2024, 1, 1) + timedelta(days=i) for i in range(rows)],
                         "x": rng.normal(size=rows), LABEL: rng.normal(size=rows)})


@pytest.mark.parametrize("horizon", [1, 3])
def test_folds_never_score_what_they_fit_and_respect_the_embargo(mean_model: type[MeanForecaster],
                                                                 horizon: int) -> None:
    data = frame(100)
    index = {d: i for i, d in enumerate(data["date"].to_list())}
    metrics = walk_forward_metrics("mean", MeanParams(), data, ["x"], horizon, 3, seed=0, threads=1)
    assert len(metrics) == len(mean_model.folds) == 3

    scored_before: set[int] = set()
    for seen, got in zip(mean_model.folds, metrics, strict=True):
        train, val = [index[d] for d in seen.train], [index[d] for d in seen.val]
        context, scored = [index[d] for d in seen.context], [index[d] for d in seen.scored]
        fitted = set(train) | set(val)
        assert not fitted & set(scored)
        # Contiguous blocks in date order, `horizon` rows apart: fit < (embargo) < early stop < (embargo) < score.
        assert train == list(range(train[0], train[-1] + 1)) and train[0] == 0
        assert val == list(range(val[0], val[-1] + 1))
        assert val[0] - train[-1] == horizon + 1
        assert scored[0] - val[-1] == horizon + 1
        assert val[0] == int((val[-1] + 1) * 0.8)  # the last fifth of the fit window stops early
        # Context is every row before the scored block, so the embargo rows are history, not scored.
        assert context == list(range(scored[0]))
        assert not scored_before & set(scored)
        scored_before |= set(scored)
        actual = data[LABEL].to_numpy()[scored]
        assert got == prediction_metrics(np.full(len(scored), data[LABEL][train].mean()), actual)
    assert max(scored_before) == 99  # the last block runs to the end


def test_a_real_model_learns_on_every_fold() -> None:
    data = ar1_frame(rows=300)
    params = model_class("catboost").params_type.model_validate({"iterations": 40})
    metrics = walk_forward_metrics("catboost", params, data, FEATURES, 1, 2, seed=1, threads=1)
    assert len(metrics) == 2
    for m in metrics:
        assert m.r2 > 0.05 and m.ic > 0.4  # AR(1) with phi 0.7: the signal is learnable


def test_summarize_mean_and_population_std() -> None:
    a = PredictionMetrics(rmse=1.0, mae=0.5, r2=0.1, directional_accuracy=0.5, ic=0.2, rank_ic=0.3)
    b = PredictionMetrics(rmse=3.0, mae=1.5, r2=-0.1, directional_accuracy=0.7, ic=0.4, rank_ic=0.1)
    summary = summarize([a, b])
    assert summary.folds == 2 and summary.per_fold == (a, b)
    assert astuple(summary.mean) == pytest.approx((2.0, 1.0, 0.0, 0.6, 0.3, 0.2))
    assert summary.std.rmse == pytest.approx(1.0) and summary.std.ic == pytest.approx(0.1)
    assert summarize([a]).std == PredictionMetrics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    empty = summarize([])  # a symbol that sat out every fold: no numbers, not zeros
    assert empty.folds == 0 and empty.per_fold == () and all(np.isnan(v) for v in astuple(empty.mean))


def test_pooled_folds_are_cut_by_date_and_a_fold_with_one_symbol_is_skipped_and_said(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from models.pooled import PooledForecaster

    long = frame(200)
    short = frame(200, seed=1).slice(60)  # starts on the 61st date of the long one
    fits: list[tuple[date, dict[str, list[date]]]] = []
    original = PooledForecaster.fit_symbols

    def spy(self: PooledForecaster, train: Any, val: Any, cross_section: Any = None,
            row_budget: int | None = None) -> PooledForecaster:
        fits.append((max(d for f in [*train.values(), *val.values()] for d in f["date"]),
                     {s: f["date"].to_list() for s, f in train.items()}))
        return original(self, train, val, cross_section, row_budget)

    monkeypatch.setattr(PooledForecaster, "fit_symbols", spy)
    said: list[str] = []
    params = model_class("catboost-pooled").params_type.model_validate({"iterations": 20})
    scores = pooled_walk_forward_metrics("catboost-pooled", params, {"LONG": long, "SHORT": short}, ["x"], 1, 3,
                                         seed=0, threads=1, normalisation="zscore", log=said.append)
    dates = long["date"].to_list()
    # Blocks of 50 shared dates: fold 1 fits before the 51st date, when only LONG has rows: skipped, said.
    [message] = said
    assert "fold 1 of 3 (scoring from " + str(dates[51]) + ") skipped: 1 symbol(s)" in message
    assert len(fits) == 2 and [len(v) for v in scores.values()] == [2, 2]
    for (last_fitted, train), score_start in zip(fits, (dates[101], dates[151]), strict=True):
        assert last_fitted < score_start  # no symbol fits or stops early on a date another one is scored on
        assert set(train) == {"LONG", "SHORT"}


def test_pooled_folds_fit_on_every_symbol_score_only_those_asked_for_within_the_row_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from models.pooled import PooledForecaster

    frames = {name: frame(200, seed=i) for i, name in enumerate(("AAA", "BBB", "CCC"))}
    fitted: list[tuple[set[str], int | None]] = []
    predicted: list[str] = []
    original_fit, original_bind = PooledForecaster.fit_symbols, PooledForecaster.bind

    def fit(self: PooledForecaster, train: Any, val: Any, cross_section: Any = None,
            row_budget: int | None = None) -> PooledForecaster:
        fitted.append((set(train), row_budget))
        return original_fit(self, train, val, cross_section, row_budget)

    def bind(self: PooledForecaster, symbol: str) -> PooledForecaster:
        predicted.append(symbol)
        return original_bind(self, symbol)

    monkeypatch.setattr(PooledForecaster, "fit_symbols", fit)
    monkeypatch.setattr(PooledForecaster, "bind", bind)
    params = model_class("catboost-pooled").params_type.model_validate({"iterations": 20})
    scores = pooled_walk_forward_metrics("catboost-pooled", params, frames, ["x"], 1, 3, seed=0, threads=1,
                                         row_budget=120, scored=["BBB"])
    assert fitted == [({"AAA", "BBB", "CCC"}, 120)] * 3
    assert set(predicted) == {"BBB"} and list(scores) == ["BBB"] and len(scores["BBB"]) == 3


def test_a_fold_s_rows_are_those_its_definition_filters_whatever_the_holes_and_horizon() -> None:
    from tasks.data.calendar import DateFold

    rng = np.random.default_rng(4)
    for trial in range(200):
        days = np.cumsum(rng.integers(1, 4, size=int(rng.integers(1, 40))))  # holes in the calendar
        frame = pl.DataFrame({"date": [date(2024, 1, 1) + timedelta(days=int(d)) for d in days],
                              "x": np.arange(len(days))})
        horizon = int(rng.integers(1, 5))
        cuts = sorted(date(2024, 1, 1) + timedelta(days=int(d)) for d in rng.integers(-5, days[-1] + 6, size=4))
        fold = DateFold(stop_start=cuts[0], fit_end=cuts[1], score_start=cuts[2],
                        score_end=cuts[3] if trial % 3 else None)
        day, end = pl.col("date"), pl.col("date").shift(-horizon)  # a label window ends `horizon` rows later
        expected = (frame.filter((day < fold.stop_start) & (end < fold.stop_start)),
                    frame.filter((day >= fold.stop_start) & (day < fold.fit_end) & (end < fold.score_start)),
                    frame.filter((day >= fold.score_start) & ((day < fold.score_end) if fold.score_end else True)))
        for part, rows in zip(crossval._fold_parts(frame, fold, horizon), expected, strict=True):
            assert part.equals(rows), (trial, fold, horizon)
