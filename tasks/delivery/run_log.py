"""A training run's account of itself in a few readable lines: per symbol the best models of the leaderboard, the
universe gate, every decision with its reasons, the deployments (or why there were none), failures, the report.

The flow writes them to its run log (the Prefect UI's Logs tab, `prefect flow-run logs <id>`), each block where
it is produced; the command line prints the same decision, failure, deployment and report lines after its full
leaderboard table, and keeps the logged copies off its console (records carry the SUMMARY attribute).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas import JobFailure
    from tasks.delivery.deploy import DeploymentResult
    from tasks.evaluation.choose import Decision

__all__ = ["SUMMARY", "decision_lines", "deployment_lines", "failure_lines", "leaderboard_lines", "log_choice",
           "log_deployments", "log_failures", "log_report", "number"]

SUMMARY = "run_summary"
"""LogRecord attribute (True) on the summary records: a command line that prints the summary itself keeps them off
its console; the run log keeps them."""

Logger = logging.Logger | logging.LoggerAdapter[Any]

_KEY_METRICS = ("composite", "r2", "rmse", "dir_acc", "ic", "sharpe", "max_dd", "total_return", "p_adj")


def number(value: Any) -> str:
    """A number to 4 significant digits; "n/a" for a missing one."""
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _model_line(row: Mapping[str, Any]) -> str:
    marks = [mark for mark in ("chosen", "production") if row.get(mark)]
    metrics = ", ".join(f"{name} {number(row.get(name))}" for name in _KEY_METRICS)
    return f"  {row['model']} v{row['version']}: {metrics}" + (f" [{', '.join(marks)}]" if marks else "")


def leaderboard_lines(rows: Sequence[Mapping[str, Any]], top: int = 3) -> list[str]:
    """One block per symbol: its `top` models by composite, and the chosen one wherever it ranks.

    `rows` are leaderboard rows (tasks/delivery/report.py: leaderboard_rows), best composite first per symbol.
    """
    blocks = []
    for symbol in dict.fromkeys(row["symbol"] for row in rows):
        group = [row for row in rows if row["symbol"] == symbol]
        shown = [row for i, row in enumerate(group) if i < top or row.get("chosen")]
        lines = [f"leaderboard {symbol}: {len(group)} model(s), best composite first",
                 *(_model_line(row) for row in shown)]
        if len(group) > len(shown):
            lines.append(f"  ... {len(group) - len(shown)} more in the report")
        blocks.append("\n".join(lines))
    return blocks


def decision_lines(decisions: Sequence[Decision]) -> list[str]:
    """One block per symbol: what becomes of its production model, then one reason line per candidate."""
    blocks = []
    for d in decisions:
        target = (f"{d.model_type} v{d.version} (composite {number(d.composite)})" if d.model_type else
                  "(no model to serve)")
        blocks.append("\n".join([f"decision {d.symbol}: {d.action} {target}", *(f"    {r}" for r in d.reasons)]))
    return blocks


def deployment_lines(deployments: Sequence[DeploymentResult]) -> list[str]:
    """One line per champion sent through staging: production, or why it failed (production untouched)."""
    return [f"deployment {d.symbol}: {d.model_type} v{d.version} -> {d.status} ({d.reason})" for d in deployments]


def failure_lines(failures: Sequence[JobFailure]) -> list[str]:
    return [f"failed: {failure}" for failure in failures]


def _staged(decisions: Sequence[Decision]) -> str:
    promoted = [f"{d.symbol} {d.model_type} v{d.version}" for d in decisions if d.action == "promote"]
    return ("staged (registry alias staging): " + ", ".join(promoted)) if promoted else "no champion promoted"


def log_choice(logger: Logger, leaderboard: Sequence[Mapping[str, Any]], universe: Sequence[str],
               decisions: Sequence[Decision]) -> None:
    """The leaderboard's best models per symbol, each universe model's gate verdict, and every decision."""
    for block in [*leaderboard_lines(leaderboard), *(f"universe gate {line}" for line in universe),
                  *decision_lines(decisions)]:
        logger.info(block, extra={SUMMARY: True})


def log_deployments(logger: Logger, decisions: Sequence[Decision],
                    deployments: Sequence[DeploymentResult] | None) -> None:
    """What went to staging and production; `deployments` None: deployment was off for the run."""
    if deployments is None:
        logger.info(f"deployment off (deployment.enabled false or --no-deploy): {_staged(decisions)}; nothing sent "
                    "to the model servers", extra={SUMMARY: True})
    elif not deployments:
        logger.info("deployment: nothing to deploy, no champion promoted", extra={SUMMARY: True})
    for line in deployment_lines(deployments or []):
        logger.info(line, extra={SUMMARY: True})


def log_failures(logger: Logger, failures: Sequence[JobFailure]) -> None:
    for line in failure_lines(failures):
        logger.warning(line, extra={SUMMARY: True})


def log_report(logger: Logger, failures: Sequence[JobFailure], html_path: Path) -> None:
    """The run's failed jobs, then where its report is."""
    log_failures(logger, failures)
    logger.info(f"report: {html_path}", extra={SUMMARY: True})
