"""schedule: the pure decisions of the scheduled jobs (what the daily retrain retrains, which models degraded)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from settings import MonitoringSettings
from stores.base import PriceStore, PriceStoreError, PriceStoreUnavailable
from stores.metrics import MetricsHistory
from stores.registry import ModelRegistry
from tasks.evaluation.drift import FeatureDrift
from tasks.operations.monitor import Anomaly, resource_logged, stale_feed

__all__ = [
    "HealthCheck",
    "RetrainDecision",
    "RetrainPlan",
    "SymbolStatus",
    "degraded",
    "disabled_schedule",
    "should_retrain",
    "symbol_statuses",
]


@dataclass(frozen=True)
class SymbolStatus:
    """What the daily retrain knows about one symbol before deciding."""

    symbol: str
    newest: date | None
    """date of the newest price bar; None when the store holds none."""
    production: str | None = None
    """the production model, e.g. "catboost v3"; None when the symbol has none."""
    score: float | None = None
    """the production model's most recent composite score; None when none was recorded."""
    score_source: str = ""
    """where `score` comes from, e.g. "weekly-evaluation 2026-11-20" or "registry metadata"."""


@dataclass(frozen=True)
class RetrainDecision:
    """Whether one symbol is retrained, and why."""

    symbol: str
    retrain: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.symbol}: {'retrain' if self.retrain else 'skip'} ({self.reason})"


@dataclass(frozen=True)
class RetrainPlan:
    """The daily retrain's decisions and the alerts they raise."""

    decisions: tuple[RetrainDecision, ...]
    alerts: tuple[Anomaly, ...] = ()

    @property
    def symbols(self) -> list[str]:
        """The symbols to retrain, in input order."""
        return [d.symbol for d in self.decisions if d.retrain]


def _stale(status: SymbolStatus, now: datetime, max_age_hours: float) -> Anomaly | None:
    if status.newest is None:
        return Anomaly("stale_feed", status.symbol, "no price bars stored")
    return stale_feed(status.symbol, status.newest, now, max_age_hours)


@task(name="should-retrain", cache_policy=NO_CACHE)
@resource_logged
def should_retrain(statuses: Sequence[SymbolStatus], now: datetime, max_data_age_hours: float,
                   performance_threshold: float, force: bool = False) -> RetrainPlan:
    """Decide which symbols the daily job retrains.

    Any stale feed stops all retraining (a stale feed usually means ingestion broke; never retrain on old
    data) and raises one stale_feed alert per stale symbol. Otherwise a symbol is retrained when it has no
    production model, no recorded score, or a score below `performance_threshold`; `force` retrains every
    symbol with fresh data (the weekly evaluation found its model degraded).
    """
    stale = {s.symbol: alert for s in statuses if (alert := _stale(s, now, max_data_age_hours)) is not None}
    if stale:
        held = ", ".join(stale)
        return RetrainPlan(tuple(
            RetrainDecision(s.symbol, False, f"stale feed: {stale[s.symbol].detail}" if s.symbol in stale
                            else f"held: stale feed of {held}; no retraining on old data") for s in statuses),
            tuple(stale.values()))
    decisions = []
    for s in statuses:
        if force:
            decision = RetrainDecision(s.symbol, True, "requested: production model degraded")
        elif s.production is None:
            decision = RetrainDecision(s.symbol, True, "no production model")
        elif s.score is None:
            decision = RetrainDecision(s.symbol, True, f"{s.production}: no recorded score")
        elif s.score < performance_threshold:
            decision = RetrainDecision(s.symbol, True, f"{s.production}: composite {s.score:.4f} below threshold "
                                                       f"{performance_threshold:g} ({s.score_source})")
        else:
            decision = RetrainDecision(s.symbol, False, f"{s.production}: composite {s.score:.4f} at or above "
                                                        f"threshold {performance_threshold:g} ({s.score_source})")
        decisions.append(decision)
    return RetrainPlan(tuple(decisions))


