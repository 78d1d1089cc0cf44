"""The scheduled jobs' pure decisions: what the daily retrain retrains, which models degraded."""

from __future__ import annotations

from datetime import UTC, date, datetime

from tasks.evaluation.drift import FeatureDrift
from tasks.operations.schedule import SymbolStatus, degraded, should_retrain

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
FRESH, OLD = date(2026, 11, 25), date(2026, 11, 20)
NO_DRIFT = FeatureDrift({"ret_5": 0.02}, "ret_5", 0.02)


def plan(*statuses: SymbolStatus, force: bool = False):
    return should_retrain.fn(list(statuses), NOW, 48, 0.7, force)


def test_fresh_data_retrains_missing_and_weak_models_only() -> None:
    result = plan(SymbolStatus("VCB", FRESH), SymbolStatus("VIC", FRESH, "catboost v2", 0.5, "weekly"),
                  SymbolStatus("VHM", FRESH, "arima v1", 0.9, "weekly"), SymbolStatus("FPT", FRESH, "lstm v1"))
    assert result.symbols == ["VCB", "VIC", "FPT"] and result.alerts == ()
    reasons = {d.symbol: d.reason for d in result.decisions}
    assert reasons["VCB"] == "no production model"
    assert "below threshold 0.7" in reasons["VIC"] and "at or above threshold" in reasons["VHM"]
    assert "no recorded score" in reasons["FPT"]
    assert str(result.decisions[2]).startswith("VHM: skip")


def test_stale_feed_retrains_nothing_and_alerts_per_stale_symbol() -> None:
    result = plan(SymbolStatus("VCB", OLD), SymbolStatus("VIC", FRESH), SymbolStatus("VHM", None))
    assert result.symbols == []
    assert [(a.kind, a.subject) for a in result.alerts] == [("stale_feed", "VCB"), ("stale_feed", "VHM")]
    reasons = {d.symbol: d.reason for d in result.decisions}
    assert reasons["VCB"].startswith("stale feed") and "no retraining on old data" in reasons["VIC"]


def test_force_retrains_fresh_symbols_even_above_threshold() -> None:
    assert plan(SymbolStatus("VHM", FRESH, "arima v1", 0.9), force=True).symbols == ["VHM"]
    assert plan(SymbolStatus("VHM", OLD, "arima v1", 0.9), force=True).symbols == []


def test_score_drop_beyond_tolerance_is_degraded() -> None:
    check = degraded.fn("VHM", "catboost v1", 0.5, 0.7, NO_DRIFT, 0.1, 0.25)
    assert check.degraded and "fell 0.2000" in check.reasons[0]
    assert check.alert is not None and check.alert.kind == "degraded_model" and check.alert.subject == "VHM"


def test_small_drop_and_low_psi_are_healthy() -> None:
    check = degraded.fn("VHM", "catboost v1", 0.65, 0.7, NO_DRIFT, 0.1, 0.25)
    assert not check.degraded and check.alert is None and len(check.reasons) == 2
    assert not degraded.fn("VHM", "catboost v1", 0.1, None, NO_DRIFT, 0.1, 0.25).degraded


def test_drift_above_bound_is_degraded() -> None:
    check = degraded.fn("VHM", "catboost v1", 0.9, 0.7, FeatureDrift({"ret_5": 0.4}, "ret_5", 0.4), 0.1, 0.25)
    assert check.degraded and "ret_5 drifted" in check.reasons[1]
