"""The report's portfolio section: per ranking a table of the top-k portfolio, the equal-weight universe and its
buy-and-hold after costs, and a chart of their equity; the same rows as a Prefect table artifact."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from tasks.delivery.charts import legend_outside, png_base64, pyplot
from tasks.evaluation.portfolio_figures import Figures, PortfolioResult

__all__ = ["portfolio_figure", "portfolio_html", "portfolio_rows"]

_COLUMNS = ("portfolio", "strategy", "annual_return", "excess_return", "information_ratio", "psr", "max_drawdown",
            "turnover", "commission", "tax", "cost_share", "cash_share", "unaffordable")
_PERCENT = {"annual_return", "excess_return", "max_drawdown", "cost_share", "cash_share"}


def _row(p: PortfolioResult, strategy: str, f: Figures, own: bool) -> dict[str, Any]:
    versus = {"excess_return": p.excess_return, "information_ratio": p.information_ratio, "psr": p.psr}
    return {"portfolio": p.label, "strategy": strategy, "annual_return": f.annual_return,
            **{k: v if own else None for k, v in versus.items()}, "max_drawdown": f.max_drawdown,
            "turnover": f.turnover, "commission": f.commission, "tax": f.tax, "cost_share": f.cost_share,
            "cash_share": f.cash_share, "unaffordable": f.unaffordable}


def portfolio_rows(portfolios: Sequence[PortfolioResult]) -> list[dict[str, Any]]:
    """Three rows per portfolio: the top-k portfolio (with its excess over the equal-weight universe), the
    equal-weight universe rebalanced daily, and its buy-and-hold; rates as fractions, money in the prices' unit."""
    return [row for p in portfolios for row in (
        _row(p, f"top-{p.k}, replacing at most {p.n_drop} a day", p.strategy, True),
        _row(p, f"equal-weight {p.symbols} symbols, rebalanced daily", p.equal_weight, False),
        _row(p, f"buy-and-hold of the {p.symbols} symbols", p.buy_and_hold, False))]


def _cell(column: str, value: Any) -> str:
    if value is None:
        text = "n/a" if column in ("information_ratio", "psr") else ""
    elif column in _PERCENT:
        text = f"{value:+.1%}" if column in ("annual_return", "excess_return") else f"{value:.1%}"
    elif column in ("commission", "tax"):
        text = f"{value:,.0f}"
    elif column == "turnover":
        text = f"{value:.1f}x"
    elif isinstance(value, float):
        text = f"{value:.2f}"
    else:
        text = str(value)
    return f"<td>{html.escape(text)}</td>"


def portfolio_figure(p: PortfolioResult) -> Any:
    """The portfolio's equity against the equal-weight universe and its buy-and-hold; the legend beside the axes."""
    import numpy as np

    dates = np.array(p.dates, dtype="datetime64[D]")
    fig, axis = pyplot().subplots(figsize=(10, 3.5))
    axis.plot(dates, p.equity, linewidth=1.5, label=f"top-{p.k} portfolio")
    axis.plot(dates, p.equal_weight_equity, color="black", linewidth=1, label="equal-weight universe")
    axis.plot(dates, p.buy_and_hold_equity, color="grey", linewidth=1, linestyle="--", label="buy-and-hold")
    axis.set_title(f"{p.label}: equity after costs and taxes (from {p.equity[0]:,.0f})")
    legend_outside(axis)
    return fig


def portfolio_html(portfolios: Sequence[PortfolioResult]) -> str:
    """The section: one sentence, one table and one chart per portfolio; "" without portfolios."""
    if not portfolios:
        return ""
    parts = ["<h2>Portfolios: what the rankings earn after costs and taxes</h2>"]
    header = "<tr>" + "".join(f"<th>{c}</th>" for c in _COLUMNS[1:]) + "</tr>"
    for p in portfolios:
        rows = "".join("<tr>" + "".join(_cell(c, row[c]) for c in _COLUMNS[1:]) + "</tr>"
                       for row in portfolio_rows([p]))
        parts.append(f"<h3>{html.escape(p.label)}</h3><p>{html.escape(p.line())}</p><table>{header}{rows}</table>"
                     f'<img src="data:image/png;base64,{png_base64(portfolio_figure(p))}">')
    return "".join(parts)
