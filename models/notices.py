"""Routine warnings of the model libraries, silenced process-wide before any job fits in a thread.

`warnings.catch_warnings` is not thread-safe: it swaps the process-wide filter list for a copy and puts
the original back on exit, so a filter that another thread adds in between is lost. statsmodels enters it
inside every ARIMA fit while other jobs fit in other threads; so the filters are installed once, when the
`models` package is first imported, which the flows do before they fan out.
"""

from __future__ import annotations

import warnings

__all__ = ["ROUTINE_WARNINGS", "silence_routine_warnings"]

ROUTINE_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # Lightning: windows live in memory, so data-loader workers would only add start-up cost.
    (r".*does not have many workers", Warning),
    # Lightning's own use of torch's pytree; nothing a caller can act on.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", Warning),
    # statsmodels falls back to zeros as ARIMA start values; the fit goes on, and models/arima.py checks its
    # convergence and roots itself.
    (r"Non-(stationary|invertible) starting", UserWarning),
)


def silence_routine_warnings() -> None:
    """Ignore ROUTINE_WARNINGS in this process (idempotent: a filter already present is not added twice)."""
    for message, category in ROUTINE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
