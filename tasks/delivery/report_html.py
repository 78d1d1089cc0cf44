"""The training report as one self-contained HTML page: failures first (in red), the data sources as a small table,
the leaderboard as two tables that fit a 1,400 px page (prediction and trading), then the universe gate, the
portfolios, the deployments and per symbol its decision with a chart."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.delivery.charts import legend_outside, png_base64, pyplot
from tasks.delivery.portfolio_report import portfolio_html
from tasks.evaluation.choose import Decision
from tasks.evaluation.evaluate import EvaluationResult
from tasks.evaluation.portfolio_figures import PortfolioResult

__all__ = ["PREDICTION_COLUMNS", "TRADING_COLUMNS", "page", "report_page", "symbol_figure"]

PREDICTION_COLUMNS = ("symbol", "model", "rmse", "zero_rmse", "mae", "r2", "dir_acc", "ic", "rank_ic", "dm_p",
                      "p_adj", "cv_rmse")
"""how well each model predicts the test window's returns, against the zero forecast and its significance."""
TRADING_COLUMNS = ("symbol", "model", "composite", "sharpe", "psr", "max_dd", "ann_return", "total_return",
                   "bh_return", "win_rate", "turnover", "trades")
"""what trading its predictions earned on the test window, and the composite score the choice ranks by."""
_P_VALUES = ("dm_p", "p_adj")

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td.text,th.text{text-align:left}
tr.chosen{background:#e6f4e6}small{color:#555}img{max-width:100%}
.failures{color:#b00020;border:2px solid #b00020;padding:0 1em;margin-bottom:1em}"""


def _text(value: Any) -> str:
    return html.escape(str(value))


def _number(row: Mapping[str, Any], column: str) -> str:
    value = row[column]
    if value is None:  # a PSR left out for too few days in a position or trades says so
        return "n/a" if column == "psr" and row.get("tradable") else ""
    if isinstance(value, float):
        return f"{value:.3g}" if column in _P_VALUES else f"{value:.4g}"
    return str(value)


def _model(row: Mapping[str, Any]) -> str:
    marks = "".join(f" <small>{mark}</small>" for mark in ("chosen", "production") if row.get(mark))
    return f"{_text(row['model'])} v{row['version']}{marks}"


def leaderboard_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """One of the leaderboard's tables: `columns` of every row, numbers to 4 significant digits (p-values 3)."""
    header = "".join(f'<th class="text">{c}</th>' if c in ("symbol", "model") else f"<th>{c}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="text">{_model(row)}</td>' if c == "model" else
            f'<td class="text">{_text(row[c])}</td>' if c == "symbol" else f"<td>{_text(_number(row, c))}</td>"
            for c in columns)
        body.append("<tr" + (' class="chosen"' if row.get("chosen") else "") + f">{cells}</tr>")
    return f"<table><tr>{header}</tr>{''.join(body)}</table>"


def sources_table(sources: Mapping[str, Mapping[str, Any]]) -> str:
    """Where the prices came from: one row per source, with the symbols that share it."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for symbol, info in sources.items():
        key = (str(info.get("kind") or "unknown"), str(info.get("detail") or ""),
               "yes" if info.get("synthetic") else "no")
        groups.setdefault(key, []).append(symbol)
    if not groups:
        return ""
    rows = "".join(f'<tr><td class="text">{_text(", ".join(symbols))}</td><td class="text">{_text(kind)}</td>'
                   f'<td class="text">{_text(detail)}</td><td class="text">{synthetic}</td></tr>'
                   for (kind, detail, synthetic), symbols in groups.items())
    return ('<h2>Data sources</h2><table><tr><th class="text">symbols</th><th class="text">kind</th>'
            f'<th class="text">detail</th><th class="text">synthetic</th></tr>{rows}</table>')


def symbol_figure(group: Sequence[EvaluationResult], chosen: EvaluationResult | None) -> Any:
    """Equity vs buy-and-hold for every model of a symbol above predicted vs actual for the chosen (else the best)
    one; legends beside the axes."""
    fig, (top, bottom) = pyplot().subplots(2, 1, figsize=(10, 7), sharex=True)
    first = group[0].curves
    top.plot(first.dates, first.benchmark_equity, color="black", linewidth=1.5, label="buy and hold")
    for r in group:
        top.plot(r.curves.dates, r.curves.equity, linewidth=1, label=f"{r.model_type} v{r.version}")
    top.set_title(f"equity on the test window (from {first.equity[0]:,.0f})")
    legend_outside(top)
    shown = chosen or max(group, key=lambda r: r.composite)
    bottom.plot(shown.curves.dates, shown.curves.actual, color="black", linewidth=1, label="actual")
    bottom.plot(shown.curves.dates, shown.curves.predicted, linewidth=1, label=f"predicted ({shown.model_type})")
    bottom.set_title("forward log return: predicted vs actual")
    legend_outside(bottom)
    return fig


def _failures(content: Mapping[str, Any]) -> str:
    """The run's failures, in red: the step it stopped at (if any), then every failed job."""
    lines = []
    if content.get("failed_step"):
        lines.append(f"<li>step <b>{_text(content['failed_step'])}</b>: {_text(content['error'])}</li>")
    lines += [f"<li>{_text(f['step'])} {_text(f['model_type'])} {_text(f['symbol'])}: {_text(f['error'])}</li>"
              for f in content.get("failures") or []]
    if not lines:
        return ""
    return (f'<section class="failures"><h2>Failures ({len(lines)})</h2><ul>{"".join(lines)}</ul>'
            f"<p>Status: {_text(content['status'])}.</p></section>")


def page(content: Mapping[str, Any], body: str = "") -> str:
    """The page around `body`: title, failures, when and from what data the run was made."""
    run_id = _text(content["run_id"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>training report {run_id}</title>
<style>{_STYLE}</style></head><body>
<h1>Training report {run_id}</h1>{_failures(content)}
<p>Created {_text(content['created_at'])}. Test windows per symbol are the held-out test split; chosen models are
highlighted.</p>{sources_table(content.get("data_source") or {})}{body}</body></html>"""


def report_page(content: Mapping[str, Any], results: Sequence[EvaluationResult], decisions: Sequence[Decision],
                portfolios: Sequence[PortfolioResult]) -> str:
    """The whole report of a run that reached its end."""
    rows = content["leaderboard"]
    board = (f"<h2>Leaderboard</h2><h3>Prediction on the test window</h3>{leaderboard_table(rows, PREDICTION_COLUMNS)}"
             f"<h3>Trading on the test window, and the composite score</h3>{leaderboard_table(rows, TRADING_COLUMNS)}")
    sections = []
    universe = "".join(f"<li>{_text(line)}</li>" for line in content.get("universe") or [])
    if universe:
        sections.append(f"<h2>Universe models: the gate across their universe</h2><ul>{universe}</ul>")
    if money := portfolio_html(portfolios):
        sections.append(money)
    deployments = "".join(
        f"<li>{_text(d['symbol'])}: {_text(d['model_type'])} v{d['version']} &rarr; <b>{_text(d['status'])}</b> "
        f"({_text(d['reason'])})</li>" for d in content.get("deployment") or [])
    if deployments:
        sections.append(f"<h2>Deployment</h2><ul>{deployments}</ul>")
    for decision in decisions:
        group = [r for r in results if r.symbol == decision.symbol]
        chosen = next((r for r in group if (r.model_type, r.version) == (decision.model_type, decision.version)), None)
        reasons = "".join(f"<li>{_text(line)}</li>" for line in decision.reasons)
        image = f'<img src="data:image/png;base64,{png_base64(symbol_figure(group, chosen))}">' if group else ""
        sections.append(f"<h2>{_text(decision.symbol)}: {_text(decision.action)}</h2><ul>{reasons}</ul>{image}")
    return page(content, board + "".join(sections))
