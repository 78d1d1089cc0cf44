"""Flow `daily-retrain`: check each symbol's feed and production score, retrain the ones that need it, notify.

CLI: python -m flows.daily_retrain [--symbols VCB,VHM] [--config FILE] [--force]
"""

from __future__ import annotations

import sys

from flows.cli import daily_retrain_parser, prefect_environment, run_cli

if __name__ == "__main__":
    daily_retrain_parser().parse_args()  # answer --help and usage errors before the slow imports below
    prefect_environment()

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.training import TrainingOutcome, training
from schemas import RunFailed, validate_symbol
from settings import DataSettings, ModelsSettings, MonitoringSettings, Settings, load_settings
from stores.base import PriceStoreError, PriceStoreUnavailable
from stores.factory import open_price_store
from stores.metrics import MetricsHistory
from stores.registry import LocalModelRegistry
from tasks.operations.caching import io_options
from tasks.operations.monitor import Anomaly, resource_logged
from tasks.operations.notify import notify
from tasks.operations.schedule import RetrainPlan, SymbolStatus, disabled_schedule, should_retrain

__all__ = ["DailyRetrainOutcome", "daily_retrain", "main", "symbol_statuses"]


@dataclass(frozen=True)
class DailyRetrainOutcome:
    """The plan, the training run it started (None when nothing was retrained) and the alerts sent."""

    plan: RetrainPlan
    training: TrainingOutcome | None = None
    alerts: list[Anomaly] = field(default_factory=list)


@task(name="retrain-inputs", cache_policy=NO_CACHE)  # no retries: the price store retries an outage itself
@resource_logged
def symbol_statuses(symbols: list[str], data: DataSettings, models: ModelsSettings,
                    monitoring: MonitoringSettings) -> list[SymbolStatus]:
    """Per symbol: the newest bar, the production model and its newest score.

    The score is the newest one MetricsHistory holds for the production version (weekly evaluations,
    deployments); without one, `composite` from the version's registry metadata when it has that metric.
    """
    store = open_price_store(data)
    registry = LocalModelRegistry(models.registry_path)
    history = MetricsHistory(monitoring.history_path)
    statuses = []
    try:
        for symbol in symbols:
            try:
                newest = store.load(symbol)["date"].max()
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
    finally:
        store.close()
    return statuses


def _title(plan: RetrainPlan, outcome: TrainingOutcome | None) -> str:
    retrained = ", ".join(plan.symbols) or "nothing"
    return f"daily-retrain: retrained {retrained}" + (f" (report {outcome.report.json_path})" if outcome else "")


@flow(name="daily-retrain", log_prints=True)
def daily_retrain(symbols: list[str] | None = None, settings: Settings | None = None, config_file: str | None = None,
                  force: bool = False, now: datetime | None = None) -> DailyRetrainOutcome:
    """Retrain `symbols` (default: data.symbols) that need it, per the plan of `should_retrain`, then notify.

    Ends Failed (RunFailed carrying the outcome) when the training run it started failed.
    """
    settings = settings or load_settings(config_file)
    if (off := disabled_schedule(settings.scheduling.daily_retrain.enabled, "daily_retrain")) is not None:
        print(off)
        return DailyRetrainOutcome(RetrainPlan(()))
    symbols = [validate_symbol(s) for s in (symbols or settings.data.symbols)]
    statuses = symbol_statuses(symbols, settings.data, settings.models, settings.monitoring)
    plan = should_retrain(statuses, now or datetime.now(UTC), settings.scheduling.daily_retrain.max_data_age_hours,
                          settings.models.retraining.performance_threshold, force)
    for decision in plan.decisions:
        print(decision)
    alerts, outcome, error = list(plan.alerts), None, None
    if plan.symbols:
        try:
            # The plan already decided: min_hours_between must not veto it.
            outcome = training(symbols=plan.symbols, settings=settings, retrain_all=True)
        except Exception as exc:
            error, outcome = exc, getattr(exc, "outcome", None)
            alerts.append(Anomaly("failed_job", "training", f"{type(exc).__name__}: {exc}"))
    notify.with_options(**io_options(settings.execution))(alerts, _title(plan, outcome), settings.monitoring)
    result = DailyRetrainOutcome(plan, outcome, alerts)
    if error is not None:
        raise RunFailed(f"the retraining of {', '.join(plan.symbols)} failed: {error}", result) from error
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the daily retrain from the command line; exit 2 on bad input, 1 if the run failed."""
    args = daily_retrain_parser().parse_args(argv)
    return run_cli(args, lambda settings, symbols: daily_retrain(symbols=symbols, settings=settings, force=args.force),
                   _print_outcome, failed="daily retrain")


def _print_outcome(outcome: DailyRetrainOutcome, settings: Settings) -> int:
    for decision in outcome.plan.decisions:
        print(decision)
    for alert in outcome.alerts:
        print(f"alert {alert.kind} {alert.subject}: {alert.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
