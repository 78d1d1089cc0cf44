"""Flow `weekly-evaluation`: score each production model on the newest rows, measure feature drift, report,
record the scores and retrain exactly the degraded symbols.

CLI: python -m flows.weekly_evaluation [--symbols VCB,VHM] [--config FILE]
"""

from __future__ import annotations

import sys

from flows.cli import weekly_evaluation_parser

if __name__ == "__main__":
    weekly_evaluation_parser().parse_args()  # answer --help and usage errors before the slow imports below

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.cli import parse_symbols, quiet_server_shutdown
from flows.daily_retrain import DailyRetrainOutcome, daily_retrain
from flows.fanout import JobFailure, gather
from schemas import FeatureSetRef, validate_symbol
from settings import ConfigError, DataSettings, ModelsSettings, Settings, load_settings
from stores.features import FeatureStore, FeatureStoreError
from stores.metrics import MetricsHistory
from stores.registry import LocalModelRegistry
from tasks.drift import WindowAssessment, assess_window
from tasks.monitor import Anomaly, failed_jobs, resource_logged
from tasks.notify import notify
from tasks.schedule import HealthCheck, degraded, disabled_schedule

__all__ = ["RETRAIN_DEPLOYMENT", "ProductionTarget", "WeeklyOutcome", "deployment_scores", "main",
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
class WeeklyOutcome:
    """What one weekly evaluation measured, decided and started."""

    run_id: str
    report_path: Path | None
    """None when a disabled schedule made the run do nothing."""
    assessments: list[WindowAssessment]
    checks: list[HealthCheck]
    retrain: list[str]
    """the degraded symbols handed to the daily retrain."""
    retrain_run: str | None = None
    """the flow run id of the `daily-retrain/daily` deployment run, when that deployment exists."""
    retrained: DailyRetrainOutcome | None = None
    """the in-process daily retrain, when the deployment does not exist."""
    failures: list[JobFailure] = field(default_factory=list)


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


@task(name="record-scores", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
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
    lines = [f"# Weekly evaluation {run_id}", ""] + [
        f"- **{c.symbol}** {c.model}: {'DEGRADED' if c.degraded else 'ok'} - " + "; ".join(c.reasons) for c in checks]
    lines += [f"- **{f.symbol}** {f.model_type}: evaluation failed - {f.error}" for f in failures]
    create_markdown_artifact("\n".join(lines), key="weekly-evaluation-summary", description=f"weekly {run_id}")
    folder = Path(reports_dir) / f"weekly-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "weekly.json"
    content = {"run_id": run_id, "rows": rows, "assessments": [asdict(a) for a in assessments],
               "failures": [asdict(f) for f in failures]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


@task(name="request-retrain", cache_policy=NO_CACHE)
@resource_logged
def request_retrain(symbols: list[str]) -> str | None:
    """Start the `daily-retrain/daily` deployment for `symbols` without waiting; None when it does not exist."""
    try:
        run = run_deployment(RETRAIN_DEPLOYMENT, parameters={"symbols": symbols, "force": True}, timeout=0)
    except ObjectNotFound:
        return None
    return str(run.id)  # type: ignore[union-attr]


@flow(name="weekly-evaluation", log_prints=True)
def weekly_evaluation(symbols: list[str] | None = None, settings: Settings | None = None,
                      config_file: str | None = None) -> WeeklyOutcome:
    """Evaluate the production models of `symbols` (default: data.symbols) and retrain the degraded ones."""
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
                                unmapped(settings.model_selection.weights), unmapped(cfg.drift_days))
    fanout = gather(list(futures), targets, name="weekly-evaluation",
                    describe=lambda a: f"composite {a.composite:.4f} worst PSI {a.drift.worst_psi:.3f}",
                    failure=lambda t, error: JobFailure(t.symbol, t.model_type, error))
    baseline = deployment_scores(fanout.results, settings.monitoring.history_path)
    checks = [degraded(a.symbol, f"{a.model_type} v{a.version}", a.composite, baseline[a.symbol], a.drift,
                       cfg.score_tolerance, cfg.psi_bound) for a in fanout.results]
    record_scores(fanout.results, settings.monitoring.history_path)
    path = weekly_report(run_id, fanout.results, checks, fanout.failures, settings.execution.reports_dir)
    retrain = [c.symbol for c in checks if c.degraded]
    print(f"degraded: {', '.join(retrain) or 'none'}")
    run = request_retrain(retrain) if retrain else None
    retrained = daily_retrain(symbols=retrain, settings=settings, force=True) if retrain and run is None else None
    alerts: list[Anomaly] = [c.alert for c in checks if c.alert] + failed_jobs(fanout.failures)
    notify(alerts, f"weekly-evaluation {run_id}: {len(retrain)} degraded", settings.monitoring)
    return WeeklyOutcome(run_id, path, fanout.results, checks, retrain, run, retrained, fanout.failures)


def main(argv: list[str] | None = None) -> int:
    """Run the weekly evaluation from the command line; exit 2 on bad input, 1 if the run failed."""
    args = weekly_evaluation_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        symbols = parse_symbols(args.symbols) if args.symbols else list(settings.data.symbols)
        outcome = weekly_evaluation(symbols=symbols, settings=settings)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"weekly evaluation failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        quiet_server_shutdown()
    for check in outcome.checks:
        print(f"{check.symbol} {check.model}: {'degraded' if check.degraded else 'ok'}: " + "; ".join(check.reasons))
    print(f"report: {outcome.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
