"""A real daily series through the product: backtesting.py's GOOG bars (2004-2013), ingested as a user would
(pandas' to_csv), then the full training flow with the shipped model parameters (no tuning)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.ingest import main as ingest
from flows.training import training
from settings import load_settings

pytestmark = pytest.mark.usefixtures("prefect_harness")
TYPES = ["arima", "catboost", "lstm", "transformer"]


def goog_config(tmp_path: Path, symbol: str = "GOOG", scale: float = 1.0, overrides: dict | None = None) -> Path:
    """The shipped settings with paths under tmp_path, and GOOG's bars, prices times `scale`, as `symbol`."""
    from backtesting.test import GOOG

    path = tmp_path / "goog.yml"
    path.write_text(yaml.safe_dump({
        "data": {"prices_path": str(tmp_path / "prices"), "feature_store_path": str(tmp_path / "features"),
                 "symbols": [symbol], "start_date": "2004-01-01"},
        "models": {"registry_path": str(tmp_path / "registry")},
        "optimization": {"enabled": False},
        "deployment": {"enabled": False},
        "evaluation": {"cross_validation": {"cv_folds": 2}},
        "monitoring": {"history_path": str(tmp_path / "history.sqlite")},
        "execution": {"cache_dir": str(tmp_path / "cache"), "reports_dir": str(tmp_path / "reports")},
        **(overrides or {}),
    }), encoding="utf-8")
    bars = GOOG.copy()
    bars[["Open", "High", "Low", "Close"]] *= scale
    bars.to_csv(tmp_path / "goog.csv")
    assert ingest(["csv", str(tmp_path / "goog.csv"), "--symbol", symbol, "--config", str(path)]) == 0
    return path


def test_goog_trains_evaluates_and_reports_honestly(tmp_path: Path) -> None:
    on_nyse = {"markets": {"symbols": {"GOOG": "XNYS"}}}  # lots of one share
    outcome = training(settings=load_settings(goog_config(tmp_path, overrides=on_nyse)))

    content = json.loads(outcome.report.json_path.read_text())
    assert content["status"] == "completed" and content["failures"] == []
    assert sorted(row["model"] for row in content["leaderboard"]) == TYPES
    [decision] = content["decisions"]
    assert decision["symbol"] == "GOOG" and all("DM p=" in line for line in decision["reasons"]
                                                if line.startswith(tuple(TYPES)))
    [data] = content["data"]
    assert data["cleaning"]["rows_out"] == 2148 and data["cleaning"]["gaps"] == []  # no hole in NYSE sessions
    for r in content["evaluations"]:
        # A daily stock return is close to unpredictable: no model may claim much (nor lose much) R2.
        assert abs(r["prediction"]["r2"]) < 0.05, (r["model_type"], r["prediction"]["r2"])
        if max(r["curves"]["predicted"]) > 0:  # a long signal fills: lots of 1 share always fit
            assert r["trades"] > 0, r["model_type"]
        assert r["sizing"]["lot_size"] == 1 and r["sizing"]["unaffordable_days"] == 0
        # Buy-and-hold in lots of one share follows the price from its first fill, less commission.
        assert r["buy_and_hold"]["total_return"] == pytest.approx(r["price_move"], abs=0.01)
        assert np.isfinite(r["against_baseline"]["p_value"]) and r["strategy"]["psr"] is not None


def test_an_index_level_series_says_in_words_that_a_lot_does_not_fit(tmp_path: Path) -> None:
    # GOOG times five is quoted like an index (about 500 to 4,000); on the default market (HOSE, lots of
    # 100) one lot costs more than the 100,000 capital on every test day.
    two_types = {"models": {"registry_path": str(tmp_path / "registry"), "model_types": ["arima", "catboost"]}}
    outcome = training(settings=load_settings(goog_config(tmp_path, "IDX", 5.0, two_types)))

    content = json.loads(outcome.report.json_path.read_text())
    words = "one lot of 100 shares costs more than the capital"
    for r in content["evaluations"]:
        assert not r["sizing"]["meaningful"] and words in r["sizing"]["note"]
        assert r["trades"] == 0 and r["buy_and_hold"]["total_return"] == 0.0 and r["price_move"] > 0.3
    for row in content["leaderboard"]:  # not scored as zeros: left out
        assert row["tradable"] is False and row["sharpe"] is None and row["max_dd"] is None
    [decision] = content["decisions"]
    assert any(line.startswith("backtest:") and words in line for line in decision["reasons"])
    assert words in outcome.report.html_path.read_text()
