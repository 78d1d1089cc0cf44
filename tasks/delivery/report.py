"""report: the training run's leaderboard and decisions as Prefect artifacts and as files.

Files go to `<reports_dir>/<timestamp>/`: `report.json` (everything, machine-readable) and `report.html`
(self-contained, tasks/delivery/report_html.py). The artifacts' numbers are rounded to 4 significant digits and
their text escaped for Markdown (tasks/delivery/markdown.py); report.json keeps every digit.
`status` is "completed" only when every job succeeded, "completed_with_failures" when some failed, and
"failed" when the run stopped at a step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from schemas import JobFailure, redact_credentials
from stores.files import atomic_write
from tasks.delivery.markdown import cell, table_rows
from tasks.delivery.portfolio_report import portfolio_rows
from tasks.delivery.report_html import page, report_page
from tasks.evaluation.backtest import Sizing
from tasks.evaluation.choose import Decision
from tasks.evaluation.evaluate import EvaluationResult
from tasks.evaluation.portfolio_figures import PortfolioResult
from tasks.operations.monitor import resource_logged

__all__ = ["ReportRef", "leaderboard_rows", "report", "run_status", "to_jsonable", "with_production",
           "write_failure_report"]

_BACKTEST_COLUMNS = ("sharpe", "psr", "sortino", "max_dd", "calmar", "ann_return", "ann_vol", "total_return",
                     "bh_return", "win_rate", "profit_factor", "var_95", "cvar_95", "turnover", "exposure", "trades")


@dataclass(frozen=True)
class ReportRef:
    """Where a run's report was written."""

    directory: Path
    json_path: Path
    html_path: Path


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths, dates and non-finite floats as plain JSON values (NaN/inf become null)."""
    if isinstance(value, Sizing):  # its verdict and warning are properties: the report carries them too
        return {**{f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)},
                "meaningful": value.meaningful, "note": value.note}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (Path, date, datetime)):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return to_jsonable(value.item())
    return value


def run_status(failures: list[JobFailure]) -> str:
    """"completed" when nothing failed, else "completed_with_failures"."""
    return "completed_with_failures" if failures else "completed"


def with_production(results: list[EvaluationResult],
                    production: Mapping[str, EvaluationResult | None] | None) -> list[EvaluationResult]:
    """The challengers and each symbol's production model, when that is not one of them (an older version)."""
    seen = {(r.symbol, r.model_type, r.version) for r in results}
    return results + [r for r in (production or {}).values()
                      if r is not None and (r.symbol, r.model_type, r.version) not in seen]


def leaderboard_rows(results: list[EvaluationResult], decisions: list[Decision],
                     adjusted: dict[tuple[str, str, int], float] | None = None,
                     production: Mapping[str, EvaluationResult | None] | None = None) -> list[dict[str, Any]]:
    """One row per candidate and per production model (`production`: symbol -> its production model's evaluation on
    the same window): every metric, the composite, whether it is the symbol's champion after the run (`chosen`: the
    promoted challenger, or the production model kept) and whether it was production before it (`production`).

    dm_p is the Diebold-Mariano p-value against the better naive baseline; p_adj the Holm-adjusted p-value of the
    gate the candidate faces (`adjusted`, keyed by (symbol, model type, version)): for a per-symbol model that DM
    test across the symbol's candidates, for a universe model its daily rank IC test across the universe models.
    Where no lot fits the capital (`tradable` False) the backtest columns are null: nothing could trade, so they
    would only be zeros. psr is null with fewer than 30 days in a position or 5 trades.
    """
    chosen = {(d.symbol, d.model_type, d.version) for d in decisions if d.model_type is not None}
    current = {(r.symbol, r.model_type, r.version) for r in (production or {}).values() if r is not None}
    rows = []
    for r in sorted(with_production(results, production), key=lambda r: (r.symbol, -r.composite)):
        p, s = r.prediction, r.strategy
        rows.append({
            "symbol": r.symbol, "model": r.model_type, "version": r.version, "composite": r.composite,
            "chosen": (r.symbol, r.model_type, r.version) in chosen,
            "production": (r.symbol, r.model_type, r.version) in current,
            "rmse": p.rmse, "zero_rmse": r.baselines.zero.rmse, "last_rmse": r.baselines.last_return.rmse,
            "dm_p": r.against_baseline.p_value, "p_adj": (adjusted or {}).get((r.symbol, r.model_type, r.version)),
            "mae": p.mae, "r2": p.r2, "dir_acc": p.directional_accuracy,
            "ic": p.ic, "rank_ic": p.rank_ic, "tradable": r.sizing.meaningful,
            "sharpe": s.sharpe, "psr": s.psr, "sortino": s.sortino, "max_dd": s.max_drawdown, "calmar": s.calmar,
            "ann_return": s.annual_return, "ann_vol": s.annual_volatility, "total_return": s.total_return,
            "bh_return": r.buy_and_hold.total_return, "price_move": r.price_move, "win_rate": s.win_rate,
            "profit_factor": s.profit_factor, "var_95": s.var_95, "cvar_95": s.cvar_95, "turnover": r.turnover,
            "exposure": r.exposure, "trades": r.trades, "cv_rmse": r.cv.mean.rmse, "cv_rmse_std": r.cv.std.rmse,
        })
        if not r.sizing.meaningful:
            rows[-1].update(dict.fromkeys(_BACKTEST_COLUMNS))
    return [to_jsonable(row) for row in rows]


