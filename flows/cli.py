"""Helpers shared by the flow command lines: argument parsers, the body of `main()`, Prefect's environment and
console."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from schemas import RunFailed, redact_credentials, validate_symbol

if TYPE_CHECKING:
    from settings import Settings

__all__ = [
    "add_debug",
    "daily_retrain_parser",
    "data_parser",
    "deployment_parser",
    "hide_credentials_in_run_logs",
    "models_parser",
    "one_line",
    "parse_symbols",
    "prefect_environment",
    "print_traceback",
    "quiet_server_shutdown",
    "run_cli",
    "short_tracebacks",
    "summary_off_console",
    "training_parser",
    "tuning_overrides",
    "weekly_evaluation_parser",
]

Outcome = TypeVar("Outcome")

# The temporary Prefect server migrates a new database on its first start: on a small, busy machine that
# takes longer than Prefect's default of 20 s.
_PREFECT_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                     "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def prefect_environment() -> None:
    """Defaults for Prefect's settings that a command line needs; call before Prefect is imported.

    Values already set in the environment win.
    """
    for name, value in _PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def one_line(error: BaseException | str) -> str:
    """An error message on one line, any URI's credentials hidden."""
    return redact_credentials(" ".join(str(error).split()))


class _HiddenCredentials(logging.Filter):
    """Hides URI credentials in a record's message and traceback, before any handler sees it."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = redact_credentials(message)
        if hidden != message:
            record.msg, record.args = hidden, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_credentials(record.exc_text)
        return True


class _ConsoleRecords(_HiddenCredentials):
    """Drops the traceback of console records about `expected` errors (the message line stays), and hides URI
    credentials in every one."""

    def __init__(self, expected: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            record.exc_info, record.exc_text = None, None
        return super().filter(record)


RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
"""The loggers of Prefect's run logs (get_run_logger, the engine's failure records): what the UI shows."""


def hide_credentials_in_run_logs() -> None:
    """Hide URI credentials in every record of the Prefect run logs, on the console and in the Prefect API alike."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HiddenCredentials) for f in logger.filters):
            logger.addFilter(_HiddenCredentials())


@contextmanager
def _on_console(log_filter: logging.Filter) -> Iterator[None]:
    """While inside, `log_filter` sits on the root logger's handlers (the console); Prefect's API handler sits on the
    run loggers and sees each record before them, so the run log in the Prefect UI keeps the full record."""
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)


def short_tracebacks(expected: tuple[type[BaseException], ...] = (Exception,)) -> AbstractContextManager[None]:
    """While inside, console log records about `expected` errors lose their traceback, and every console record's
    URI credentials are hidden.

    Prefect logs every failed task and flow with a traceback. A command line explains a failure in one line;
    the traceback is noise there (shown with --debug), and the run log in Prefect keeps the full record.
    """
    return _on_console(_ConsoleRecords(expected))


class _NotOnConsole(logging.Filter):
    """Drops records that carry `attribute` (set to True)."""

    def __init__(self, attribute: str) -> None:
        super().__init__()
        self.attribute = attribute

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, self.attribute, False)


def summary_off_console() -> AbstractContextManager[None]:
    """While inside, the run summary a flow logs (tasks/delivery/run_log.py) stays off the console: for a command
    line that prints the same summary itself once the flow returned. The run log keeps the records."""
    from tasks.delivery.run_log import SUMMARY

    return _on_console(_NotOnConsole(SUMMARY))


def parse_symbols(text: str) -> list[str]:
    """Split 'VCB,VIC' into validated symbols; raises InvalidSymbolError naming a bad one."""
    symbols = [validate_symbol(part.strip()) for part in text.split(",") if part.strip()]
    if not symbols:
        raise ValueError(f"--symbols {text!r} names no symbol (leave the flag out for data.symbols)")
    return symbols


def quiet_server_shutdown() -> None:
    """Silence the temporary Prefect server's logger once the work is done.

    When no Prefect server is configured, Prefect starts a temporary one and stops it at exit; its event
    recorder then logs cancelled flushes as errors although every run was recorded.
    """
    logging.getLogger("prefect.server").setLevel(logging.CRITICAL)


