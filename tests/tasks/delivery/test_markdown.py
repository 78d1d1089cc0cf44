"""Artifact text and numbers: 4 significant digits, Markdown's special characters shown literally."""

from __future__ import annotations

import math

import numpy as np

from tasks.delivery.markdown import cell, rounded, table_rows


def test_numbers_keep_four_significant_digits() -> None:
    assert rounded(0.2455400208940786) == 0.2455
    assert rounded(-0.000123456789) == -0.0001235
    assert rounded(123456.789) == 123500.0
    assert rounded(math.nan) is None and rounded(math.inf) is None


def test_text_cells_are_escaped_and_other_values_kept() -> None:
    [row] = table_rows([{"symbol": "_POOLED_", "model": "lstm_pooled", "composite": 0.2455400208940786,
                         "chosen": True, "production": False, "version": 3, "psr": None,
                         "sharpe": np.float64(1.23456789), "note": "a | b *c* `d` [e](f) <b>\nsecond line"}])
    assert row == {"symbol": "\\_POOLED\\_", "model": "lstm\\_pooled", "composite": 0.2455, "chosen": True,
                   "production": False, "version": 3, "psr": None, "sharpe": 1.235,
                   "note": "a \\| b \\*c\\* \\`d\\` \\[e\\](f) \\<b\\> / second line"}


def test_a_cell_is_one_line_with_its_backslashes_escaped_first() -> None:
    assert cell("C:\\dir_x\n  next") == "C:\\\\dir\\_x / next"
