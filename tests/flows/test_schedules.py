"""The scheduled flows end to end: weekly evaluation retrains the degraded symbol only; stale data retrains none."""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from flows.daily_retrain import daily_retrain
from flows.training import training
from flows.weekly_evaluation import weekly_evaluation
from schemas import RunFailed
from settings import Settings, load_settings
from stores.base import SourceInfo
from stores.factory import open_feature_store, open_price_store
from stores.features import read_split
from stores.metrics import MetricsHistory
from stores.parquet import ParquetPriceStore
from stores.registry import LocalModelRegistry
from tasks.data.ingest import synthetic_market
from tasks.evaluation.drift import volatility_shift
from tasks.operations.schedule import should_retrain, symbol_statuses
from tests.flows.test_training import demo_config

pytestmark = pytest.mark.usefixtures("prefect_harness")


def schedule_settings(tmp_path: Path, fresh: bool) -> Settings:
    """The demo market with catboost only; `fresh` re-creates the prices so they end today."""
    path = demo_config(tmp_path)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["models"]["model_types"] = ["catboost"]
    config["monitoring"] = {"history_path": str(tmp_path / "history.sqlite")}
    config["scheduling"] = {"daily_retrain": {"max_data_age_hours": 120},
                            "weekly_evaluation": {"window_days": 20, "volatility_bound": 1000}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    if fresh:
        shutil.rmtree(tmp_path / "prices")
        store = ParquetPriceStore(tmp_path / "prices")
        for symbol, bars in synthetic_market(["VCB", "VHM"], 420, seed=7, end=datetime.now(UTC).date()).items():
            store.upsert(symbol, bars, SourceInfo(kind="synthetic", detail="seed=7", synthetic=True))
    return load_settings(path)


def weekly_bound(settings: Settings, bound: float) -> Settings:
    """`settings` with scheduling.weekly_evaluation.volatility_bound = `bound`."""
    weekly = settings.scheduling.weekly_evaluation.model_copy(update={"volatility_bound": bound})
    return settings.model_copy(update={"scheduling": settings.scheduling.model_copy(
        update={"weekly_evaluation": weekly})})


@pytest.mark.long(seconds=21)
def test_weekly_evaluation_retrains_exactly_the_degraded_symbol(tmp_path: Path) -> None:
    settings = schedule_settings(tmp_path, fresh=True)
    training(settings=settings)
    registry = LocalModelRegistry(settings.models.registry_path)
    history = MetricsHistory(settings.monitoring.history_path)
    for symbol, deployed in (("VCB", 100.0), ("VHM", -100.0)):  # VCB's window score must fall far below 100
        registry.set_alias(symbol, "production", "catboost", 1)
        history.record_score(symbol, "catboost", 1, deployed, datetime(2026, 1, 1).date(), "deployment")
    # The weekly bound falls between the two symbols' volatility shifts: one moved beyond it, the other did not.
    store = open_feature_store(settings.data)
    moves = {s: abs(volatility_shift(read_split(store.current(s), "all"), 10, 60).log_ratio) for s in ("VCB", "VHM")}
    moved, calm = sorted(moves, key=lambda s: moves[s], reverse=True)
    settings = weekly_bound(settings, math.exp((moves[moved] + moves[calm]) / 2))
    # Right after deployment the live score is the deployment score: 100 % of itself, nothing to retrain.
    statuses = symbol_statuses.fn(["VCB"], open_price_store(settings.data), registry, settings.monitoring)
    [decision] = should_retrain.fn(statuses, datetime.now(UTC), 120, 0.7).decisions
    assert not decision.retrain and decision.reason.endswith("is 100% of its 100 at deployment, at or above the "
                                                             "70% threshold: not needed")

    outcome = weekly_evaluation(settings=settings)

    assert {c.symbol: c.degraded for c in outcome.checks} == {moved: True, calm: False}
    assert outcome.retrain == [moved] and outcome.retrain_run is None  # no deployment on the test API
    assert outcome.retrained is not None and outcome.retrained.plan.symbols == [moved]
    assert registry.versions("catboost", moved) == [1, 2] and registry.versions("catboost", calm) == [1]
    report = json.loads(outcome.report_path.read_text())
    assert {r["symbol"]: r["degraded"] for r in report["rows"]} == {moved: True, calm: False}
    assert next(str(c) for c in outcome.checks if c.symbol == "VHM").startswith("VHM catboost v1 is ")
    weekly = [r for r in history.recent_scores("VHM", 10) if r.source == "weekly-evaluation"]
    scores = {c.symbol: c.score for c in outcome.checks}
    assert len(weekly) == 1 and weekly[0].composite == scores["VHM"]


@pytest.mark.long(seconds=41)
def test_a_failed_retrain_fails_the_daily_and_the_weekly_run_after_their_reports(tmp_path: Path) -> None:
    settings = schedule_settings(tmp_path, fresh=True)
    training(settings=settings)
    registry = LocalModelRegistry(settings.models.registry_path)
    registry.set_alias("VCB", "production", "catboost", 1)
    MetricsHistory(settings.monitoring.history_path).record_score(
        "VCB", "catboost", 1, 100.0, datetime(2026, 1, 1).date(), "deployment")
    broken = weekly_bound(settings.model_copy(update={"models": settings.models.model_copy(
        update={"params": {**settings.models.params, "catboost": {"depth": 99}}})}), 1.0001)  # VCB's range moved

    with pytest.raises(RunFailed, match="retraining of VCB failed") as daily:
        daily_retrain(symbols=["VCB"], settings=broken, force=True)
    assert daily.value.outcome.plan.symbols == ["VCB"]
    assert [a.subject for a in daily.value.outcome.alerts] == ["training"]

    with pytest.raises(RunFailed, match="1 of 2 jobs failed; first: retrain VCB") as weekly:
        weekly_evaluation(symbols=["VCB"], settings=broken)
    outcome = weekly.value.outcome
    assert outcome.retrain == ["VCB"] and [f.step for f in outcome.failures] == ["retrain"]
    report = json.loads(outcome.report_path.read_text())
    assert report["status"] == "failed" and report["failures"][0]["step"] == "retrain"
    assert registry.versions("catboost", "VCB") == [1]  # nothing was retrained
    # The flag stays with the model until it is retrained: the next daily retrain retrains it and says why.
    statuses = symbol_statuses.fn(["VCB"], open_price_store(settings.data), registry, settings.monitoring)
    [decision] = should_retrain.fn(statuses, datetime.now(UTC), 120, 0.7).decisions
    assert decision.retrain and "flagged by the weekly evaluation (its composite over the newest" in decision.reason
    assert "beyond the 1.0001x bound" in decision.reason
    # Once a daily retrain has retrained it, the flag is cleared: the model is judged by its performance again.
    retrained = daily_retrain(symbols=["VCB"], settings=settings)
    [again] = retrained.plan.decisions
    assert retrained.plan.symbols == ["VCB"] and "flagged by the weekly evaluation" in again.reason
    statuses = symbol_statuses.fn(["VCB"], open_price_store(settings.data), registry, settings.monitoring)
    [decision] = should_retrain.fn(statuses, datetime.now(UTC), 120, 0.7).decisions
    assert statuses[0].flagged == "" and "flagged" not in decision.reason
    assert "of its 100 at deployment" in decision.reason


def test_daily_retrain_with_stale_data_retrains_nothing_and_alerts(tmp_path: Path) -> None:
    settings = schedule_settings(tmp_path, fresh=False)  # the demo prices end 2026-10-30
    outcome = daily_retrain(settings=settings, now=datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    assert outcome.plan.symbols == [] and outcome.training is None
    assert sorted((a.kind, a.subject) for a in outcome.alerts) == [("stale_feed", "VCB"), ("stale_feed", "VHM")]
    assert not settings.models.registry_path.exists()


def test_clis_refuse_bad_symbols() -> None:
    from flows.daily_retrain import main as daily_main
    from flows.weekly_evaluation import main as weekly_main

    assert daily_main(["--symbols", "../x"]) == 2 and weekly_main(["--symbols", "../x"]) == 2


def test_daily_retrain_calls_an_unreachable_store_an_outage_not_a_stale_feed(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from settings import DataSettings, MongoSettings, MonitoringSettings
    from stores.base import PriceStoreUnavailable
    from stores.factory import open_price_store
    from stores.registry import LocalModelRegistry
    from tasks.operations.schedule import symbol_statuses
    from tests.mongo_fixtures import free_port

    mongo = MongoSettings(uri=SecretStr(f"mongodb://127.0.0.1:{free_port()}"), timeout_ms=50, retries=1)
    data = DataSettings(source="mongodb", mongodb=mongo)

    with pytest.raises(PriceStoreUnavailable, match="is unreachable"):
        symbol_statuses.fn(["VHM"], open_price_store(data), LocalModelRegistry(tmp_path / "registry"),
                           MonitoringSettings(history_path=tmp_path / "history.sqlite"))
