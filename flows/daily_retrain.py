"""Flow `daily-retrain`: check each symbol's feed and production score, retrain the ones that need it, notify.

CLI: python -m flows.daily_retrain [--symbols VCB,VHM] [--universe VN30] [--config FILE] [--force]
"""

from __future__ import annotations

import sys

from flows.cli import daily_retrain_parser, prefect_environment, run_cli

if __name__ == "__main__":
    daily_retrain_parser().parse_args()  # answer --help and usage errors before the slow imports below
    prefect_environment()

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import flow

from flows.training import TrainingOutcome, training
from schemas import RunFailed, validate_symbol
from settings import Settings, load_settings
from stores.factory import open_price_store, open_registry
from tasks.operations.caching import io_options
from tasks.operations.monitor import Anomaly
from tasks.operations.notify import notifiers, notify
from tasks.operations.schedule import RetrainPlan, clear_flags, disabled_schedule, should_retrain, symbol_statuses

__all__ = ["DailyRetrainOutcome", "daily_retrain", "main"]


@dataclass(frozen=True)
class DailyRetrainOutcome:
    """The plan, the training run it started (None when nothing was retrained) and the alerts sent."""

    plan: RetrainPlan
    training: TrainingOutcome | None = None
    alerts: list[Anomaly] = field(default_factory=list)


def _title(plan: RetrainPlan, outcome: TrainingOutcome | None) -> str:
    retrained = ", ".join(plan.symbols) or "nothing"
    return f"daily-retrain: retrained {retrained}" + (f" (report {outcome.report.json_path})" if outcome else "")


@flow(name="daily-retrain", log_prints=True)
def daily_retrain(symbols: list[str] | None = None, settings: Settings | None = None, config_file: str | None = None,
                  force: bool = False, now: datetime | None = None, universe: str | None = None) -> DailyRetrainOutcome:
    """Retrain `symbols` (default: data.symbols) that need it, per the plan of `should_retrain`, then notify; universe
    models are refitted over `universe` (default: data.universe).

    Ends Failed (RunFailed carrying the outcome) when the training run it started failed.
    """
    settings = settings or load_settings(config_file)
    if (off := disabled_schedule(settings.scheduling.daily_retrain.enabled, "daily_retrain")) is not None:
        print(off)
        return DailyRetrainOutcome(RetrainPlan(()))
    symbols = [validate_symbol(s) for s in (symbols or settings.data.symbols)]
    price_store = open_price_store(settings.data)
    try:
        statuses = symbol_statuses(symbols, price_store, open_registry(settings.models), settings.monitoring)
    finally:
        price_store.close()
    plan = should_retrain(statuses, now or datetime.now(UTC), settings.scheduling.daily_retrain.max_data_age_hours,
                          settings.models.retraining.performance_threshold, force)
    for decision in plan.decisions:
        print(decision)
    if not plan.symbols:
        print(f"nothing to retrain among {len(plan.decisions)} symbol(s)")
    alerts, outcome, error = list(plan.alerts), None, None
    if plan.symbols:
        try:
            # The plan already decided: min_hours_between must not veto it.
            outcome = training(symbols=plan.symbols, settings=settings, retrain_all=True, universe=universe)
            clear_flags(plan.symbols, open_registry(settings.models), settings.monitoring.history_path)
        except Exception as exc:
            error, outcome = exc, getattr(exc, "outcome", None)
            alerts.append(Anomaly("failed_job", "training", f"{type(exc).__name__}: {exc}"))
    notify.with_options(**io_options(settings.execution))(alerts, _title(plan, outcome),
                                                          notifiers(settings.monitoring))
    result = DailyRetrainOutcome(plan, outcome, alerts)
    if error is not None:
        raise RunFailed(f"the retraining of {', '.join(plan.symbols)} failed: {error}", result) from error
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the daily retrain from the command line; exit 2 on bad input, 1 if the run failed."""
    args = daily_retrain_parser().parse_args(argv)
    return run_cli(args, lambda settings, symbols: daily_retrain(symbols=symbols, settings=settings, force=args.force,
                                                                 universe=args.universe),
                   _print_outcome, failed="daily retrain")


def _print_outcome(outcome: DailyRetrainOutcome, settings: Settings) -> int:
    for alert in outcome.alerts:
        print(f"alert {alert.kind} {alert.subject}: {alert.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
