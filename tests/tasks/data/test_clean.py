from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from schemas import CalendarGap
from settings import CleaningSettings, Market
from tasks.data.clean import clean

CFG = CleaningSettings(max_fill_days=2, jump_threshold=0.3)
HOSE = Market()


def bars(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["date", "open", "high", "low", "close", "volume"], orient="row")


def test_clean_data_passes_unchanged(prices: pl.DataFrame) -> None:
    result = clean.fn(prices, "VCB", CFG, HOSE)
    assert result.frame.equals(prices)
    assert result.report.fixes == {} and result.report.rows_in == result.report.rows_out == prices.height
    assert result.report.gaps == () and result.report.zero_volume_days == ()


def test_every_repair_is_counted_per_rule() -> None:
    raw = bars([
        (date(2024, 1, 3), 10.0, 11.0, 9.0, 10.5, 100.0),
        (date(2024, 1, 2), 10.0, 11.0, 9.0, 10.0, 100.0),    # out of order
        (date(2024, 1, 3), 10.0, 11.0, 9.0, 10.6, 100.0),    # duplicate date: last wins
        (date(2024, 1, 4), 10.0, 9.0, 11.0, 10.2, 100.0),    # high < low: swapped
        (date(2024, 1, 5), -1.0, 11.0, 9.0, 10.4, 100.0),    # non-positive open: filled from previous
        (date(2024, 1, 8), 10.0, 10.5, 9.5, float("nan"), 100.0),  # NaN close: filled
        (date(2024, 1, 9), 10.0, 10.2, 9.9, 10.8, 100.0),    # close above high: range widened
        (date(2024, 1, 10), 10.0, 19.0, 9.0, 16.0, 100.0),   # +39% jump: flagged, kept
    ])
    result = clean.fn(raw, "VCB", CFG, HOSE)
    fixes = result.report.fixes
    assert fixes["unsorted_rows_reordered"] == 1
    assert fixes["duplicate_dates_dropped"] == 1
    assert fixes["high_low_swapped"] == 1
    assert fixes["non_positive_prices_nulled"] == 1
    assert fixes["nan_values_nulled"] == 1
    assert fixes["gap_values_forward_filled"] == 2
    assert fixes["range_widened_to_open_close"] == 1
    assert result.report.flagged_jumps == (date(2024, 1, 10),)
    out = result.frame
    assert out["date"].is_sorted() and out["date"].n_unique() == out.height == 7
    assert out.filter(pl.col("date") == date(2024, 1, 3))["close"].item() == 10.6
    assert out.select((pl.col("high") >= pl.max_horizontal("open", "close")).all()).item()
    assert out.select((pl.col("low") <= pl.min_horizontal("open", "close")).all()).item()
    assert (out.select(pl.col("open", "high", "low", "close") > 0).to_numpy()).all()
    assert out.null_count().sum_horizontal().item() == 0


def test_long_gaps_are_dropped_not_invented() -> None:
    rows = [(date(2024, 1, d), 10.0, 11.0, 9.0, 10.0, 100.0) for d in range(1, 11)]
    for d in (4, 5, 6, 7):  # four missing closes in a row, limit is two
        rows[d] = (rows[d][0], 10.0, 11.0, 9.0, None, 100.0)
    result = clean.fn(bars(rows), "VCB", CFG, HOSE)
    assert result.report.fixes["gap_values_forward_filled"] == 2
    assert result.report.fixes["unfillable_rows_dropped"] == 2
    assert result.frame.height == 8


def test_input_is_not_mutated(prices: pl.DataFrame) -> None:
    dirty = prices.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(-1.0).otherwise(pl.col("close"))
                                .alias("close"))
    copy = dirty.clone()
    clean.fn(dirty, "VCB", CFG, HOSE)
    assert dirty.equals(copy)


def test_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match=r"lacks column.*close"):
        clean.fn(pl.DataFrame({"date": [date(2024, 1, 1)], "open": [1.0], "high": [1.0], "low": [1.0],
                               "volume": [1.0]}), "VCB", CFG, HOSE)


def test_infinite_values_are_missing_values() -> None:
    rows = [(date(2024, 1, d), 10.0, 11.0, 9.0, 10.0, 100.0) for d in range(1, 6)]
    rows[2] = (rows[2][0], 10.0, 11.0, 9.0, float("inf"), float("-inf"))
    result = clean.fn(bars(rows), "VCB", CFG, HOSE)
    assert result.report.fixes["infinite_values_nulled"] == 2 and "nan_values_nulled" not in result.report.fixes
    assert result.frame.filter(pl.col("date") == date(2024, 1, 3)).row(0)[4:] == (10.0, 100.0)  # filled


def test_zero_volume_days_are_flagged_and_kept() -> None:
    rows = [(date(2024, 1, d), 10.0, 11.0, 9.0, 10.0, 0.0 if d == 4 else 100.0) for d in range(1, 6)]
    result = clean.fn(bars(rows), "VCB", CFG, HOSE)
    assert result.report.zero_volume_days == (date(2024, 1, 4),) and result.frame.height == 5


def test_holes_in_the_market_calendar_are_reported() -> None:
    # HOSE: weekdays. 2024-01-05 (Fri) to 2024-01-22 (Mon) misses 10 sessions; the weekend alone is no hole.
    days = [date(2024, 1, 4), date(2024, 1, 5), date(2024, 1, 22), date(2024, 1, 23)]
    rows = [(d, 10.0, 11.0, 9.0, 10.0, 100.0) for d in days]
    assert clean.fn(bars(rows), "VCB", CFG, HOSE).report.gaps == (
        CalendarGap(date(2024, 1, 5), date(2024, 1, 22), 10),)
    # Configured holidays are not sessions: with the whole hole declared closed, nothing is reported.
    closed = Market(holidays=tuple(date(2024, 1, d) for d in (8, 9, 10, 11, 12, 15, 16, 17, 18, 19)))
    assert clean.fn(bars(rows), "VCB", CFG, closed).report.gaps == ()
    # exchange-calendars: XNYS was closed on 2024-01-15 (Martin Luther King Jr. Day) and 2024-03-29 (Good Friday).
    nyse = Market(timezone="America/New_York", lot_size=1, calendar="XNYS")

    def us(*days: date) -> tuple[CalendarGap, ...]:
        return clean.fn(bars([(d, 10.0, 11.0, 9.0, 10.0, 100.0) for d in days]), "GOOG", CFG, nyse).report.gaps

    assert us(date(2024, 1, 5), date(2024, 1, 16)) == ()  # 5 sessions: Jan 8-12; weekdays would count 6
    assert clean.fn(bars([(d, 10.0, 11.0, 9.0, 10.0, 100.0) for d in (date(2024, 1, 5), date(2024, 1, 16))]),
                    "VCB", CFG, HOSE).report.gaps == (CalendarGap(date(2024, 1, 5), date(2024, 1, 16), 6),)
    assert us(date(2024, 3, 28), date(2024, 4, 10)) == (CalendarGap(date(2024, 3, 28), date(2024, 4, 10), 7),)
