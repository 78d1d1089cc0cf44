"""The scheduled jobs' pure decisions: what the daily retrain retrains, which models degraded."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from tasks.evaluation.crossval import PredictionMetrics
from tasks.evaluation.drift import VolatilityShift, WindowAssessment
from tasks.evaluation.risk import PerformanceMetrics
from tasks.operations.schedule import SymbolStatus, degraded, should_retrain

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
FRESH, OLD = date(2026, 11, 25), date(2026, 11, 20)


def plan(*statuses: SymbolStatus, force: bool = False):
    return should_retrain.fn(list(statuses), NOW, 48, 0.7, force)


def test_performance_is_the_live_score_as_a_share_of_the_score_at_deployment() -> None:
    result = plan(SymbolStatus("VCB", FRESH), SymbolStatus("VIC", FRESH, "catboost v2", 0.15, "weekly", 0.25),
                  SymbolStatus("VHM", FRESH, "arima v1", 0.2448, "deployment", 0.2448),
                  SymbolStatus("FPT", FRESH, "lstm v1"), SymbolStatus("HPG", FRESH, "lstm v1", 0.3, "weekly", 0.4))
    assert result.symbols == ["VCB", "VIC", "FPT"] and result.alerts == ()
    reasons = {d.symbol: d.reason for d in result.decisions}
    assert reasons["VCB"] == "no production model"
    assert "0.15 (weekly) is 60% of its 0.25 at deployment, below the 70% threshold" in reasons["VIC"]
    assert reasons["VHM"].endswith("is 100% of its 0.2448 at deployment, at or above the 70% threshold: not needed")
    assert "75% of its 0.4" in reasons["HPG"]  # a composite of 0.3 is far below 0.7, yet 75 % of its own standard
    assert "no recorded score" in reasons["FPT"]
    assert str(result.decisions[2]).startswith("VHM: skip")


def test_a_weekly_flag_or_a_missing_or_non_positive_deployment_score_retrains() -> None:
    result = plan(SymbolStatus("VCB", FRESH, "catboost v1", 0.3, "weekly", 0.3, flagged="its daily range moved"),
                  SymbolStatus("VIC", FRESH, "catboost v1", 0.3, "weekly", None),
                  SymbolStatus("VHM", FRESH, "catboost v1", 0.3, "weekly", -0.1))
    reasons = {d.symbol: d.reason for d in result.decisions}
    assert result.symbols == ["VCB", "VIC", "VHM"]
    assert "flagged by the weekly evaluation (its daily range moved)" in reasons["VCB"]
    assert "no score recorded at deployment" in reasons["VIC"] and "is not positive" in reasons["VHM"]


def test_stale_feed_retrains_nothing_and_alerts_per_stale_symbol() -> None:
    result = plan(SymbolStatus("VCB", OLD), SymbolStatus("VIC", FRESH), SymbolStatus("VHM", None))
    assert result.symbols == []
    assert [(a.kind, a.subject) for a in result.alerts] == [("stale_feed", "VCB"), ("stale_feed", "VHM")]
    reasons = {d.symbol: d.reason for d in result.decisions}
    assert reasons["VCB"].startswith("stale feed") and "no retraining on old data" in reasons["VIC"]


def test_force_retrains_fresh_symbols_even_above_threshold() -> None:
    assert plan(SymbolStatus("VHM", FRESH, "arima v1", 0.9, "weekly", 0.9), force=True).symbols == ["VHM"]
    assert plan(SymbolStatus("VHM", OLD, "arima v1", 0.9, "weekly", 0.9), force=True).symbols == []


def assessment(composite: float, range_ratio: float) -> WindowAssessment:
    return WindowAssessment("VHM", "catboost", 1, "abc", date(2026, 9, 1), date(2026, 11, 25), 60,
                            PredictionMetrics(0.01, 0.008, 0.0, 0.5, 0.02, 0.03),
                            PerformanceMetrics(0.02, 0.08, 0.15, 0.5, 0.6, -0.1, 0.8, 0.5, 1.2, -0.03, 0.02, 3),
                            composite, VolatilityShift(10, 60, math.log(range_ratio)))


def test_a_low_performance_share_is_said_and_left_to_the_daily_retrain() -> None:
    check = degraded.fn(assessment(0.15, 1.0), 0.25, 0.7, 1.7)
    assert not check.degraded and check.alert is None
    assert "is 0.15, 60% of its 0.25 at deployment (the daily retrain retrains below 70%)" in check.reasons[0]


def test_a_healthy_model_reads_as_a_sentence() -> None:
    check = degraded.fn(assessment(0.2771, 1.08), 0.2448, 0.7, 1.7, VolatilityShift(10, 60, math.log(1.02)), 1.45)
    assert not check.degraded and check.alert is None
    assert str(check) == ("VHM catboost v1 is healthy: its composite over the newest 60 sessions is 0.2771, 113% of "
                          "its 0.2448 at deployment (the daily retrain retrains below 70%); its daily range over the "
                          "newest 10 sessions is 1.08x that of the 60 before, within the 1.7x bound; the market's "
                          "daily range over the newest 10 sessions is 1.02x that of the 60 before, within the 1.45x "
                          "bound.")
    assert not degraded.fn(assessment(0.1, 1.0), None, 0.7, 1.7).degraded


def test_a_volatility_shift_of_the_symbol_or_the_market_beyond_its_bound_either_way_is_degraded() -> None:
    assert degraded.fn(assessment(0.3, 2.1), 0.25, 0.7, 1.7).degraded
    assert degraded.fn(assessment(0.3, 0.5), 0.25, 0.7, 1.7).degraded
    check = degraded.fn(assessment(0.3, 2.1), 0.25, 0.7, 1.7)
    assert "2.10x that of the 60 before, beyond the 1.7x bound" in check.reasons[1]
    assert "market's daily range was not measured" in check.reasons[2]
    assert check.alert is not None and check.alert.kind == "degraded_model" and check.alert.subject == "VHM"
    assert str(check).startswith("VHM catboost v1 is degraded: ")
    market = degraded.fn(assessment(0.3, 1.3), 0.25, 0.7, 1.7, VolatilityShift(10, 60, math.log(1.5)), 1.45)
    assert market.degraded and market.market_ratio == pytest.approx(1.5) and "beyond the 1.45x" in market.reasons[2]
    assert degraded.fn(assessment(0.3, 1.0), 0.25, 0.7, 1.7, VolatilityShift(10, 60, math.log(0.6)), 1.45).degraded
