from __future__ import annotations

import numpy as np
import polars as pl

from settings import SelectionSettings
from tasks.select import select_features


def frame(rows: int = 300, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    label = 0.5 * signal + rng.normal(size=rows)
    return pl.DataFrame({
        "strong": signal,
        "copy": signal * 2.0 + 1e-6 * rng.normal(size=rows),   # near duplicate of strong
        "weak": 0.1 * label + rng.normal(size=rows),
        "noise": rng.normal(size=rows),
        "flat": np.full(rows, 3.0),
        "holes": np.where(np.arange(rows) % 3 == 0, np.nan, 1.0),
        "label": label,
    }).with_columns(pl.col("holes").fill_nan(None))


def test_drops_constant_mostly_null_and_duplicates_with_reasons() -> None:
    report = select_features(frame(), ["strong", "copy", "weak", "noise", "flat", "holes"],
                             SelectionSettings(max_features=10, max_correlation=0.95))
    assert report.kept[0] == "strong"
    assert set(report.kept) == {"strong", "weak", "noise"}
    assert report.dropped["flat"] == "constant on train"
    assert report.dropped["holes"].startswith("null in 100/300")
    assert report.dropped["copy"].startswith("|corr| 1.000 with strong")


def test_max_features_keeps_the_highest_ic() -> None:
    report = select_features(frame(), ["noise", "weak", "strong"], SelectionSettings(max_features=2))
    assert report.kept == ("strong", "weak")
    assert "beyond max_features=2" in report.dropped["noise"]


def test_fitted_on_train_only() -> None:
    train = frame(seed=2)
    later = frame(seed=3).with_columns(pl.lit(0.0).alias("strong"))  # strong collapses after train
    names = ["strong", "weak", "noise"]
    assert select_features(train, names, SelectionSettings()) == select_features(train, names, SelectionSettings())
    assert "strong" in select_features(train, names, SelectionSettings()).kept
    assert "strong" not in select_features(later, names, SelectionSettings()).kept
