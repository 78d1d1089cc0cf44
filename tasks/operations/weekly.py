"""The weekly evaluation's steps: which production models to score, the scores they had when deployed,
recording the new ones, the weekly report, and asking the daily retrain deployment to retrain."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from schemas import FeatureSetRef, JobFailure
from stores.features import FeatureStore, FeatureStoreError
from stores.files import atomic_write
from stores.metrics import MetricsHistory
from stores.registry import ModelRegistry
from tasks.delivery.markdown import cell, table_rows
from tasks.evaluation.drift import WindowAssessment
from tasks.operations.caching import file_system_error
from tasks.operations.monitor import resource_logged
from tasks.operations.schedule import HealthCheck, version_scores

__all__ = ["RETRAIN_DEPLOYMENT", "SOURCE", "ProductionTarget", "RetrainRun", "current_refs", "deployment_scores",
           "production_targets", "record_scores", "request_retrain", "weekly_report"]

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


@task(name="production-targets", cache_policy=NO_CACHE)
@resource_logged
def production_targets(symbols: list[str], registry: ModelRegistry, features: FeatureStore) -> list[ProductionTarget]:
    """Each symbol with a production model and a current feature set; the others are skipped with a note."""
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


def current_refs(symbols: list[str], features: FeatureStore) -> list[FeatureSetRef]:
    """The current feature set of each of `symbols` that has one."""
    refs = []
    for symbol in symbols:
        try:
            refs.append(features.current(symbol))
        except FeatureStoreError:
            continue
    return refs


@task(name="deployment-scores", cache_policy=NO_CACHE)
@resource_logged
def deployment_scores(assessments: list[WindowAssessment], history_path: Path) -> dict[str, float | None]:
    """Per symbol, the composite its production version had when deployed, from MetricsHistory.

    That is the newest score with source "deployment" for the exact (model type, version); without one,
    the oldest score recorded for that version (its first weekly evaluation); None when there is none.
    """
    history, scores = MetricsHistory(history_path), {}
    for a in assessments:
        records = version_scores(history, a.symbol, a.model_type, a.version)
        deployed = [r for r in records if r.source == "deployment"]
        scores[a.symbol] = deployed[0].composite if deployed else (records[-1].composite if records else None)
    return scores


@task(name="record-scores", cache_policy=NO_CACHE,
      retry_condition_fn=file_system_error)  # retries: execution.io_retries, set by the weekly evaluation
@resource_logged
def record_scores(assessments: list[WindowAssessment], pending: dict[str, str], history_path: Path) -> int:
    """Append each window score to MetricsHistory with source "weekly-evaluation"; `pending`: symbol -> why its
    model was found degraded, for the models whose retrain did not complete (the daily retrain retrains them).
    Retried on file errors that may heal only (a full disk), not on a read-only or forbidden history."""
    history = MetricsHistory(history_path)
    for a in assessments:
        history.record_score(a.symbol, a.model_type, a.version, a.composite, a.window_end, SOURCE,
                             pending.get(a.symbol, ""))
    return len(assessments)


def _rows(assessments: list[WindowAssessment], checks: list[HealthCheck]) -> list[dict[str, Any]]:
    verdicts = {c.symbol: c for c in checks}
    return [{"symbol": a.symbol, "model": f"{a.model_type} v{a.version}", "window": f"{a.window_start}..{a.window_end}",
             "composite": a.composite, "deployment_composite": verdicts[a.symbol].deployment_score,
             "rmse": a.prediction.rmse, "sharpe": a.strategy.sharpe,
             "max_drawdown": a.strategy.max_drawdown, "daily_range_ratio": a.volatility.ratio,
             "market_range_ratio": verdicts[a.symbol].market_ratio,
             "degraded": verdicts[a.symbol].degraded, "verdict": str(verdicts[a.symbol])}
            for a in assessments]


@task(name="weekly-report", cache_policy=NO_CACHE)
@resource_logged
def weekly_report(run_id: str, assessments: list[WindowAssessment], checks: list[HealthCheck],
                  failures: list[JobFailure], reports_dir: Path) -> Path:
    """Publish the "weekly-evaluation" table and markdown artifacts and write reports/weekly-<run_id>/weekly.json."""
    rows = _rows(assessments, checks)
    create_table_artifact(table_rows(rows), key="weekly-evaluation", description=f"weekly evaluation {run_id}")
    lines = [f"# Weekly evaluation {run_id}", ""] + [f"- **FAILED** {cell(str(f))}" for f in failures] + [
        f"- {cell(str(c))}" for c in checks]
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