def _markdown(decisions: list[Decision], failures: list[JobFailure]) -> str:
    lines = ["# Champion decisions", ""]
    if failures:
        lines += [f"## {len(failures)} failed job(s)", *[f"- **{cell(str(f))}**" for f in failures], ""]
    for d in decisions:
        target = f"{d.model_type} v{d.version}" if d.model_type else "no model"
        lines += [f"## {cell(f'{d.symbol}: {d.action} ({target})')}", *[f"- {cell(reason)}" for reason in d.reasons],
                  ""]
    return "\n".join(lines)


@task(name="report", cache_policy=NO_CACHE)
@resource_logged
def report(run_id: str, reports_dir: Path, results: list[EvaluationResult], decisions: list[Decision],
           sections: dict[str, Any], failures: list[JobFailure],
           adjusted: dict[tuple[str, str, int], float] | None = None,
           portfolios: list[PortfolioResult] | None = None,
           production: dict[str, EvaluationResult | None] | None = None) -> ReportRef:
    """Write report.json and report.html, and publish the leaderboard, the decisions and the top-k portfolios
    (`portfolios`: each universe model's and the per-symbol champions') as Prefect artifacts; `production` is each
    symbol's production model evaluated on the same window (see leaderboard_rows)."""
    portfolios = portfolios or []
    content = {
        "run_id": run_id, "created_at": datetime.now(UTC).isoformat(), "status": run_status(failures),
        "failures": to_jsonable(failures), "leaderboard": leaderboard_rows(results, decisions, adjusted, production),
        "decisions": to_jsonable(decisions), "evaluations": to_jsonable(results), **to_jsonable(sections),
        "portfolios": to_jsonable(portfolios),
    }
    content.setdefault("data_source", {})
    directory = Path(reports_dir) / run_id
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "report.json", directory / "report.html"
    atomic_write(json_path, json.dumps(content, indent=2))
    atomic_write(html_path, report_page(content, with_production(results, production), decisions, portfolios))
    create_table_artifact(table_rows(content["leaderboard"]), key="training-leaderboard",
                          description="symbol x model: every metric, the composite score, and the chosen champion")
    if portfolios:
        create_table_artifact(table_rows(to_jsonable(portfolio_rows(portfolios))), key="training-portfolios",
                              description="each ranking as a top-k portfolio against the equal-weight universe and "
                                          "its buy-and-hold, after costs and taxes (rates as fractions)")
    create_markdown_artifact(_markdown(decisions, failures), key="training-decisions",
                             description=f"champion decisions; files in {directory}")
    return ReportRef(directory, json_path, html_path)


def write_failure_report(reports_dir: Path, run_id: str, step: str, error: BaseException,
                         sections: dict[str, Any], failures: list[JobFailure]) -> ReportRef:
    """Record a run that stopped at `step`: why, the jobs that failed before it, and what had finished."""
    directory = Path(reports_dir) / run_id
    directory.mkdir(parents=True, exist_ok=True)
    content = {"run_id": run_id, "created_at": datetime.now(UTC).isoformat(), "status": "failed",
               "failed_step": step, "error": redact_credentials(f"{type(error).__name__}: {error}"),
               "failures": to_jsonable(failures), **to_jsonable(sections)}
    json_path, html_path = directory / "report.json", directory / "report.html"
    atomic_write(json_path, json.dumps(content, indent=2))
    atomic_write(html_path, page(content))
    return ReportRef(directory, json_path, html_path)
