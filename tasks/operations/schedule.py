"""schedule: the pure decisions of the scheduled jobs (what the daily retrain retrains, which models degraded)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from settings import MonitoringSettings
from stores.base import PriceStore, PriceStoreError, PriceStoreUnavailable
from stores.metrics import MetricsHistory, ScoreRecord
from stores.registry import ModelRegistry
from tasks.evaluation.drift import MARKET_MIN_SYMBOLS, VolatilityShift, WindowAssessment
from tasks.operations.monitor import Anomaly, resource_logged, stale_feed

__all__ = [
    "HealthCheck",
    "RetrainDecision",
    "RetrainPlan",
    "SymbolStatus",
    "clear_flags",
    "degraded",
    "disabled_schedule",
    "performance",
    "should_retrain",
    "symbol_statuses",
    "version_scores",
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
    """the production model's live composite: the newest one recorded for it; None when none was recorded."""
    score_source: str = ""
    """where `score` comes from, e.g. "weekly-evaluation 2026-11-20" or "registry metadata"."""
    deployment_score: float | None = None
    """the composite the production model was deployed with; None when none was recorded."""
    flagged: str = ""
    """why the newest weekly evaluation found the model degraded when the retrain it asked for did not complete."""


def performance(score: float, deployment_score: float) -> float | None:
    """A model's performance: its live composite as a share of its composite at deployment; None when the
    deployment composite is not positive (no share of it means anything)."""
    return score / deployment_score if deployment_score > 0 else None


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
    production model, when the weekly evaluation flagged its model and the retrain it asked for did not
    complete, when no score (live or at deployment) exists, or when the model's performance (live composite /
    composite at deployment) is below `performance_threshold`; `force` retrains every symbol with fresh data
    (the weekly evaluation found its model degraded).
    """
    stale = {s.symbol: alert for s in statuses if (alert := _stale(s, now, max_data_age_hours)) is not None}
    if stale:
        held = ", ".join(stale)
        return RetrainPlan(tuple(
            RetrainDecision(s.symbol, False, f"stale feed: {stale[s.symbol].detail}" if s.symbol in stale
                            else f"held: stale feed of {held}; no retraining on old data") for s in statuses),
            tuple(stale.values()))
    decisions = [RetrainDecision(s.symbol, True, "requested: production model degraded") if force
                 else _decision(s, performance_threshold) for s in statuses]
    return RetrainPlan(tuple(decisions))


def _decision(s: SymbolStatus, threshold: float) -> RetrainDecision:
    if s.production is None:
        return RetrainDecision(s.symbol, True, "no production model")
    if s.flagged:
        return RetrainDecision(s.symbol, True, f"{s.production}: flagged by the weekly evaluation ({s.flagged}) "
                                               "and not retrained since")
    if s.score is None or s.deployment_score is None:
        missing = "no recorded score" if s.score is None else "no score recorded at deployment to compare with"
        return RetrainDecision(s.symbol, True, f"{s.production}: {missing}")
    share = performance(s.score, s.deployment_score)
    if share is None:
        return RetrainDecision(s.symbol, True, f"{s.production}: its composite at deployment, "
                                               f"{s.deployment_score:.4g}, is not positive, so no share of it can "
                                               "judge the model")
    verdict = "below" if share < threshold else "at or above"
    return RetrainDecision(s.symbol, share < threshold,
                           f"{s.production}: live composite {s.score:.4g} ({s.score_source}) is {share:.0%} of its "
                           f"{s.deployment_score:.4g} at deployment, {verdict} the {threshold:.0%} threshold"
                           + ("" if share < threshold else ": not needed"))


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
    volatility_ratio: float
    """the symbol's daily range over the newest sessions as a multiple of the sessions before."""
    market_ratio: float | None
    """the same for the market (the median over its universe); None when too few symbols had one."""
    degraded: bool
    reasons: tuple[str, ...]

    @property
    def alert(self) -> Anomaly | None:
        """A degraded_model anomaly when degraded."""
        return Anomaly("degraded_model", self.symbol, f"{self.model}: " + "; ".join(self.reasons)) \
            if self.degraded else None

    def __str__(self) -> str:
        return f"{self.symbol} {self.model} is {'degraded' if self.degraded else 'healthy'}: " + "; ".join(
            self.reasons) + "."


