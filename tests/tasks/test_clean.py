from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from settings import CleaningSettings
from tasks.clean import clean

CFG = CleaningSettings(max_fill_days=2, jump_threshold=0.3)


def bars(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["date", "open", "high", "low", "close", "volume"], orient="row")


def test_clean_data_passes_unchanged(prices: pl.DataFrame) -> None:
    result = clean.fn(prices, "VCB", CFG)
    assert result.frame.equals(prices)
    assert result.report.fixes == {} and result.report.rows_in == result.report.rows_out == prices.height


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
    result = clean.fn(raw, "VCB", CFG)
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
    result = clean.fn(bars(rows), "VCB", CFG)
    assert result.report.fixes["gap_values_forward_filled"] == 2
    assert result.report.fixes["unfillable_rows_dropped"] == 2
    assert result.frame.height == 8


def test_input_is_not_mutated(prices: pl.DataFrame) -> None:
    dirty = prices.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(-1.0).otherwise(pl.col("close"))
                                .alias("close"))
    copy = dirty.clone()
    clean.fn(dirty, "VCB", CFG)
    assert dirty.equals(copy)


def test_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match=r"lacks column.*close"):
        clean.fn(pl.DataFrame({"date": [date(2024, 1, 1)], "open": [1.0], "high": [1.0], "low": [1.0],
                               "volume": [1.0]}), "VCB", CFG)
