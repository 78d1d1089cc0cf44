"""Flow `training`: data-pipeline -> model-pipeline -> evaluation-pipeline -> choose -> stage -> report.

CLI: python -m flows.training --symbols VHM [--universe VN30] [--config FILE] [--retrain-all] [--no-optimize]
     [--no-deploy] [--trials N] [--tuning-timeout SECONDS]
Python: run_full_pipeline(symbols=["VHM"], retrain_all=False)
"""

from __future__ import annotations

import sys

from flows.cli import prefect_environment, run_cli, training_parser, tuning_overrides

if __name__ == "__main__":
    training_parser().parse_args()  # answer --help and usage errors before the slow imports below
    prefect_environment()

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from flows.data_pipeline import DataPipelineError, data_pipeline
from flows.deployment_pipeline import deployment_pipeline
from flows.evaluation_pipeline import evaluation_pipeline
from flows.fanout import despite_failed_jobs
from flows.model_pipeline import model_pipeline
from flows.runners import task_runner
from schemas import JobFailure, RunFailed, failed_jobs_message, validate_symbol
from settings import Settings, load_settings
from stores.base import PriceStoreError
from stores.factory import open_price_store, open_registry
from tasks.data.load import check_prices, describe_sources
from tasks.delivery.deploy import DeploymentResult, stage_champions
from tasks.delivery.report import ReportRef, leaderboard_rows, report, run_status, write_failure_report
from tasks.delivery.run_log import log_choice, log_deployments, log_failures, log_report
from tasks.delivery.summaries import format_leaderboard, report_sections, run_failures
from tasks.evaluation.champions import champions_portfolio
from tasks.evaluation.choose import Decision, choose
from tasks.evaluation.gate import gate_verdicts, universe_verdicts
from tasks.evaluation.universe import UniverseEvidence
from tasks.operations.caching import io_options
from tasks.operations.monitor import Anomaly
from tasks.operations.notify import notifiers, notify
from tasks.operations.watch import watch_run

__all__ = ["TrainingOutcome", "main", "run_full_pipeline", "training"]


@dataclass(frozen=True)
class TrainingOutcome:
    """What one run of the full flow produced."""

    run_id: str
    report: ReportRef
    decisions: list[Decision]
    leaderboard: list[dict[str, Any]]
    failures: list[JobFailure] = field(default_factory=list)
    deployments: list[DeploymentResult] = field(default_factory=list)
    alerts: list[Anomaly] = field(default_factory=list)
    jobs: int = 0
    """training, evaluation and deployment jobs run, failed ones included."""
    evidence: list[UniverseEvidence] = field(default_factory=list)
    """each universe (pooled) version's test predictions over its universe, as a cross-sectional ranking."""
    universe_lines: list[str] = field(default_factory=list)
    """the universe gate's verdict on each universe challenger, in words."""


