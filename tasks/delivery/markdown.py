"""Text made safe for one Markdown table cell or one list item (Prefect artifacts render Markdown)."""

from __future__ import annotations

__all__ = ["cell", "inline"]


def inline(text: str) -> str:
    """One line: line breaks (an error's traceback, a multi-line message) become ' / '."""
    return " / ".join(part.strip() for part in str(text).splitlines() if part.strip())


def cell(text: str) -> str:
    """One table cell: on one line, with its pipes escaped so they do not split the row."""
    return inline(text).replace("|", "\\|")
