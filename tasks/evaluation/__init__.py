"""Evaluation: metrics, backtests, walk-forward CV, risk, significance, champion choice, drift."""