@dataclass(frozen=True)
class HealthCheck:
    """The weekly verdict on one production model."""

    symbol: str
    model: str
    """e.g. "catboost v3"."""
    score: float
    """composite on the newest window."""
    deployment_score: float | None
    """composite recorded for this version at deployment; None when none was recorded."""
    worst_feature: str | None
    worst_psi: float
    degraded: bool
    reasons: tuple[str, ...]

    @property
    def alert(self) -> Anomaly | None:
        """A degraded_model anomaly when degraded."""
        return Anomaly("degraded_model", self.symbol, f"{self.model}: " + "; ".join(self.reasons)) \
            if self.degraded else None


@task(name="degraded", task_run_name="degraded-{symbol}", cache_policy=NO_CACHE)
@resource_logged
def degraded(symbol: str, model: str, score: float, deployment_score: float | None, drift: FeatureDrift,
             score_tolerance: float, psi_bound: float) -> HealthCheck:
    """Degraded when `score` fell more than `score_tolerance` below `deployment_score`, or a feature's PSI
    exceeds `psi_bound`; the reasons list every check, passed or not."""
    reasons, bad = [], False
    if deployment_score is None:
        reasons.append(f"composite {score:.4f}; no deployment score to compare with")
    elif deployment_score - score > score_tolerance:
        bad = True
        reasons.append(f"composite fell {deployment_score - score:.4f} (from {deployment_score:.4f} at deployment "
                       f"to {score:.4f}), more than the tolerance {score_tolerance:g}")
    else:
        reasons.append(f"composite {score:.4f} within {score_tolerance:g} of {deployment_score:.4f} at deployment")
    if drift.worst_feature is not None and drift.worst_psi > psi_bound:
        bad = True
        reasons.append(f"feature {drift.worst_feature} drifted: PSI {drift.worst_psi:.3f} above {psi_bound:g}")
    elif drift.worst_feature is not None:
        reasons.append(f"largest PSI {drift.worst_psi:.3f} ({drift.worst_feature}) within {psi_bound:g}")
    return HealthCheck(symbol, model, score, deployment_score, drift.worst_feature, drift.worst_psi, bad,
                       tuple(reasons))


def disabled_schedule(enabled: bool, name: str) -> str | None:
    """Why a run started by a deployment schedule should do nothing: `scheduling.<name>.enabled` is false.

    Runs started by hand (CLI, Python) always proceed.
    """
    from prefect.runtime import deployment

    if not enabled and deployment.id is not None:
        return f"scheduling.{name}.enabled is false: this scheduled run does nothing"
    return None


@task(name="retrain-inputs", cache_policy=NO_CACHE)  # no retries: the price store retries an outage itself
@resource_logged
def symbol_statuses(symbols: list[str], price_store: PriceStore, registry: ModelRegistry,
                    monitoring: MonitoringSettings) -> list[SymbolStatus]:
    """Per symbol: the newest bar, the production model and its newest score.

    The score is the newest one MetricsHistory holds for the production version (weekly evaluations,
    deployments); without one, `composite` from the version's registry metadata when it has that metric.
    """
    history = MetricsHistory(monitoring.history_path)
    statuses = []
    for symbol in symbols:
        try:
            newest = price_store.load(symbol)["date"].max()
        except PriceStoreUnavailable:
            raise  # an outage is not a stale feed: the run fails and says so
        except PriceStoreError:  # no bars for the symbol: reported as a stale feed
            newest = None
        production = registry.alias(symbol, "production")
        if production is None:
            statuses.append(SymbolStatus(symbol, newest))  # type: ignore[arg-type]
            continue
        name = f"{production.model_type} v{production.version}"
        records = [r for r in history.recent_scores(symbol, 100, production.model_type)
                   if r.version == production.version]
        if records:
            score, source = records[0].composite, f"{records[0].source} {records[0].window_end.isoformat()}"
        elif "composite" in production.metadata.metrics:
            score, source = production.metadata.metrics["composite"], "registry metadata"
        else:
            score, source = None, ""
        statuses.append(SymbolStatus(symbol, newest, name, score, source))  # type: ignore[arg-type]
    return statuses
