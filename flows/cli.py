"""Helpers shared by the flow command lines."""

from __future__ import annotations

import argparse
import logging

from schemas import validate_symbol

__all__ = [
    "daily_retrain_parser", "data_parser", "deployment_parser", "models_parser", "parse_symbols",
    "quiet_server_shutdown", "training_parser", "weekly_evaluation_parser",
]


def parse_symbols(text: str) -> list[str]:
    """Split 'VCB,VIC' into validated symbols; raises InvalidSymbolError naming a bad one."""
    symbols = [validate_symbol(part.strip()) for part in text.split(",") if part.strip()]
    if not symbols:
        raise ValueError(f"no symbols in {text!r}")
    return symbols


def quiet_server_shutdown() -> None:
    """Silence the temporary Prefect server's logger once the work is done.

    When no Prefect server is configured, Prefect starts a temporary one and stops it at exit; its event
    recorder then logs cancelled flushes as errors although every run was recorded.
    """
    logging.getLogger("prefect.server").setLevel(logging.CRITICAL)


def _symbols_and_config(parser: argparse.ArgumentParser, symbols_help: str = "default: data.symbols") -> None:
    parser.add_argument("--symbols", help=f"comma-separated tickers, e.g. VCB,VIC,VHM ({symbols_help})")
    parser.add_argument("--config", help="YAML config file (default: $STOCK_AI_CONFIG or config/pipeline_config.yml)")


def data_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.data_pipeline`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.data_pipeline",
        description="Run the data pipeline (load -> clean -> engineer -> select -> split -> store).")
    _symbols_and_config(parser)
    parser.add_argument("--source", choices=["parquet", "mongodb"], help="price store to load from")
    parser.add_argument("--refresh-cache", action="store_true", help="recompute every task, ignoring the cache")
    return parser


def models_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.model_pipeline`."""
    from settings import MODEL_TYPES

    parser = argparse.ArgumentParser(
        prog="python -m flows.model_pipeline",
        description="Tune (Optuna) and train every (symbol, model type) job on the stored feature sets, "
                    "registering each fitted model.")
    _symbols_and_config(parser)
    parser.add_argument("--model-type", action="append", choices=MODEL_TYPES,
                        help="model type to train; repeat for several (default: models.model_types)")
    parser.add_argument("--retrain", action="store_true",
                        help="train even when the last model is newer than models.retraining.min_hours_between")
    parser.add_argument("--trials", type=int, help="Optuna trials per model type (default: optimization.n_trials)")
    parser.add_argument("--no-optimize", action="store_true", help="skip tuning; use models.params from the config")
    return parser


def training_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.training`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.training",
        description="Run the full pipeline: data -> models -> evaluation -> champion choice -> report; "
                    "prints the leaderboard and the report location.")
    _symbols_and_config(parser)
    parser.add_argument("--retrain-all", action="store_true",
                        help="retrain every model even if trained within models.retraining.min_hours_between")
    parser.add_argument("--no-optimize", action="store_true", help="skip Optuna; use models.params from the config")
    parser.add_argument("--no-deploy", action="store_true", help="stop after the report; deploy nothing")
    return parser


def deployment_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.deployment_pipeline`."""
    parser = argparse.ArgumentParser(prog="python -m flows.deployment_pipeline",
                                     description="Talk to the staging and production model servers.")
    parser.add_argument("--config", help="YAML config file (default: $STOCK_AI_CONFIG or config/pipeline_config.yml)")
    commands = parser.add_subparsers(dest="command", required=True)
    rollback = commands.add_parser("rollback", help="restore the previous production model of a symbol")
    rollback.add_argument("--symbol", required=True)
    predict = commands.add_parser("predict", help="ask a server for the newest prediction of a symbol")
    predict.add_argument("--symbol", required=True)
    predict.add_argument("--stage", choices=["staging", "production"], default="production")
    status = commands.add_parser("status", help="health and deployed models of both servers")
    status.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the servers to come up")
    return parser


def daily_retrain_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.daily_retrain`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.daily_retrain",
        description="Retrain the symbols whose production model is missing or scores below "
                    "models.retraining.performance_threshold; retrain nothing while any price feed is stale.")
    _symbols_and_config(parser)
    parser.add_argument("--force", action="store_true", help="retrain every given symbol whose feed is fresh")
    return parser


def weekly_evaluation_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.weekly_evaluation`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.weekly_evaluation",
        description="Score every production model on the newest scheduling.weekly_evaluation.window_days rows, "
                    "measure feature drift, write the weekly report and retrain the degraded symbols.")
    _symbols_and_config(parser)
    return parser
