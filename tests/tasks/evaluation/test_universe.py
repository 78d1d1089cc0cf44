"""Universe evidence: a universe model's test predictions over its symbols, weighed as a cross-sectional ranking."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from tasks.evaluation.significance import loss_differential_test, newey_west_lags, newey_west_mean
from tasks.evaluation.universe import daily_rank_ic, weigh_evidence

DATES = [date(2025, 1, 2) + timedelta(days=i) for i in range(200)]


def predictions(symbols: int, edge: float, seed: int = 0) -> pl.DataFrame:
    """Per symbol and date: the actual return, and a prediction correlated `edge` with it."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(symbols):
        actual = rng.normal(0, 0.02, len(DATES))
        predicted = 0.02 * (edge * actual / 0.02 + np.sqrt(1 - edge**2) * rng.normal(size=len(DATES))) * 0.05
        rows.append(pl.DataFrame({"date": DATES, "symbol": f"S{i}", "predicted": predicted, "actual": actual}))
    return pl.concat(rows)


def test_the_daily_rank_ic_and_its_newey_west_test_by_hand() -> None:
    rows = predictions(8, edge=0.2)
    evidence = weigh_evidence("catboost-pooled", 3, rows, min_symbols=5, horizon=1)
    by_hand = [spearmanr(g["predicted"], g["actual"]).statistic for _, g in rows.group_by("date", maintain_order=True)]
    test = newey_west_mean(by_hand, newey_west_lags(len(by_hand)))
    assert evidence.ic is not None and evidence.loss is not None
    assert (evidence.symbols, evidence.dates, evidence.skipped_dates) == (8, 200, 0)
    assert evidence.ic.mean == pytest.approx(test.mean, abs=1e-12)
    assert evidence.ic.statistic == pytest.approx(test.statistic, abs=1e-9) and evidence.ic.statistic > 4
    daily = rows.group_by("date").agg(((pl.col("predicted") - pl.col("actual")) ** 2).mean().alias("m"),
                                      (pl.col("actual") ** 2).mean().alias("z")).sort("date")
    assert evidence.loss == loss_differential_test((daily["m"] - daily["z"]).to_numpy(), 1)
    assert "mean daily rank IC +0.1" in evidence.line() and "Holm" not in evidence.line()
    assert "Holm-adjusted over 3 universe model(s) 0.02 < 0.05" in evidence.line(0.02, 0.05, 3)


def test_a_model_that_ranks_nothing_has_no_evidence_and_dates_with_few_symbols_do_not_count() -> None:
    noise = weigh_evidence("lstm-pooled", 1, predictions(8, edge=0.0, seed=1), min_symbols=5, horizon=1)
    assert noise.ic is not None and noise.ic.p_value > 0.01
    # Four symbols on most dates, six on the last 20: only those 20 count.
    rows = pl.concat([predictions(4, edge=0.2), predictions(6, edge=0.2, seed=2).filter(
        pl.col("date") >= DATES[-20]).with_columns(pl.col("symbol") + "x")])
    few = weigh_evidence("lstm-pooled", 1, rows, min_symbols=5, horizon=1)
    assert (few.dates, few.skipped_dates, few.first_date) == (20, 180, str(DATES[-20]))
    none = weigh_evidence("lstm-pooled", 1, predictions(4, edge=0.2), min_symbols=5, horizon=1)
    assert none.ic is None and none.p_value == 1.0 and "no daily IC: 0 test date(s) with 5 symbols" in none.line()


def test_a_day_whose_predictions_do_not_rank_counts_as_zero() -> None:
    rows = predictions(6, edge=0.3).with_columns(
        pl.when(pl.col("date") < DATES[100]).then(0.0).otherwise(pl.col("predicted")).alias("predicted"))
    daily, skipped = daily_rank_ic(rows.select("date", "predicted", "actual"), 5)
    assert skipped == 0 and daily.height == 200
    assert (daily.filter(pl.col("date") < DATES[100])["ic"] == 0.0).all()
