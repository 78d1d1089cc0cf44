"""select-universe: a universe model's features, ranked by their mean daily cross-sectional rank IC on train dates."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from settings import SelectionSettings
from tasks.data.select_universe import select_universe
from tasks.evaluation.significance import newey_west_lags, newey_west_mean

DATES = [date(2023, 1, 2) + timedelta(days=i) for i in range(250)]


def universe(symbols: int = 20, seed: int = 0) -> dict[str, pl.DataFrame]:
    """`shared` predicts every symbol's label a little (IC about 0.1); `twin` copies it; `weak` is a fainter cousin;
    `noise` predicts nothing; `flat` is constant. One symbol alone cannot tell `shared` from noise."""
    rng = np.random.default_rng(seed)
    frames = {}
    for i in range(symbols):
        shared, weak, noise = rng.normal(size=(3, len(DATES)))
        label = 0.1 * shared + 0.03 * weak + rng.normal(size=len(DATES))
        frames[f"S{i:02d}"] = pl.DataFrame({
            "date": DATES, "noise": noise, "weak": weak, "shared": shared,
            "twin": 2 * shared + 1e-6 * rng.normal(size=len(DATES)), "flat": np.ones(len(DATES)), "label": label})
    return frames


NAMES = ["noise", "weak", "shared", "twin", "flat"]


def test_ranks_by_mean_daily_rank_ic_and_drops_twins_and_constants() -> None:
    frames = universe()
    selection = select_universe(frames, NAMES, SelectionSettings(always_keep=()), max_features=10)
    assert selection.kept == ("shared", "weak", "noise")
    assert selection.dropped["twin"].startswith("|corr| 1.000 with shared across the universe")
    assert selection.dropped["flat"] == "constant on the universe's train rows"
    assert selection.symbols == tuple(sorted(frames)) and selection.train_dates == (DATES[0], DATES[-1])

    # The evidence is the mean over dates of the Spearman correlation across symbols, with a Newey-West t.
    long = pl.concat([f.with_columns(pl.lit(s).alias("s")) for s, f in frames.items()])
    daily = [spearmanr(g["shared"], g["label"]).statistic for _, g in long.group_by("date", maintain_order=True)]
    shared = selection.evidence[0]
    assert shared.name == "shared" and shared.dates == len(DATES)
    assert shared.mean_ic == pytest.approx(np.mean(daily), abs=1e-12)
    assert shared.t == pytest.approx(newey_west_mean(daily, newey_west_lags(len(daily))).statistic, abs=1e-9)
    assert shared.mean_ic > 0.05 and shared.t > 5


def test_always_keep_goes_first_and_max_features_bounds_the_rest() -> None:
    selection = select_universe(universe(), NAMES, SelectionSettings(always_keep=("noise",)), max_features=2)
    assert selection.kept == ("noise", "shared")
    assert "beyond models.pooled_max_features=2" in selection.dropped["weak"]


def test_a_date_of_one_symbol_and_a_feature_some_symbols_lack_are_left_out() -> None:
    frames = universe(symbols=5)
    late = pl.DataFrame({"date": [date(2024, 6, 3)], **{n: [0.5] for n in NAMES}, "label": [0.1]})
    frames["S00"] = pl.concat([frames["S00"], late])  # the only row of its date: no cross-section to rank
    frames["S01"] = frames["S01"].drop("weak")
    selection = select_universe(frames, NAMES, SelectionSettings(always_keep=()), max_features=10)
    assert selection.train_dates == (DATES[0], DATES[-1])
    assert selection.dropped["weak"] == "missing from 1 symbol(s)' feature sets, e.g. S01"
    with pytest.raises(ValueError, match="needs 2 symbols or more, got 1"):
        select_universe({"S00": frames["S00"]}, NAMES, SelectionSettings(), max_features=10)
