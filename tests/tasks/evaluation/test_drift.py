"""The volatility shift the weekly evaluation measures: pure functions on small frames and the demo market."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from tasks.data.ingest import DEMO_PULL, DEMO_REVERSAL, MarketBreak, synthetic_market
from tasks.evaluation.drift import VolatilityShift, market_shift, volatility_shift


def bars(ranges: list[float]) -> pl.DataFrame:
    low = np.full(len(ranges), 100.0)
    return pl.DataFrame({"high": low * np.exp(ranges), "low": low})


def test_the_shift_is_the_ratio_of_geometric_mean_ranges() -> None:
    shift = volatility_shift(bars([0.01] * 6 + [0.02, 0.08]), recent_days=2, reference_days=6)
    assert shift.ratio == pytest.approx(4.0) and shift.log_ratio == pytest.approx(math.log(4.0))
    assert (shift.recent_days, shift.reference_days) == (2, 6)


def test_only_the_newest_bars_count_and_days_without_a_range_are_left_out() -> None:
    frame = bars([5.0] * 10 + [0.01, 0.0, 0.01, 0.0, 0.03, 0.0])  # old bars beyond the reference do not count
    assert volatility_shift(frame, recent_days=2, reference_days=4).ratio == pytest.approx(3.0)


def test_too_few_bars_or_no_range_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="3 bars, need 4"):
        volatility_shift(bars([0.01] * 3), recent_days=2, reference_days=2)
    with pytest.raises(ValueError, match="no bar with a daily range"):
        volatility_shift(bars([0.01, 0.01, 0.0, 0.0]), recent_days=2, reference_days=2)


def test_a_planted_doubling_of_volatility_doubles_the_range_and_leaves_older_bars_alone() -> None:
    end, kwargs = date(2026, 10, 30), {"reversal": DEMO_REVERSAL, "structure": False, "pull": DEMO_PULL}
    calm = synthetic_market(["VCB"], 400, 3, end, **kwargs)["VCB"]
    broken = synthetic_market(["VCB"], 400, 3, end, breaks=MarketBreak(340, volatility=2.0), **kwargs)["VCB"]
    assert broken.head(340).equals(calm.head(340))
    before, after = volatility_shift(calm, 60, 60).ratio, volatility_shift(broken, 60, 60).ratio
    assert after / before == pytest.approx(2.0, rel=0.25)


def test_the_market_shift_is_the_median_of_its_symbols() -> None:
    shifts = [VolatilityShift(10, 60, math.log(r)) for r in (0.9, 1.0, 1.1, 3.0, 1.05)]
    assert market_shift(shifts).ratio == pytest.approx(1.05)  # one symbol's news hardly moves it
    with pytest.raises(ValueError, match="no symbol"):
        market_shift([])