@flow(name="training", log_prints=True)
def training(symbols: list[str] | None = None, config_file: str | None = None, retrain_all: bool = False,
             optimize: bool | None = None, deploy: bool | None = None, universe: str | None = None,
             settings: Settings | None = None) -> TrainingOutcome:
    """The full daily job for the watch list `symbols` (default: data.symbols), ending in a report.

    `universe` names the symbol list universe (pooled) models are fitted and judged on (default: data.universe;
    none: the watch list); its symbols get feature sets too, all cut by one calendar.
    Any failed job still gets its report written (failures first); the run then ends Failed by raising
    RunFailed("k of n jobs failed") with the outcome attached.
    """
    settings = settings or load_settings(config_file)
    symbols = [validate_symbol(s) for s in (symbols or settings.data.symbols)]
    members = list(settings.data.universe_symbols(universe or settings.data.universe) or symbols)
    run_symbols = list(dict.fromkeys([*symbols, *members]))
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%dT%H%M%S%fZ")
    data = models = evaluation = sources = deployments = None
    evidence: list[UniverseEvidence] = []
    lines: list[str] = []
    step = "data-pipeline"
    try:
        price_store = open_price_store(settings.data)
        try:
            sources = describe_sources(run_symbols, price_store)
        finally:
            price_store.close()
        if members != symbols:
            print(f"universe {universe or settings.data.universe}: {len(members)} symbols for universe models; "
                  f"watch list {', '.join(symbols)}")
        data = data_pipeline(symbols=run_symbols, settings=settings)
        all_refs = {s.ref.symbol: s.ref for s in data}
        refs = {s: all_refs[s] for s in symbols}
        step = "model-pipeline"
        fan_out = model_pipeline.with_options(task_runner=task_runner(settings.execution))
        models = despite_failed_jobs(fan_out, symbols=symbols, settings=settings, refs=all_refs,
                                     retrain_all=retrain_all, optimize=optimize, universe=members)
        step = "evaluation-pipeline"
        scored = evaluation_pipeline.with_options(task_runner=task_runner(settings.execution))
        evaluation = despite_failed_jobs(scored, refs, settings, universe_refs=all_refs)
        step = "choose"
        level = settings.model_selection.significance_level
        money = settings.model_selection.require_positive_excess
        evidence = evaluation.evidence
        lines = _evidence_lines(evaluation.results, evidence, level, money)
        adjusted = {key: v.adjusted for key, v in gate_verdicts(
            evaluation.results, {(e.model_type, e.version): e for e in evidence}, level, money).items()}
        decisions = choose(evaluation.results, evaluation.production, level, evidence, money)
        leaderboard = leaderboard_rows(evaluation.results, decisions, adjusted, evaluation.production)
        log_choice(get_run_logger(), leaderboard, lines, decisions)
        champions = champions_portfolio(decisions, evaluation.results, evaluation.production, refs,
                                        settings.evaluation, settings.markets)
        stage_champions.with_options(**io_options(settings.execution))(decisions, open_registry(settings.models))
        if settings.deployment.enabled if deploy is None else deploy:
            step = "deployment-pipeline"
            deployments = despite_failed_jobs(deployment_pipeline, decisions, refs, settings)
        log_deployments(get_run_logger(), decisions, deployments)
        step = "report"
        failures = run_failures(models, evaluation, deployments)
        portfolios = [e.portfolio for e in evidence if e.portfolio] + ([champions] if champions else [])
        written = report(run_id, settings.execution.reports_dir, evaluation.results, decisions,
                         report_sections(data, models, evaluation, sources, deployments, lines), failures, adjusted,
                         portfolios, evaluation.production)
        log_report(get_run_logger(), failures, written.html_path)
    except Exception as exc:
        failed_jobs = run_failures(models, evaluation, deployments)
        try:
            written_to = str(write_failure_report(
                settings.execution.reports_dir, run_id, step, exc,
                report_sections(data, models, evaluation, sources, deployments, lines), failed_jobs).html_path)
        except OSError as unwritten:  # the disk that failed the step may fail its record too: say so, keep `exc`
            written_to = f"not written: {unwritten}"
        log_failures(get_run_logger(), failed_jobs)
        get_run_logger().error("training failed at step %s: %s: %s (failure report: %s)", step, type(exc).__name__,
                               exc, written_to)
        failed = Anomaly("failed_job", f"training {run_id}", f"step {step} failed: {type(exc).__name__}: {exc}")
        io = io_options(settings.execution)
        notify.with_options(**io)([failed], f"training {run_id} failed", notifiers(settings.monitoring))
        raise
    alerts = watch_run("training", run_id, started, (datetime.now(UTC) - started).total_seconds(),
                       run_status(failures), models.results, failures, settings.monitoring)
    notify.with_options(**io_options(settings.execution))(alerts, f"training {run_id}: {len(alerts)} alert(s)",
                                                          notifiers(settings.monitoring))
    outcome = TrainingOutcome(run_id, written, decisions, leaderboard, failures, deployments or [], alerts,
                              jobs=models.jobs + evaluation.jobs + len(deployments or []), evidence=evidence,
                              universe_lines=lines)
    if failures:
        raise RunFailed(failed_jobs_message(failures, outcome.jobs), outcome)
    return outcome


def _evidence_lines(results: list[Any], evidence: list[UniverseEvidence], level: float,
                    require_excess: bool) -> list[str]:
    """Each universe candidate's evidence with its Holm-adjusted p and verdict (the gate's family: the run's
    universe challengers)."""
    family = sorted({(r.model_type, r.version) for r in results if (r.model_type, r.version) in
                     {(e.model_type, e.version) for e in evidence}})
    verdicts = universe_verdicts({(e.model_type, e.version): e for e in evidence}, level, family, require_excess)
    return [("passes: " if v.passed else "fails: ") + v.detail for v in verdicts.values()]


def run_full_pipeline(symbols: list[str] | None = None, retrain_all: bool = False, optimize: bool | None = None,
                      deploy: bool | None = None, config_file: str | None = None,
                      universe: str | None = None) -> TrainingOutcome:
    """Run the `training` flow from Python, as the CLI does."""
    return training(symbols=symbols, config_file=config_file, retrain_all=retrain_all, optimize=optimize,
                    deploy=deploy, universe=universe)


def main(argv: list[str] | None = None) -> int:
    """Run the full pipeline from the command line; exit 2 on bad input, 1 if the run failed."""
    args = training_parser().parse_args(argv)

    def run(settings: Settings, symbols: list[str]) -> TrainingOutcome:
        members = settings.data.universe_symbols(args.universe or settings.data.universe) or ()
        check_prices(list(dict.fromkeys([*symbols, *members])), settings.data)
        return training(symbols=symbols, settings=settings, retrain_all=args.retrain_all,
                        optimize=False if args.no_optimize else None, deploy=False if args.no_deploy else None,
                        universe=args.universe)

    return run_cli(args, run, _print_outcome, failed="training", input_errors=(PriceStoreError, DataPipelineError),
                   overrides=tuning_overrides(args), run_failed=_print_failed_run,
                   prints_summary=True)


def _print_outcome(outcome: TrainingOutcome, settings: Settings) -> int:
    print(format_leaderboard(outcome.leaderboard, outcome.decisions, outcome.failures, outcome.deployments,
                             outcome.report.html_path, outcome.universe_lines))
    return 0


def _print_failed_run(exc: RunFailed) -> int:
    outcome = exc.outcome
    print(format_leaderboard(outcome.leaderboard, outcome.decisions, outcome.failures, outcome.deployments,
                             outcome.report.html_path, outcome.universe_lines))
    print(f"training failed: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