def run_cli(args: argparse.Namespace, run: Callable[[Settings, list[str]], Outcome],
            report: Callable[[Outcome, Settings], int], *, failed: str,
            input_errors: tuple[type[Exception], ...] = (), overrides: Mapping[str, Any] | None = None,
            run_failed: Callable[[RunFailed], int] | None = None, prints_summary: bool = False) -> int:
    """The body of a flow's `main()`: settings and symbols from `args`, then `run`, then `report` its outcome.

    Args:
        args: parsed `--config`, `--symbols` (None: data.symbols) and `--debug`.
        run: the flow, called with the settings and symbols; its console logs carry no traceback unless
            `--debug` (the Prefect run log keeps them).
        report: prints the outcome and returns the exit code.
        failed: the flow in words; any other error prints `<failed> failed: <Type>: <message>` (one line; with
            `--debug`, after its traceback) and exits 1.
        input_errors: errors beside ConfigError and ValueError that mean bad input: `error: <message>`, exit 2.
        overrides: settings that win over the file and environment.
        run_failed: handles RunFailed instead, returning the exit code.
        prints_summary: `report` and `run_failed` print the run summary the flow logs: its records stay off the
            console (summary_off_console), so no line shows twice.

    Returns:
        The exit code. The temporary Prefect server is quiet afterwards, whatever happened.
    """
    from settings import ConfigError, load_settings

    try:  # a crash in native code (a model library) prints every thread's Python stack
        faulthandler.enable()
    except (AttributeError, ValueError, OSError):  # stderr without a file descriptor (captured, closed)
        pass
    debug = bool(getattr(args, "debug", False))
    expected: tuple[type[Exception], ...] = (ConfigError, ValueError, *input_errors)
    try:
        settings = load_settings(args.config, overrides)
        symbols = parse_symbols(args.symbols) if args.symbols is not None else list(settings.data.symbols)
        with short_tracebacks(() if debug else (Exception,)), \
                summary_off_console() if prints_summary else nullcontext():
            outcome = run(settings, symbols)
    except expected as exc:
        if debug:
            print_traceback()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if run_failed is not None and isinstance(exc, RunFailed):
            return run_failed(exc)
        if debug:
            print_traceback()
        print(f"{failed} failed: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        quiet_server_shutdown()
    return report(outcome, settings)


def print_traceback() -> None:
    """The traceback of the error being handled, on stderr, any URI's credentials hidden (for --debug)."""
    print(redact_credentials(traceback.format_exc()), end="", file=sys.stderr)


def add_debug(parser: argparse.ArgumentParser) -> None:
    """`--debug`: tracebacks on the console (the Prefect run log always has them)."""
    parser.add_argument("--debug", action="store_true",
                        help="print the tracebacks of failures on the console (the Prefect run log keeps them "
                             "either way)")


def _symbols_and_config(parser: argparse.ArgumentParser, symbols_help: str = "default: data.symbols") -> None:
    parser.add_argument("--symbols", help=f"comma-separated tickers, e.g. VCB,VIC,VHM ({symbols_help})")
    parser.add_argument("--config", help="YAML config file (default: $STOCK_AI_CONFIG or config/pipeline_config.yml)")
    add_debug(parser)


def _universe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--universe", metavar="NAME",
                        help="universe (a key of data.universes, e.g. VN30) whose symbols universe models are fitted "
                             "and judged on; --symbols get the per-symbol models, champions and deployments "
                             "(default: data.universe; none: the --symbols themselves)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def tuning_overrides(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Settings overrides from --trials and --tuning-timeout, for load_settings."""
    given = {"n_trials": args.trials, "timeout": args.tuning_timeout}
    return {"optimization": {key: value for key, value in given.items() if value is not None}}


def _tuning_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=_positive_int, metavar="N",
                        help="Optuna trials per model type (default: optimization.n_trials)")
    parser.add_argument("--tuning-timeout", type=_positive_seconds, metavar="SECONDS",
                        help="stop each model type's study after this long (default: optimization.timeout)")


def data_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.data_pipeline`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.data_pipeline",
        description="Run the data pipeline (load -> clean -> engineer -> select -> split -> store).")
    _symbols_and_config(parser)
    _universe(parser)
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
    _universe(parser)
    parser.add_argument("--model-type", action="append", choices=MODEL_TYPES,
                        help="model type to train; repeat for several (default: models.model_types)")
    parser.add_argument("--retrain", action="store_true",
                        help="train even when the last model is newer than models.retraining.min_hours_between")
    parser.add_argument("--no-optimize", action="store_true", help="skip tuning; use models.params from the config")
    _tuning_budget(parser)
    return parser


def training_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.training`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.training",
        description="Run the full pipeline: data -> models -> evaluation -> champion choice -> report; "
                    "prints the leaderboard and the report location.")
    _symbols_and_config(parser)
    _universe(parser)
    parser.add_argument("--retrain-all", action="store_true",
                        help="retrain every model even if trained within models.retraining.min_hours_between")
    parser.add_argument("--no-optimize", action="store_true", help="skip Optuna; use models.params from the config")
    parser.add_argument("--no-deploy", action="store_true", help="stop after the report; deploy nothing")
    _tuning_budget(parser)
    return parser


def deployment_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.deployment_pipeline`."""
    parser = argparse.ArgumentParser(prog="python -m flows.deployment_pipeline",
                                     description="Talk to the staging and production model servers.")
    parser.add_argument("--config", help="YAML config file (default: $STOCK_AI_CONFIG or config/pipeline_config.yml)")
    add_debug(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    rollback = commands.add_parser("rollback", help="restore the previous production model of a symbol")
    rollback.add_argument("--symbol", required=True)
    predict = commands.add_parser("predict", help="ask a server for the newest prediction of a symbol")
    predict.add_argument("--symbol", required=True)
    predict.add_argument("--stage", choices=["staging", "production"], default="production")
    status = commands.add_parser("status", help="health and deployed models of both servers")
    status.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the servers to come up")
    commands.add_parser("reconcile", help="make the production server and the registry's production alias "
                                          "agree again after an interrupted promotion or rollback")
    return parser


def daily_retrain_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.daily_retrain`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.daily_retrain",
        description="Retrain the symbols whose production model is missing or scores below "
                    "models.retraining.performance_threshold; retrain nothing while any price feed is stale.")
    _symbols_and_config(parser)
    _universe(parser)
    parser.add_argument("--force", action="store_true", help="retrain every given symbol whose feed is fresh")
    return parser


def weekly_evaluation_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m flows.weekly_evaluation`."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.weekly_evaluation",
        description="Score every production model on the newest scheduling.weekly_evaluation.window_days rows, "
                    "measure how its symbol's and the market's daily range moved over the newest drift_days, "
                    "write the weekly report and retrain the degraded symbols.")
    _symbols_and_config(parser)
    return parser
