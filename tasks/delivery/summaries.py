"""What the runs hand to people: the report's sections, a run's failed jobs, and the tables the command lines
print."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from schemas import DataSummary, JobFailure
from tasks.delivery.deploy import DeploymentResult
from tasks.delivery.run_log import decision_lines, deployment_lines, failure_lines
from tasks.evaluation.choose import Decision
from tasks.modeling.train import TrainResult

__all__ = ["format_leaderboard", "format_summary", "report_sections", "run_failures"]


class _Evaluated(Protocol):
    @property
    def failures(self) -> list[JobFailure]: ...


class _Trained(_Evaluated, Protocol):
    @property
    def results(self) -> list[TrainResult]: ...


def report_sections(data: list[DataSummary] | None, models: _Trained | None, evaluation: _Evaluated | None,
                    sources: dict[str, Any] | None, deployments: list[DeploymentResult] | None = None,
                    universe: Sequence[str] = ()) -> dict[str, Any]:
    """The report's record of every step that finished (None for a step that did not)."""
    return {
        "data_source": sources or {},
        "data": [{"symbol": s.ref.symbol, "rows": s.cleaning.rows_out, "features": list(s.selection.kept),
                  "splits": s.ref.rows, "feature_set": s.ref.content_hash, "cleaning": s.cleaning}
                 for s in data or []],
        "training": {"results": models.results, "failures": models.failures} if models else None,
        "evaluation_failures": evaluation.failures if evaluation else [],
        "deployment": deployments,
        "universe": list(universe),
        "universe_evidence": [dataclasses.asdict(e) for e in getattr(evaluation, "evidence", None) or []],
    }


def run_failures(models: _Trained | None, evaluation: _Evaluated | None,
                 deployments: list[DeploymentResult] | None) -> list[JobFailure]:
    """Every failed job of a run: training, evaluation, deployment."""
    return ((models.failures if models else []) + (evaluation.failures if evaluation else [])
            + [d.failure for d in deployments or [] if d.failure])


def format_leaderboard(leaderboard: list[dict[str, Any]], decisions: Sequence[Decision],
                       failures: Sequence[JobFailure], deployments: Sequence[DeploymentResult],
                       report_path: Path, universe: Sequence[str] = ()) -> str:
    """The console leaderboard: the main metrics per (symbol, model), each universe model's gate across its
    universe, then the decision, failure, deployment and report lines the run also logs (tasks/delivery/run_log.py)."""
    columns = ("symbol", "model", "version", "composite", "rmse", "zero_rmse", "dm_p", "p_adj", "r2", "dir_acc",
               "sharpe", "psr", "max_dd", "total_return", "bh_return", "price_move", "chosen")
    lines = [" ".join(f"{c:>12}" for c in columns)]
    for row in leaderboard:
        lines.append(" ".join(
            f"{row[c]:>12.3g}" if isinstance(row[c], float) and c in ("dm_p", "p_adj") else
            f"{row[c]:>12.4f}" if isinstance(row[c], float) else
            f"{('n/a' if c == 'psr' and row.get('tradable') else '') if row[c] is None else str(row[c]):>12}"
            for c in columns))
    lines += [f"universe gate {line}" for line in universe]
    lines += decision_lines(decisions) + failure_lines(failures) + deployment_lines(deployments)
    lines.append(f"report: {report_path}")
    return "\n".join(lines)


def format_summary(summaries: Sequence[DataSummary], location: str) -> str:
    """The per-symbol table the CLI prints."""
    lines = [f"{'symbol':<8} {'rows':>6} {'features':>9} {'train':>6} {'val':>5} {'test':>5} {'latest':>6} "
             f"{'fixes':>5} {'cached':>6}"]
    for s in summaries:
        rows = s.ref.rows
        lines.append(
            f"{s.ref.symbol:<8} {s.cleaning.rows_out:>6} {len(s.selection.kept):>4}/{s.features_engineered:<4} "
            f"{rows['train']:>6} {rows['val']:>5} {rows['test']:>5} {rows['latest']:>6} "
            f"{s.cleaning.total_fixes:>5} {s.cached_tasks:>3}/{s.total_tasks}")
        for rule, count in sorted(s.cleaning.fixes.items()):
            kept = " (the last row of each date kept)" if rule == "duplicate_dates_dropped" else ""
            lines.append(f"         clean: {rule} x{count}{kept}")
        if s.cleaning.flagged_jumps:
            lines.append(f"         clean: {len(s.cleaning.flagged_jumps)} extreme jump(s) flagged, first "
                         f"{s.cleaning.flagged_jumps[0]}")
        if s.cleaning.zero_volume_days:
            lines.append(f"         clean: {len(s.cleaning.zero_volume_days)} day(s) with zero volume flagged, first "
                         f"{s.cleaning.zero_volume_days[0]}")
        for gap in s.cleaning.gaps:
            lines.append(f"         clean: {gap.sessions} trading sessions missing between {gap.after} and "
                         f"{gap.before}")
    lines.append(f"feature store: {location}")
    return "\n".join(lines)
