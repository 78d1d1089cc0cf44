"""report: the training run's leaderboard and decisions as Prefect artifacts and as files.

Files go to `<reports_dir>/<timestamp>/`: `report.json` (everything, machine-readable) and `report.html`
(self-contained: failures first, in red, then the leaderboard, and per symbol the equity curve against
buy-and-hold and the predicted against the actual returns, drawn with matplotlib and embedded as PNG).
`status` is "completed" only when every job succeeded, "completed_with_failures" when some failed, and
"failed" when the run stopped at a step.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from schemas import JobFailure
from stores.files import atomic_write
from tasks.delivery.charts import png_base64, pyplot
from tasks.delivery.markdown import inline
from tasks.delivery.portfolio_report import portfolio_html, portfolio_rows
from tasks.evaluation.backtest import Sizing
from tasks.evaluation.choose import Decision
from tasks.evaluation.evaluate import EvaluationResult
from tasks.evaluation.portfolio_figures import PortfolioResult
from tasks.operations.monitor import resource_logged

__all__ = ["ReportRef", "leaderboard_rows", "report", "run_status", "to_jsonable", "write_failure_report"]

LEADERBOARD_COLUMNS = ("symbol", "model", "version", "composite", "chosen", "rmse", "zero_rmse", "last_rmse", "dm_p",
                       "p_adj",
                       "mae", "r2", "dir_acc", "ic", "rank_ic", "tradable", "sharpe", "psr", "sortino", "max_dd",
                       "calmar", "ann_return", "ann_vol", "total_return", "bh_return", "price_move", "win_rate",
                       "profit_factor", "var_95", "cvar_95", "turnover", "exposure", "trades", "cv_rmse",
                       "cv_rmse_std")
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


def leaderboard_rows(results: list[EvaluationResult], decisions: list[Decision],
                     adjusted: dict[tuple[str, str, int], float] | None = None) -> list[dict[str, Any]]:
    """One row per (symbol, model type): every metric, the composite, and whether it was chosen.

    dm_p is the Diebold-Mariano p-value against the better naive baseline; p_adj the Holm-adjusted p-value of the
    gate the candidate faces (`adjusted`, keyed by (symbol, model type, version)): for a per-symbol model that DM
    test across the symbol's candidates, for a universe model its daily rank IC test across the universe models.
    Where no lot fits the capital (`tradable` False) the backtest columns are null: nothing could trade, so they
    would only be zeros. psr is null with fewer than 30 days in a position or 5 trades.
    """
    chosen = {(d.symbol, d.model_type, d.version) for d in decisions if d.action == "promote"}
    rows = []
    for r in sorted(results, key=lambda r: (r.symbol, -r.composite)):
        p, s = r.prediction, r.strategy
        rows.append({
            "symbol": r.symbol, "model": r.model_type, "version": r.version, "composite": r.composite,
            "chosen": (r.symbol, r.model_type, r.version) in chosen,
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


def _figure_png(result_group: list[EvaluationResult], chosen: EvaluationResult | None) -> str:
    """Equity vs buy-and-hold for every model of a symbol, and predicted vs actual for the best one."""
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(12, 4))
    first = result_group[0].curves
    left.plot(first.dates, first.benchmark_equity, color="black", linewidth=1.5, label="buy and hold")
    for r in result_group:
        left.plot(r.curves.dates, r.curves.equity, linewidth=1, label=f"{r.model_type} v{r.version}")
    left.set_title(f"equity on the test window (from {first.equity[0]:,.0f})")
    left.legend(fontsize=8)
    shown = chosen or max(result_group, key=lambda r: r.composite)
    right.plot(shown.curves.dates, shown.curves.actual, color="black", linewidth=1, label="actual")
    right.plot(shown.curves.dates, shown.curves.predicted, linewidth=1, label=f"predicted ({shown.model_type})")
    right.set_title("forward log return: predicted vs actual")
    right.legend(fontsize=8)
    return png_base64(fig)


def _failures_html(content: dict[str, Any]) -> str:
    """The run's failures, in red: the step it stopped at (if any), then every failed job."""
    lines = []
    if content.get("failed_step"):
        lines.append(f"<li>step <b>{html.escape(content['failed_step'])}</b>: {html.escape(content['error'])}</li>")
    lines += [f"<li>{html.escape(f['step'])} {html.escape(f['model_type'])} {html.escape(f['symbol'])}: "
              f"{html.escape(f['error'])}</li>" for f in content.get("failures") or []]
    if not lines:
        return ""
    return (f'<section class="failures"><h2>Failures ({len(lines)})</h2><ul>{"".join(lines)}</ul>'
            f"<p>Status: {html.escape(content['status'])}.</p></section>")


