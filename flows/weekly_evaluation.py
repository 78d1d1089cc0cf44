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

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.daily_retrain import DailyRetrainOutcome, daily_retrain
from flows.fanout import error_text, gather
from schemas import FeatureSetRef, JobFailure, RunFailed, failed_jobs_message, validate_symbol
from settings import DataSettings, ModelsSettings, Settings, load_settings
from stores.features import FeatureStore, FeatureStoreError
from stores.files import atomic_write
from stores.metrics import MetricsHistory
from stores.registry import LocalModelRegistry
from tasks.evaluation.drift import WindowAssessment, assess_window
from tasks.operations.caching import io_options
from tasks.operations.monitor import Anomaly, failed_jobs, resource_logged
from tasks.operations.notify import notify
from tasks.operations.schedule import HealthCheck, degraded, disabled_schedule

__all__ = ["RETRAIN_DEPLOYMENT", "ProductionTarget", "RetrainRun", "WeeklyOutcome", "deployment_scores", "main",
           "production_targets", "record_scores", "request_retrain", "weekly_evaluation", "weekly_report"]

RETRAIN_DEPLOYMENT = "daily-retrain/daily"
SOURCE = "weekly-evaluation"


@dataclass(frozen=True)
class ProductionTarget:
    """A symbol's production version and the feature set it is evaluated on."""

    symbol: str
    model_type: str
    version: int
    ref: FeatureSetRef


@dataclass(frozen=True)
class RetrainRun:
    """The `daily-retrain/daily` deployment run a weekly evaluation started, as it stood when the wait ended."""

    flow_run_id: str
    state: str
    """the state's name: "Completed", "Failed", "Crashed", or "Running" when the wait timed out."""
    message: str = ""

    @property
    def completed(self) -> bool:
        return self.state == "Completed"


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


@task(name="production-targets", cache_policy=NO_CACHE)
@resource_logged
def production_targets(symbols: list[str], data: DataSettings, models: ModelsSettings) -> list[ProductionTarget]:
    """Each symbol with a production model and a current feature set; the others are skipped with a note."""
    registry, features = LocalModelRegistry(models.registry_path), FeatureStore(data.feature_store_path)
    targets = []
    for symbol in symbols:
        production = registry.alias(symbol, "production")
        if production is None:
            print(f"{symbol}: skipped (no production model)")
            continue
        try:
            ref = features.current(symbol)
        except FeatureStoreError as exc:
            print(f"{symbol}: skipped ({exc})")
            continue
        targets.append(ProductionTarget(symbol, production.model_type, production.version, ref))
    return targets


@task(name="deployment-scores", cache_policy=NO_CACHE)
@resource_logged
def deployment_scores(assessments: list[WindowAssessment], history_path: Path) -> dict[str, float | None]:
    """Per symbol, the composite its production version had when deployed, from MetricsHistory.

    That is the newest score with source "deployment" for the exact (model type, version); without one,
    the oldest score recorded for that version (its first weekly evaluation); None when there is none.
    """
    history, scores = MetricsHistory(history_path), {}
    for a in assessments:
        records = [r for r in history.recent_scores(a.symbol, 1000, a.model_type) if r.version == a.version]
        deployed = [r for r in records if r.source == "deployment"]
        scores[a.symbol] = deployed[0].composite if deployed else (records[-1].composite if records else None)
    return scores


@task(name="record-scores", cache_policy=NO_CACHE)
@resource_logged
def record_scores(assessments: list[WindowAssessment], history_path: Path) -> int:
    """Append each window score to MetricsHistory with source "weekly-evaluation"."""
    history = MetricsHistory(history_path)
    for a in assessments:
        history.record_score(a.symbol, a.model_type, a.version, a.composite, a.window_end, SOURCE)
    return len(assessments)


def _rows(assessments: list[WindowAssessment], checks: list[HealthCheck]) -> list[dict[str, Any]]:
    verdicts = {c.symbol: c for c in checks}
    return [{"symbol": a.symbol, "model": f"{a.model_type} v{a.version}", "window": f"{a.window_start}..{a.window_end}",
             "composite": round(a.composite, 4), "deployment_composite": verdicts[a.symbol].deployment_score,
             "rmse": a.prediction.rmse, "sharpe": a.strategy.sharpe, "max_drawdown": a.strategy.max_drawdown,
             "worst_feature": a.drift.worst_feature, "worst_psi": round(a.drift.worst_psi, 4),
             "degraded": verdicts[a.symbol].degraded, "reasons": "; ".join(verdicts[a.symbol].reasons)}
            for a in assessments]


