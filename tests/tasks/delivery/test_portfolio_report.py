"""The report's portfolio section: three rows per portfolio, readable numbers, a chart."""

from __future__ import annotations

import numpy as np
import polars as pl

from settings import MarketSettings, PortfolioSettings
from tasks.delivery.portfolio_report import portfolio_html, portfolio_rows
from tasks.evaluation.portfolio_figures import PortfolioResult, trade_ranking


def _result() -> PortfolioResult:
    rng = np.random.default_rng(4)
    frames = []
    for i in range(6):
        days = np.datetime64("2024-01-01") + np.arange(80)
        close = 40 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))
        frames.append(pl.DataFrame({"date": days, "symbol": f"S{i}", "open": close, "close": close,
                                    "predicted": rng.normal(size=80)}))
    result = trade_ranking("catboost-pooled v1 <b>", pl.concat(frames), PortfolioSettings(top_k=2, n_drop=1),
                           MarketSettings(), 0.001)
    assert result is not None
    return result


def test_three_rows_per_portfolio_with_the_excess_on_the_portfolio_row_only() -> None:
    result = _result()
    rows = portfolio_rows([result, result])
    assert len(rows) == 6
    assert [r["strategy"] for r in rows[:3]] == ["top-2, replacing at most 1 a day",
                                                 "equal-weight 6 symbols, rebalanced daily",
                                                 "buy-and-hold of the 6 symbols"]
    assert rows[0]["excess_return"] == result.excess_return and rows[1]["excess_return"] is None
    assert rows[1]["annual_return"] == result.equal_weight.annual_return
    assert rows[0]["tax"] > 0 and rows[2]["tax"] == 0  # buy-and-hold never sells


def test_the_section_rounds_escapes_and_draws_a_chart() -> None:
    result = _result()
    page = portfolio_html([result])
    assert page.count('<img src="data:image/png;base64,') == 1
    assert "<b>" not in page and "&lt;b&gt;" in page
    assert f"<td>{result.strategy.annual_return:+.1%}</td>" in page and f"{result.strategy.turnover:.1f}x" in page
    assert str(result.strategy.annual_return) not in page  # no 16-digit floats
    assert portfolio_html([]) == ""
