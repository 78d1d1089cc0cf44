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


def goog_config(tmp_path: Path) -> Path:
    """The shipped settings, with GOOG on the New York Stock Exchange and paths under tmp_path."""
    from backtesting.test import GOOG

    path = tmp_path / "goog.yml"
    path.write_text(yaml.safe_dump({
        "data": {"prices_path": str(tmp_path / "prices"), "feature_store_path": str(tmp_path / "features"),
                 "symbols": ["GOOG"], "start_date": "2004-01-01"},
        "markets": {"symbols": {"GOOG": "XNYS"}},
        "models": {"registry_path": str(tmp_path / "registry")},
        "optimization": {"enabled": False},
        "deployment": {"enabled": False},
        "evaluation": {"cross_validation": {"cv_folds": 2}},
        "monitoring": {"history_path": str(tmp_path / "history.sqlite")},
        "execution": {"cache_dir": str(tmp_path / "cache"), "reports_dir": str(tmp_path / "reports")},
    }), encoding="utf-8")
    GOOG.to_csv(tmp_path / "goog.csv")
    assert ingest(["csv", str(tmp_path / "goog.csv"), "--symbol", "GOOG", "--config", str(path)]) == 0
    return path


def test_goog_trains_evaluates_and_reports_honestly(tmp_path: Path) -> None:
    outcome = training(settings=load_settings(goog_config(tmp_path)))

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