@task(name="weekly-report", cache_policy=NO_CACHE)
@resource_logged
def weekly_report(run_id: str, assessments: list[WindowAssessment], checks: list[HealthCheck],
                  failures: list[JobFailure], reports_dir: Path) -> Path:
    """Publish the "weekly-evaluation" table and markdown artifacts and write reports/weekly-<run_id>/weekly.json."""
    rows = _rows(assessments, checks)
    create_table_artifact(rows, key="weekly-evaluation", description=f"weekly evaluation {run_id}")
    lines = [f"# Weekly evaluation {run_id}", ""] + [f"- **FAILED** {f}" for f in failures] + [
        f"- **{c.symbol}** {c.model}: {'DEGRADED' if c.degraded else 'ok'} - " + "; ".join(c.reasons) for c in checks]
    create_markdown_artifact("\n".join(lines), key="weekly-evaluation-summary", description=f"weekly {run_id}")
    path = Path(reports_dir) / f"weekly-{run_id}" / "weekly.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"run_id": run_id, "status": "failed" if failures else "completed",
               "failures": [asdict(f) for f in failures], "rows": rows, "assessments": [asdict(a) for a in assessments]}
    atomic_write(path, json.dumps(content, indent=2, default=str))
    return path


@task(name="request-retrain", cache_policy=NO_CACHE)
@resource_logged
def request_retrain(symbols: list[str], wait_hours: float) -> RetrainRun | None:
    """Run the `daily-retrain/daily` deployment for `symbols` and wait for it; None when it does not exist."""
    print(f"retraining {', '.join(symbols)} through the {RETRAIN_DEPLOYMENT} deployment, when it exists; a worker "
          f"must pick the run up, and this run waits for it at most {wait_hours:g} h")
    try:
        run = cast(FlowRun, run_deployment(RETRAIN_DEPLOYMENT, parameters={"symbols": symbols, "force": True},
                                           timeout=wait_hours * 3600))
    except ObjectNotFound:
        return None
    state = run.state
    name = (state.name or state.type.value.title()) if state else "Unknown"
    finished = state is not None and state.is_final()
    result = RetrainRun(str(run.id), name, (state.message or "") if state is not None and finished else
                        f"not finished after waiting {wait_hours:g} h")
    print(f"{RETRAIN_DEPLOYMENT} run {result.flow_run_id}: {result.state} {result.message}".rstrip())
    return result


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
    targets = production_targets(symbols, settings.data, settings.models)
    futures = assess_window.map([t.symbol for t in targets], [t.model_type for t in targets],
                                [t.version for t in targets], [t.ref for t in targets], unmapped(cfg.window_days),
                                unmapped(settings.evaluation), unmapped(settings.models),
                                unmapped(settings.model_selection.weights),
                                [settings.markets.of(t.symbol) for t in targets], unmapped(cfg.drift_days))
    fanout = gather(list(futures), targets, name="weekly-evaluation",
                    describe=lambda a: f"composite {a.composite:.4f} worst PSI {a.drift.worst_psi:.3f}",
                    failure=lambda t, error: JobFailure(t.symbol, t.model_type, "evaluate", error))
    baseline = deployment_scores(fanout.results, settings.monitoring.history_path)
    checks = [degraded(a.symbol, f"{a.model_type} v{a.version}", a.composite, baseline[a.symbol], a.drift,
                       cfg.score_tolerance, cfg.psi_bound) for a in fanout.results]
    io = io_options(settings.execution)
    record_scores.with_options(**io)(fanout.results, settings.monitoring.history_path)
    retrain = [c.symbol for c in checks if c.degraded]
    print(f"degraded: {', '.join(retrain) or 'none'}")
    run, retrained, retrain_failure = _retrain(retrain, settings) if retrain else (None, None, None)
    failures = fanout.failures + ([retrain_failure] if retrain_failure else [])
    path = weekly_report(run_id, fanout.results, checks, failures, settings.execution.reports_dir)
    alerts: list[Anomaly] = [c.alert for c in checks if c.alert] + failed_jobs(failures)
    notify.with_options(**io)(alerts, f"weekly-evaluation {run_id}: {len(retrain)} degraded", settings.monitoring)
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
    for check in outcome.checks:
        print(f"{check.symbol} {check.model}: {'degraded' if check.degraded else 'ok'}: " + "; ".join(check.reasons))
    print(f"report: {outcome.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