def _page(content: dict[str, Any], body: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>training report {content['run_id']}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}tr.chosen{{background:#e6f4e6}}
.failures{{color:#b00020;border:2px solid #b00020;padding:0 1em;margin-bottom:1em}}</style></head><body>
<h1>Training report {html.escape(content['run_id'])}</h1>{_failures_html(content)}
<p>Created {html.escape(content['created_at'])}. Test windows per symbol are the held-out test split.
Data source: {html.escape(json.dumps(content.get("data_source") or {}))}.</p>{body}</body></html>"""


def _html(content: dict[str, Any], results: list[EvaluationResult], decisions: list[Decision],
          portfolios: list[PortfolioResult]) -> str:
    def cell(row: dict[str, Any], column: str) -> str:
        value = row[column]
        if value is None:  # a PSR left out for too few days in a position or trades says so
            text = "n/a" if column == "psr" and row.get("tradable") else ""
        else:
            text = f"{value:.3g}" if column in ("dm_p", "p_adj") else f"{value:.4f}" if isinstance(value, float) \
                else str(value)
        return f"<td>{html.escape(text)}</td>"

    rows = content["leaderboard"]
    table = "<tr>" + "".join(f"<th>{c}</th>" for c in LEADERBOARD_COLUMNS) + "</tr>" + "".join(
        "<tr" + (' class="chosen"' if row["chosen"] else "") + ">" + "".join(cell(row, c) for c in LEADERBOARD_COLUMNS)
        + "</tr>" for row in rows)
    sections = []
    for decision in decisions:
        group = [r for r in results if r.symbol == decision.symbol]
        chosen = next((r for r in group if (r.model_type, r.version) == (decision.model_type, decision.version)), None)
        reasons = "".join(f"<li>{html.escape(line)}</li>" for line in decision.reasons)
        image = f'<img src="data:image/png;base64,{_figure_png(group, chosen)}">' if group else ""
        sections.append(f"<h2>{html.escape(decision.symbol)}: {html.escape(decision.action)}</h2>"
                        f"<ul>{reasons}</ul>{image}")
    deployments = "".join(
        f"<li>{html.escape(d['symbol'])}: {html.escape(d['model_type'])} v{d['version']} &rarr; "
        f"<b>{html.escape(d['status'])}</b> ({html.escape(d['reason'])})</li>" for d in content.get("deployment") or [])
    if deployments:
        sections.insert(0, f"<h2>Deployment</h2><ul>{deployments}</ul>")
    if money := portfolio_html(portfolios):
        sections.insert(0, money)
    universe = "".join(f"<li>{html.escape(line)}</li>" for line in content.get("universe") or [])
    if universe:
        sections.insert(0, f"<h2>Universe models: the gate across their universe</h2><ul>{universe}</ul>")
    return _page(content, f"<h2>Leaderboard</h2><table>{table}</table>{''.join(sections)}")


def _markdown(decisions: list[Decision], failures: list[JobFailure]) -> str:
    lines = ["# Champion decisions", ""]
    if failures:
        lines += [f"## {len(failures)} failed job(s)", *[f"- **{inline(str(f))}**" for f in failures], ""]
    for d in decisions:
        target = f"{d.model_type} v{d.version}" if d.model_type else "no model"
        lines += [f"## {d.symbol}: {d.action} ({target})", *[f"- {inline(reason)}" for reason in d.reasons], ""]
    return "\n".join(lines)


@task(name="report", cache_policy=NO_CACHE)
@resource_logged
def report(run_id: str, reports_dir: Path, results: list[EvaluationResult], decisions: list[Decision],
           sections: dict[str, Any], failures: list[JobFailure],
           adjusted: dict[tuple[str, str, int], float] | None = None,
           portfolios: list[PortfolioResult] | None = None) -> ReportRef:
    """Write report.json and report.html, and publish the leaderboard, the decisions and the top-k portfolios
    (`portfolios`: each universe model's and the per-symbol champions') as Prefect artifacts."""
    portfolios = portfolios or []
    content = {
        "run_id": run_id, "created_at": datetime.now(UTC).isoformat(), "status": run_status(failures),
        "failures": to_jsonable(failures), "leaderboard": leaderboard_rows(results, decisions, adjusted),
        "decisions": to_jsonable(decisions), "evaluations": to_jsonable(results), **to_jsonable(sections),
        "portfolios": to_jsonable(portfolios),
    }
    content.setdefault("data_source", {})
    directory = Path(reports_dir) / run_id
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "report.json", directory / "report.html"
    atomic_write(json_path, json.dumps(content, indent=2))
    atomic_write(html_path, _html(content, results, decisions, portfolios))
    create_table_artifact(content["leaderboard"], key="training-leaderboard",
                          description="symbol x model: every metric, the composite score, and the chosen champion")
    if portfolios:
        create_table_artifact(to_jsonable(portfolio_rows(portfolios)), key="training-portfolios",
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
               "failed_step": step, "error": f"{type(error).__name__}: {error}", "failures": to_jsonable(failures),
               **to_jsonable(sections)}
    json_path, html_path = directory / "report.json", directory / "report.html"
    atomic_write(json_path, json.dumps(content, indent=2))
    atomic_write(html_path, _page(content, ""))
    return ReportRef(directory, json_path, html_path)
