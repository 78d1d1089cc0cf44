"""The report: the champion marked in the leaderboard (a kept production model too), the HTML page's sources table
and two narrow leaderboard tables, the decisions artifact's escaping, and legends beside every chart's curves."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.delivery.charts import pyplot
from tasks.delivery.portfolio_report import portfolio_figure
from tasks.delivery.report import _markdown, leaderboard_rows, to_jsonable
from tasks.delivery.report_html import PREDICTION_COLUMNS, TRADING_COLUMNS, report_page, symbol_figure
from tasks.evaluation.choose import Decision
from tasks.evaluation.evaluate import Curves, EvaluationResult
from tests.tasks.delivery.test_portfolio_report import _result as portfolio_result
from tests.tasks.evaluation.test_choose import ROWS, result

MAX_COLUMNS = 12


def charted(r: EvaluationResult, seed: int) -> EvaluationResult:
    """`r` with curves a chart can draw: dated rows, equity and buy-and-hold."""
    rng = np.random.default_rng(seed)
    dates = tuple(date(2025, 1, 2) + timedelta(days=i) for i in range(ROWS))
    equity = tuple(100_000 * np.exp(np.cumsum(rng.normal(0, 0.01, ROWS))))
    bench = tuple(100_000 * np.exp(np.cumsum(rng.normal(0, 0.01, ROWS))))
    return replace(r, curves=Curves(dates, r.curves.actual, r.curves.predicted, equity, bench))


def kept(symbol: str, production: EvaluationResult) -> Decision:
    return Decision(symbol, "keep_production", production.model_type, production.version, production.composite,
                    (f"production {production.model_type} v{production.version}: kept",))


def test_a_kept_production_model_is_the_chosen_row_also_when_it_is_an_older_version() -> None:
    challengers = [result("catboost", 0.4, 0.019, version=3), result("lstm", 0.3, 0.019, version=2)]
    older = result("catboost", 0.5, 0.018, version=2)
    rows = leaderboard_rows(challengers, [kept("VCB", older)], production={"VCB": older})
    assert [(r["model"], r["version"], r["chosen"], r["production"]) for r in rows] == [
        ("catboost", 2, True, True), ("catboost", 3, False, False), ("lstm", 2, False, False)]


def test_a_kept_production_model_among_the_challengers_is_chosen_once() -> None:
    current = result("lstm", 0.3, 0.019, version=2)
    rows = leaderboard_rows([result("catboost", 0.4, 0.019, version=3), current], [kept("VCB", current)],
                            production={"VCB": current})
    assert [(r["model"], r["chosen"], r["production"]) for r in rows] == [
        ("catboost", False, False), ("lstm", True, True)]


def test_a_promotion_is_the_only_chosen_row_and_nothing_is_chosen_without_a_champion() -> None:
    challengers = [result("catboost", 0.4, 0.019), result("lstm", 0.3, 0.019, symbol="VHM")]
    decisions = [Decision("VCB", "promote", "catboost", 1, 0.4, ("won",)),
                 Decision("VHM", "none", None, None, None, ("nothing to serve",))]
    assert [r["chosen"] for r in leaderboard_rows(challengers, decisions)] == [True, False]


def page(symbol: str = "VCB") -> str:
    results = [charted(result("catboost-pooled", 0.2455400208940786, 0.019, symbol=symbol), 1),
               charted(result("arima", 0.1, 0.0191, version=2, symbol=symbol), 2)]
    decisions = [Decision(symbol, "promote", "catboost-pooled", 1, 0.2455400208940786, ("won <big>",))]
    content: dict[str, Any] = {
        "run_id": "20260101T000000Z", "created_at": "2026-01-01T00:00:00", "status": "completed", "failures": [],
        "leaderboard": leaderboard_rows(results, decisions),
        "data_source": {"VCB": {"kind": "synthetic", "detail": "seed=7", "synthetic": True},
                        "VHM": {"kind": "synthetic", "detail": "seed=7", "synthetic": True},
                        "GOOG": {"kind": "csv", "detail": "goog<1>.csv", "synthetic": False}},
        "deployment": None, "universe": []}
    return report_page(to_jsonable(content), results, decisions, [])


def tables(text: str) -> list[str]:
    return re.findall(r"<table>.*?</table>", text, flags=re.S)


def test_the_page_shows_its_sources_as_a_table_and_the_leaderboard_as_two_narrow_tables() -> None:
    text = page()
    assert '"kind"' not in text and "{" not in text.split("<body>")[1]  # no JSON dump
    sources, prediction, trading = tables(text)[:3]
    assert "<td class=\"text\">VCB, VHM</td><td class=\"text\">synthetic</td>" in sources
    assert "goog&lt;1&gt;.csv" in sources and sources.count("<tr>") == 3  # header + one row per source
    for table, columns in ((prediction, PREDICTION_COLUMNS), (trading, TRADING_COLUMNS)):
        header = table.split("</tr>")[0]
        assert header.count("<th") == len(columns) <= MAX_COLUMNS
        assert all(row.count("<td") == len(columns) for row in table.split("</tr>")[1:-1])
    assert all(c in PREDICTION_COLUMNS for c in ("r2", "rmse", "mae", "dir_acc", "ic"))
    assert all(c in TRADING_COLUMNS for c in ("sharpe", "max_dd", "total_return", "trades", "composite"))
    assert "<td>0.2455</td>" in trading and "0.24554" not in text  # 4 significant digits
    assert ('class="chosen"><td class="text">VCB</td><td class="text">catboost-pooled v1 <small>chosen</small>'
            in trading)
    assert "won &lt;big&gt;" in text
    assert text.count('<img src="data:image/png;base64,') == 1


def test_the_decisions_artifact_escapes_markdown() -> None:
    decision = Decision("VCB", "keep_production", "lstm-pooled", 1, 0.3,
                        ("lstm-pooled v1: trained as train-lstm-pooled-_POOLED_, *best* | kept",))
    text = _markdown([decision], [])
    assert "## VCB: keep\\_production (lstm-pooled v1)" in text
    assert "- lstm-pooled v1: trained as train-lstm-pooled-\\_POOLED\\_, \\*best\\* \\| kept" in text


def legends_beside_axes(fig: Any) -> list[bool]:
    """For each axes of `fig` with a legend: whether the legend lies outside its plotting area."""
    fig.canvas.draw()
    found = []
    for axis in fig.axes:
        legend = axis.get_legend()
        if legend is not None:
            found.append(not legend.get_window_extent().overlaps(axis.get_window_extent()))
    pyplot().close(fig)
    return found


@pytest.mark.parametrize("chart", ["symbol", "portfolio"])
def test_every_chart_has_its_legends_outside_the_plotting_area(chart: str) -> None:
    if chart == "symbol":
        group = [charted(result(t, 0.1 * i, 0.019, seed=i), i) for i, t in enumerate(
            ["arima", "catboost", "lstm", "transformer", "catboost-pooled", "lstm-pooled", "transformer-pooled"])]
        fig = symbol_figure(group, group[2])
        expected = 2
    else:
        fig, expected = portfolio_figure(portfolio_result()), 1
    fig.tight_layout()
    assert legends_beside_axes(fig) == [True] * expected


def test_a_failure_report_keeps_no_credentials(tmp_path: Path) -> None:
    from schemas import JobFailure
    from tasks.delivery.report import write_failure_report

    error = ConnectionError("mongodb://admin:hunter2@db:27017/ refused the connection")
    failures = [JobFailure("VHM", "", "load", f"ConnectionError: {error}")]
    written = write_failure_report(tmp_path, "run-1", "data-pipeline", error, {}, failures)

    for path in (written.json_path, written.html_path):
        text = path.read_text(encoding="utf-8")
        assert "hunter2" not in text
        assert "<credentials hidden>" in text or "&lt;credentials hidden&gt;" in text
