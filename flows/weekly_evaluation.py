"""Flow `weekly-evaluation`: score each production model on the newest rows, measure feature drift, report,
record the scores and retrain exactly the degraded symbols, waiting for that retrain: the weekly run
ends Failed when an evaluation or the retrain failed.

CLI: python -m flows.weekly_evaluation [--symbols VCB,VHM] [--config FILE]
"""

from __future__ import annotations

import sys

from flows.cli import prefect_environment, run_cli, weekly_evaluation_parser

if __name__ == "__main__":
    weekly_evaluation_parser().parse_args()  # answer --help and usage errors before the slow imports below
    prefect_environment()

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, unmapped

from flows.daily_retrain import DailyRetrainOutcome, daily_retrain
from flows.fanout import error_text, gather
from models.pooled import is_pooled
from schemas import JobFailure, RunFailed, failed_jobs_message, validate_symbol
from settings import Settings, load_settings
from stores.factory import open_feature_store, open_registry
from tasks.evaluation.drift import WindowAssessment, assess_window, market_volatility
from tasks.evaluation.pooled import cross_section_updates
from tasks.operations.caching import io_options
from tasks.operations.monitor import Anomaly, failed_jobs
from tasks.operations.notify import notifiers, notify
from tasks.operations.schedule import HealthCheck, degraded, disabled_schedule
from tasks.operations.weekly import (
    RETRAIN_DEPLOYMENT,
    RetrainRun,
    current_refs,
    deployment_scores,
    production_targets,
    record_scores,
    request_retrain,
    weekly_report,
)

__all__ = ["WeeklyOutcome", "main", "weekly_evaluation"]

@dataclass(frozen=True)
class WeeklyOutcome:
    """What one weekly evaluation measured, decided and started."""

    run_id: str
    report_path: Path | None
    """None when a disabled schedule made the run do nothing."""
    assessments: list[WindowAssessment]
    checks: list[HealthCheck]
    retrain: list[str]
    """the degraded symbols handed to the daily retrain."""
    retrain_run: RetrainRun | None = None
    """the `daily-retrain/daily` deployment run, when that deployment exists."""
    retrained: DailyRetrainOutcome | None = None
    """the in-process daily retrain, when the deployment does not exist."""
    failures: list[JobFailure] = field(default_factory=list)
    """failed evaluations, and the retrain when it did not complete."""


def _retrain(symbols: list[str], settings: Settings) -> tuple[RetrainRun | None, DailyRetrainOutcome | None,
                                                              JobFailure | None]:
    """Retrain `symbols` through the deployment, or in this process when it does not exist; and its failure."""
    run = request_retrain(symbols, settings.scheduling.weekly_evaluation.retrain_wait_hours)
    if run is not None:
        failed = None if run.completed else f"{RETRAIN_DEPLOYMENT} run {run.flow_run_id} {run.state}: {run.message}"
        return run, None, JobFailure(",".join(symbols), "", "retrain", failed) if failed else None
    try:
        return None, daily_retrain(symbols=symbols, settings=settings, force=True), None
    except Exception as exc:
        return None, getattr(exc, "outcome", None), JobFailure(",".join(symbols), "", "retrain", error_text(exc))


@flow(name="weekly-evaluation", log_prints=True)
def weekly_evaluation(symbols: list[str] | None = None, settings: Settings | None = None,
                      config_file: str | None = None) -> WeeklyOutcome:
    """Evaluate the production models of `symbols` (default: data.symbols) and retrain the degraded ones.

    Ends Failed (RunFailed carrying the outcome) when an evaluation or the retrain failed; the report
    and the alerts go out first.
    """
    settings = settings or load_settings(config_file)
    cfg = settings.scheduling.weekly_evaluation
    symbols = [validate_symbol(s) for s in (symbols or settings.data.symbols)]
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if (off := disabled_schedule(cfg.enabled, "weekly_evaluation")) is not None:
        print(off)
        return WeeklyOutcome(run_id, None, [], [], [])
    registry, feature_store = open_registry(settings.models), open_feature_store(settings.data)
    targets = production_targets(symbols, registry, feature_store)
    pooled_targets = [(t.model_type, t.version) for t in targets if is_pooled(t.model_type)]
    later = cross_section_updates(pooled_targets, registry, feature_store) if pooled_targets else {}
    futures = assess_window.map([t.symbol for t in targets], [t.model_type for t in targets],
                                [t.version for t in targets], [t.ref for t in targets], unmapped(cfg.window_days),
                                unmapped(settings.evaluation), unmapped(settings.models),
                                unmapped(settings.model_selection.weights),
                                [settings.markets.of(t.symbol) for t in targets], unmapped(registry),
                                unmapped(cfg.drift_days), unmapped(cfg.reference_days),
                                [later.get((t.model_type, t.version)) for t in targets])
    fanout = gather(list(futures), targets, name="weekly-evaluation",
                    describe=lambda a: f"composite {a.composite:.4g}, daily range {a.volatility.ratio:.2f}x",
                    failure=lambda t, error: JobFailure(t.symbol, t.model_type, "evaluate", error))
    baseline = deployment_scores(fanout.results, settings.monitoring.history_path)
    universe = list(settings.data.universe_symbols(settings.data.universe) or symbols)
    market = market_volatility(current_refs(universe, feature_store), cfg.drift_days, cfg.reference_days)
    checks = [degraded(a, baseline[a.symbol], settings.models.retraining.performance_threshold,
                       cfg.volatility_bound, market, cfg.market_volatility_bound) for a in fanout.results]
    for check in checks:
        print(check)
    retrain = [c.symbol for c in checks if c.degraded]
    print(f"degraded: {', '.join(retrain)}; retraining them" if retrain else
          f"no model degraded among {len(checks)} evaluated; nothing to retrain")
    run, retrained, retrain_failure = _retrain(retrain, settings) if retrain else (None, None, None)
    pending = {c.symbol: "; ".join(c.reasons) for c in checks if c.degraded and retrain_failure is not None}
    io = io_options(settings.execution)
    record_scores.with_options(**io)(fanout.results, pending, settings.monitoring.history_path)
    failures = fanout.failures + ([retrain_failure] if retrain_failure else [])
    path = weekly_report(run_id, fanout.results, checks, failures, settings.execution.reports_dir)
    alerts: list[Anomaly] = [c.alert for c in checks if c.alert] + failed_jobs(failures)
    notify.with_options(**io)(alerts, f"weekly-evaluation {run_id}: {len(retrain)} degraded",
                              notifiers(settings.monitoring))
    outcome = WeeklyOutcome(run_id, path, fanout.results, checks, retrain, run, retrained, failures)
    if failures:
        raise RunFailed(failed_jobs_message(failures, len(targets) + bool(retrain)), outcome)
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Run the weekly evaluation from the command line; exit 2 on bad input, 1 if the run failed."""
    args = weekly_evaluation_parser().parse_args(argv)
    return run_cli(args, lambda settings, symbols: weekly_evaluation(symbols=symbols, settings=settings),
                   _print_outcome, failed="weekly evaluation")


def _print_outcome(outcome: WeeklyOutcome, settings: Settings) -> int:
    print(f"report: {outcome.report_path}")  # the verdicts were printed by the run
    return 0


if __name__ == "__main__":
    sys.exit(main())
