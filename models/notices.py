"""Routine warnings of the model libraries: kept off the console, and statsmodels' counted per fit.

Lightning's (ROUTINE_WARNINGS) are ignored by process-wide filters. statsmodels' notices that an ARIMA fit starts
from zeros (FIT_NOTICES) pass the filters ("always", so each one counts) and are stopped where a shown warning goes:
`warnings.showwarning`, replaced by a hook that drops them, counts them for the fit running in its thread (a
thread-local counter that `counted_notices`, entered by `Forecaster.fit`, sets) and hands any other warning to the
`showwarning` it replaced. Both are installed when `models` is first imported, before the flows fan out.

Why not filters alone: the first ARIMA fit imports statsmodels, whose import puts "always" filters for its
ModelWarning (EstimationWarning's base) in front of the filters installed before, so an "ignore" filter for these
notices stops holding at the first fit; and `warnings.catch_warnings`, which statsmodels enters in every fit and
Prefect around calls of its own, is not thread-safe: it swaps the process-wide filter list for a copy and puts the
original back on exit, dropping what other threads added meanwhile. The hook is one value that `catch_warnings()`
saves and restores unchanged. `catch_warnings(record=True)` (pytest's, for one) puts the default `showwarning` back
while it runs, so `counted_notices` installs the hook again where it is missing.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["FIT_NOTICES", "ROUTINE_WARNINGS", "counted_notices", "describe_notices", "notice_kind",
           "silence_routine_warnings"]

ROUTINE_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # Lightning: windows live in memory, so data-loader workers would only add start-up cost.
    (r".*does not have many workers", Warning),
    # Lightning's own use of torch's pytree; nothing a caller can act on.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", Warning),
)

FIT_NOTICES: tuple[tuple[str, str], ...] = (
    # statsmodels falls back to zeros as ARIMA start values (its EstimationWarning, a UserWarning); the fit goes on,
    # and models/arima.py checks its convergence and roots itself. (message pattern, kind)
    (r"Non-stationary starting", "non-stationary starting parameters"),
    (r"Non-invertible starting", "non-invertible starting parameters"),
    (r"Too few observations to estimate starting parameters", "too few observations for starting parameters"),
)
_PATTERNS = tuple((re.compile(pattern), kind) for pattern, kind in FIT_NOTICES)
_fit = threading.local()  # .counts: the Counter of the fit running in this thread, if any


def notice_kind(message: Warning | str, category: type[Warning]) -> str | None:
    """The FIT_NOTICES kind of a warning, or None for any other warning."""
    if not issubclass(category, UserWarning):
        return None
    text = str(message)
    return next((kind for pattern, kind in _PATTERNS if pattern.match(text)), None)


class _NoticeHook:
    """A `warnings.showwarning` that drops FIT_NOTICES, counting them for this thread's fit, and shows the rest."""

    def __init__(self, show: Callable[..., Any]) -> None:
        self.show = show

    def __call__(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
        kind = notice_kind(message, category)
        if kind is None:
            self.show(message, category, filename, lineno, file, line)
            return
        counts: Counter[str] | None = getattr(_fit, "counts", None)
        if counts is not None:
            counts[kind] += 1


def _install_hook() -> None:
    """Let FIT_NOTICES through the filters and into the hook (idempotent: nothing is added twice)."""
    present = {(f[0], f[1].pattern if f[1] is not None else None) for f in warnings.filters}
    for pattern, _ in FIT_NOTICES:
        if ("always", pattern) not in present:
            warnings.filterwarnings("always", message=pattern, category=UserWarning)
    if not isinstance(warnings.showwarning, _NoticeHook):
        warnings.showwarning = _NoticeHook(warnings.showwarning)


def silence_routine_warnings() -> None:
    """Ignore ROUTINE_WARNINGS and keep FIT_NOTICES off the console in this process (idempotent)."""
    for message, category in ROUTINE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    _install_hook()


@contextmanager
def counted_notices() -> Iterator[Counter[str]]:
    """Count the FIT_NOTICES this thread raises while the block runs, by kind; none of them is shown."""
    _install_hook()
    counts: Counter[str] = Counter()
    outer: Counter[str] | None = getattr(_fit, "counts", None)
    _fit.counts = counts
    try:
        yield counts
    finally:
        _fit.counts = outer
        if outer is not None:  # a fit inside a fit: the outer one raised them too
            outer.update(counts)


def describe_notices(counts: Mapping[str, int]) -> str:
    """One phrase for a fit's notices, e.g. '3 statsmodels warnings during the fit (non-stationary starting
    parameters 2, non-invertible starting parameters 1)'; '' when there were none."""
    total = sum(counts.values())
    if not total:
        return ""
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n)
    return f"{total} statsmodels warning{'s' if total != 1 else ''} during the fit ({kinds})"
