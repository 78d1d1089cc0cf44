"""sessions: the trading days of a market, to find holes in a price history.

A market with an exchange-calendars name (XNYS, XLON, ...) trades on that calendar's sessions; one without
(HOSE is not in exchange-calendars) trades on weekdays except its configured holidays.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import date, timedelta
from functools import cache

import numpy as np

from schemas import CalendarGap
from settings import Market

__all__ = ["gaps", "sessions_between"]

# exchange-calendars reads Series.values of time-zone-aware dates, which pandas 3.1 deprecates: nothing a
# caller can act on. Process-wide and set at import, before any job runs in a thread (see models/notices.py).
warnings.filterwarnings("ignore", message=r"Series\.values returning an ndarray that drops timezone")


@cache
def _calendar_sessions(name: str, start: date) -> np.ndarray:
    """Every session of calendar `name` from `start` to the end the calendar knows (a year ahead)."""
    import exchange_calendars

    calendar = exchange_calendars.get_calendar(name, start=start.isoformat())
    return np.asarray(calendar.sessions.date, dtype="datetime64[D]")


def sessions_between(days: Sequence[date] | np.ndarray, market: Market) -> np.ndarray:
    """For each pair of consecutive `days` (sorted dates, or a datetime64[D] array), the market's sessions
    strictly between them."""
    if len(days) < 2:
        return np.zeros(0, dtype=np.int64)
    stamps = np.asarray(days, dtype="datetime64[D]")
    if market.calendar is None:
        holidays = np.asarray(market.holidays, dtype="datetime64[D]")
        return np.busday_count(stamps[:-1] + 1, stamps[1:], holidays=holidays).astype(np.int64)
    sessions = _calendar_sessions(market.calendar, stamps[0].item() - timedelta(days=31))
    # Sessions in (a, b) = sessions < b minus sessions <= a.
    return (np.searchsorted(sessions, stamps[1:], side="left")
            - np.searchsorted(sessions, stamps[:-1], side="right")).astype(np.int64)


def gaps(days: Sequence[date] | np.ndarray, market: Market, max_sessions: int) -> tuple[CalendarGap, ...]:
    """Holes of more than `max_sessions` missing sessions between consecutive `days` (sorted dates, or a
    datetime64[D] array)."""
    stamps = np.asarray(days, dtype="datetime64[D]")
    missing = sessions_between(stamps, market)
    return tuple(CalendarGap(stamps[i].item(), stamps[i + 1].item(), int(missing[i]))
                 for i in np.flatnonzero(missing > max_sessions).tolist())