def _performance_said(a: WindowAssessment, deployment_score: float | None, threshold: float) -> str:
    said = f"its composite over the newest {a.rows} sessions is {a.composite:.4g}"
    if deployment_score is None:
        return f"{said}, with no score recorded at deployment to compare it with"
    share = performance(a.composite, deployment_score)
    if share is None:
        return f"{said}; its composite at deployment, {deployment_score:.4g}, is not positive"
    return f"{said}, {share:.0%} of its {deployment_score:.4g} at deployment (the daily retrain retrains below " \
           f"{threshold:.0%})"


def _beyond(shift: VolatilityShift, bound: float) -> bool:
    return shift.ratio > bound or shift.ratio < 1 / bound


def _volatility_said(whose: str, shift: VolatilityShift, bound: float) -> str:
    return (f"{whose} daily range over the newest {shift.recent_days} sessions is {shift.ratio:.2f}x that of the "
            f"{shift.reference_days} before, {'beyond' if _beyond(shift, bound) else 'within'} the {bound:g}x bound")


@task(name="degraded", task_run_name="degraded-{assessment.symbol}", cache_policy=NO_CACHE)
@resource_logged
def degraded(assessment: WindowAssessment, deployment_score: float | None, performance_threshold: float,
             volatility_bound: float, market: VolatilityShift | None = None,
             market_bound: float = 1.45) -> HealthCheck:
    """Degraded when the symbol's daily range moved beyond `volatility_bound`, or the market's (`market`, the
    median over its universe) beyond `market_bound`, either way. The reasons say every check, passed or not, and
    the window's performance (composite / composite at deployment): the daily retrain acts on it, as over a
    few weeks it is too noisy to flag a model by (benchmarks.monitoring measures both)."""
    a = assessment
    moved = _beyond(a.volatility, volatility_bound) or (market is not None and _beyond(market, market_bound))
    reasons = [_performance_said(a, deployment_score, performance_threshold),
               _volatility_said("its", a.volatility, volatility_bound),
               _volatility_said("the market's", market, market_bound) if market is not None
               else f"the market's daily range was not measured (fewer than {MARKET_MIN_SYMBOLS} symbols with enough "
                    "bars)"]
    return HealthCheck(a.symbol, f"{a.model_type} v{a.version}", a.composite, deployment_score, a.volatility.ratio,
                       market.ratio if market is not None else None, moved, tuple(reasons))


def version_scores(history: MetricsHistory, symbol: str, model_type: str, version: int) -> list[ScoreRecord]:
    """Every score recorded for one version of a symbol's model, the last recorded first."""
    return sorted((r for r in history.recent_scores(symbol, 1000, model_type) if r.version == version),
                  key=lambda r: r.recorded_at, reverse=True)


@task(name="clear-flags", cache_policy=NO_CACHE)
@resource_logged
def clear_flags(symbols: list[str], registry: ModelRegistry, history_path: Path) -> list[str]:
    """After `symbols` were retrained: each one whose production model's newest score carries a weekly flag gets
    that score again without it, so the next daily retrain judges the model by its performance again. Returns
    the symbols cleared."""
    history, cleared = MetricsHistory(history_path), []
    for symbol in symbols:
        production = registry.alias(symbol, "production")
        if production is None:
            continue
        records = version_scores(history, symbol, production.model_type, production.version)
        if records and records[0].flagged:
            live = records[0]
            history.record_score(symbol, live.model_type, live.version, live.composite, live.window_end, live.source)
            cleared.append(symbol)
    return cleared


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
    """Per symbol: the newest bar, the production model, its live score, its score at deployment and a pending
    weekly flag.

    The live score is the one MetricsHistory recorded last for the production version (a weekly evaluation, or
    the deployment itself); the deployment score the newest "deployment" record of the version, else the oldest
    record of it (its first weekly evaluation). Without any record, `composite` from the version's registry
    metadata serves as both. The flag is the newest record's, when that record is a weekly evaluation's.
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
        records = version_scores(history, symbol, production.model_type, production.version)
        if records:
            live, deployed = records[0], [r for r in records if r.source == "deployment"] or records[-1:]
            statuses.append(SymbolStatus(symbol, newest, name, live.composite,  # type: ignore[arg-type]
                                         f"{live.source} {live.window_end.isoformat()}", deployed[0].composite,
                                         live.flagged))
        elif "composite" in production.metadata.metrics:
            composite = production.metadata.metrics["composite"]
            statuses.append(SymbolStatus(symbol, newest, name, composite,  # type: ignore[arg-type]
                                         "registry metadata", composite))
        else:
            statuses.append(SymbolStatus(symbol, newest, name))  # type: ignore[arg-type]
    return statuses
