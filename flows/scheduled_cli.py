"""Command-line arguments of the scheduled flows (light imports only, so --help answers fast)."""

from __future__ import annotations

import argparse

__all__ = ["daily_retrain_parser", "weekly_evaluation_parser"]


def daily_retrain_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.daily_retrain`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.daily_retrain",
        description="Retrain the symbols whose production model is missing or scores below "
                    "models.retraining.performance_threshold; retrain nothing while any price feed is stale.")
    parser.add_argument("--symbols", help="comma-separated tickers (default: data.symbols)")
    parser.add_argument("--config", help="YAML config file (default: config/pipeline_config.yml)")
    parser.add_argument("--force", action="store_true", help="retrain every given symbol whose feed is fresh")
    return parser


def weekly_evaluation_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.weekly_evaluation`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.weekly_evaluation",
        description="Score every production model on the newest scheduling.weekly_evaluation.window_days rows, "
                    "measure feature drift, write the weekly report and retrain the degraded symbols.")
    parser.add_argument("--symbols", help="comma-separated tickers (default: data.symbols)")
    parser.add_argument("--config", help="YAML config file (default: config/pipeline_config.yml)")
    return parser
