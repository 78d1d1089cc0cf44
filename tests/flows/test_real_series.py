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


def goog_config(tmp_path: Path, symbol: str = "GOOG", scale: float = 1.0, overrides: dict | None = None,
                start: str = "2004-01-01") -> Path:
    """The shipped settings with paths under tmp_path, and GOOG's bars, prices times `scale`, as `symbol`."""
    from backtesting.test import GOOG

    path = tmp_path / "goog.yml"
    path.write_text(yaml.safe_dump({
        "data": {"prices_path": str(tmp_path / "prices"), "feature_store_path": str(tmp_path / "features"),
                 "symbols": [symbol], "start_date": start},
        "models": {"registry_path": str(tmp_path / "registry")},
        "optimization": {"enabled": False},
        "deployment": {"enabled": False},
        "evaluation": {"cross_validation": {"cv_folds": 2, "pooled_folds": 2}},
        "monitoring": {"history_path": str(tmp_path / "history.sqlite")},
        "execution": {"cache_dir": str(tmp_path / "cache"), "reports_dir": str(tmp_path / "reports")},
        **(overrides or {}),
    }), encoding="utf-8")
    bars = GOOG.copy()
    bars[["Open", "High", "Low", "Close"]] *= scale
    bars.to_csv(tmp_path / "goog.csv")
    assert ingest(["csv", str(tmp_path / "goog.csv"), "--symbol", symbol, "--config", str(path)]) == 0
    return path


@pytest.mark.long(seconds=25)
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
        assert np.isfinite(r["against_baseline"]["p_value"])
        # The probabilistic Sharpe only with 5 trades and 30 days in a position (equity moves on such days only).
        held = int(np.count_nonzero(np.diff(r["curves"]["equity"])))
        if r["trades"] < 5 or held < 29:
            assert r["strategy"]["psr"] is None, r["model_type"]
        elif held > 31:
            assert r["strategy"]["psr"] is not None, r["model_type"]


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


@pytest.mark.long(seconds=15)
def test_histories_of_unequal_length_share_one_calendar_and_no_universe_model_trains_on_test_dates(
        tmp_path: Path) -> None:
    """GOOG (2004-2013) beside a longer synthetic series (1999-2013), run as `python -m flows.training --symbols
    GOOG,LONG`: the split dates come from the union of their dates; the universe model fits neither symbol on or
    after the test start; its walk-forward folds are cut by date, and the first fold, where only LONG has rows,
    is skipped instead of failing the run."""
    from datetime import date

    from flows.training import main
    from models.pooled import POOLED_FOLDER
    from stores.base import SourceInfo
    from stores.factory import open_feature_store, open_price_store
    from stores.features import read_split
    from stores.registry import LocalModelRegistry
    from tasks.data.ingest import synthetic_market

    two_types = {"models": {"registry_path": str(tmp_path / "registry"), "model_types": ["arima", "catboost"]},
                 "markets": {"symbols": {"GOOG": "XNYS", "LONG": "XNYS"}}}
    config = goog_config(tmp_path, overrides=two_types, start="1990-01-01")
    settings = load_settings(config)
    long = synthetic_market(["LONG"], 3700, seed=4, end=date(2013, 3, 1))["LONG"]
    store = open_price_store(settings.data)
    store.upsert("LONG", long, SourceInfo(kind="synthetic", synthetic=True))
    store.close()
    assert long["date"].min() < date(2000, 1, 1)

    assert main(["--symbols", "GOOG,LONG", "--config", str(config), "--no-deploy"]) == 0

    features = open_feature_store(settings.data)
    refs = {s: features.current(s) for s in ("GOOG", "LONG")}
    calendars = {s: features.manifest(ref)["calendar"] for s, ref in refs.items()}
    assert calendars["GOOG"] == calendars["LONG"] and calendars["GOOG"]["symbols"] == 2
    test_start = date.fromisoformat(calendars["GOOG"]["test_start"])
    for ref in refs.values():
        assert read_split(ref, "test")["date"].min() == test_start  # every candidate is scored on the same dates
        for part in ("train", "val"):
            assert read_split(ref, part)["date"].max() < test_start
    registry = LocalModelRegistry(settings.models.registry_path)
    pooled = registry.get("catboost-pooled", POOLED_FOLDER)
    assert pooled.metadata.symbols == ["GOOG", "LONG"]
    fit = pooled.metadata.details["fit_dates"]
    assert date.fromisoformat(fit["train"][1]) < date.fromisoformat(fit["val"][0]) <= date.fromisoformat(
        fit["val"][1]) < test_start
    assert pooled.metadata.details["selection"]["symbols"] == ["GOOG", "LONG"]

    content = json.loads(sorted((tmp_path / "reports").glob("*/report.json"))[-1].read_text())
    assert content["status"] == "completed" and content["failures"] == []
    pooled_rows = [r for r in content["evaluations"] if r["model_type"] == "catboost-pooled"]
    assert {r["symbol"] for r in pooled_rows} == {"GOOG", "LONG"}
    assert all(r["cv"]["folds"] == 1 for r in pooled_rows)  # fold 1 of 2 had LONG's rows only: skipped
    assert all(r["cv"]["folds"] == 2 for r in content["evaluations"] if r["model_type"] != "catboost-pooled")
    # Two symbols rank nothing: the universe model has no evidence, and says so instead of being promoted.
    assert any("catboost-pooled v1: over 2 symbols, no daily IC" in line for line in content["universe"])
    for decision in content["decisions"]:
        [reason] = [line for line in decision["reasons"] if line.startswith("catboost-pooled")]
        assert "fails the universe gate" in reason
