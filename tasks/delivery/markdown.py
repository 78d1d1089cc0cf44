"""Text and numbers made readable in Prefect artifacts, which render Markdown (table cells included): text on one
line with Markdown's special characters escaped, numbers rounded to a few significant digits."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DIGITS", "cell", "inline", "rounded", "table_rows"]

DIGITS = 4
"""significant digits of the numbers people read: 0.2455400208940786 is shown as 0.2455."""

# Characters that start emphasis, code, links, HTML, strike-through or a table cell in the Markdown that Prefect
# renders: `lstm_pooled` or `_POOLED_` would turn italic, a pipe would split a row.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def inline(text: str) -> str:
    """One line: line breaks (an error's traceback, a multi-line message) become ' / '."""
    return " / ".join(part.strip() for part in str(text).splitlines() if part.strip())


def cell(text: str) -> str:
    """Text shown literally in a table cell or a list item: on one line, Markdown's special characters escaped."""
    return _SPECIAL.sub(r"\\\1", inline(text))


def rounded(value: float, digits: int = DIGITS) -> float | None:
    """`value` to `digits` significant digits; None for NaN and infinities (JSON has neither)."""
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return rounded(value)
    if isinstance(value, int):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _value(value.item())
    return cell(str(value))


def table_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for `create_table_artifact`: floats to DIGITS significant digits, text cells escaped, booleans, integers
    and nulls as they are."""
    return [{str(key): _value(value) for key, value in row.items()} for row in rows]
