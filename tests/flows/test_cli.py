"""Shared command-line helpers: the tuning budget flags, one-line errors, tracebacks kept off the console."""

from __future__ import annotations

import io
import logging

import pytest

from flows.cli import (
    models_parser,
    one_line,
    short_tracebacks,
    summary_off_console,
    training_parser,
    tuning_overrides,
)


def test_tuning_budget_flags_become_optimization_overrides() -> None:
    for parser in (training_parser(), models_parser()):
        args = parser.parse_args(["--trials", "3", "--tuning-timeout", "90"])
        assert tuning_overrides(args) == {"optimization": {"n_trials": 3, "timeout": 90.0}}
        assert tuning_overrides(parser.parse_args([])) == {"optimization": {}}
        with pytest.raises(SystemExit):
            parser.parse_args(["--trials", "0"])
        with pytest.raises(SystemExit):
            parser.parse_args(["--tuning-timeout", "-5"])


def test_one_line() -> None:
    assert one_line(ValueError("data pipeline failed for:\n  NOPE: load failed")) == \
        "data pipeline failed for: NOPE: load failed"


def console_text(error: Exception, expected: tuple[type[BaseException], ...]) -> str:
    """What a root handler prints for a failure logged with its traceback inside short_tracebacks."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        with short_tracebacks(expected):
            try:
                raise error
            except Exception:
                logging.getLogger("tests.cli").error("failed: %r", error, exc_info=True)
        assert handler.filters == []  # the filter is gone after the block
    finally:
        logging.getLogger().removeHandler(handler)
    return stream.getvalue()


def test_short_tracebacks_drops_the_traceback_of_expected_errors_only() -> None:
    assert console_text(KeyError("explained"), (KeyError,)) == "failed: KeyError('explained')\n"
    bug = console_text(ZeroDivisionError("a bug"), (KeyError,))
    assert bug.startswith("failed: ZeroDivisionError('a bug')\nTraceback (most recent call last):")


def test_the_run_summary_stays_off_the_console_of_a_command_line_that_prints_it() -> None:
    from tasks.delivery.run_log import SUMMARY

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    logger = logging.getLogger("tests.cli.summary")
    try:
        with summary_off_console():
            logger.warning("decision VHM: promote lstm v1", extra={SUMMARY: True})
            logger.warning("other line")
        assert handler.filters == []
        logger.warning("decision VHM: shown again outside", extra={SUMMARY: True})
    finally:
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue() == "other line\ndecision VHM: shown again outside\n"


@pytest.mark.parametrize("module", ["flows.training", "flows.data_pipeline", "flows.model_pipeline",
                                    "flows.daily_retrain", "flows.weekly_evaluation"])
@pytest.mark.parametrize("text", ["", " , "])
def test_an_empty_symbol_list_is_an_error_not_every_default_symbol(
        module: str, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    assert importlib.import_module(module).main(["--symbols", text]) == 2
    assert f"--symbols {text!r} names no symbol" in capsys.readouterr().err


def test_ingest_refuses_an_empty_symbol_list(capsys: pytest.CaptureFixture[str]) -> None:
    from flows.ingest import main

    assert main(["demo", "--symbols", ""]) == 2
    assert "--symbols '' names no symbol" in capsys.readouterr().err


def run_failing_cli(debug: bool, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """(console log, stderr) of run_cli whose flow logs a failure with its traceback, then raises it."""
    from flows.cli import run_cli

    def flow(settings: object, symbols: list[str]) -> None:
        try:
            raise OSError(28, "No space left on device", "/reports/run/report.json")
        except OSError as exc:
            logging.getLogger("tests.cli.flow").error("step report failed (store at mongodb://u:hunter2@db/)",
                                                      exc_info=True)
            raise RuntimeError("could not reach mongodb://u:hunter2@db:27017/") from exc

    stream = io.StringIO()
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, [logging.StreamHandler(stream)]  # the console alone
    try:
        args = training_parser().parse_args(["--symbols", "VHM", *(["--debug"] if debug else [])])
        assert run_cli(args, flow, lambda outcome, settings: 0, failed="training") == 1
    finally:
        root.handlers = handlers
    return stream.getvalue(), capsys.readouterr().err


def test_a_failure_prints_one_line_and_no_traceback_without_debug(capsys: pytest.CaptureFixture[str]) -> None:
    console, err = run_failing_cli(False, capsys)

    assert console == "step report failed (store at mongodb://<credentials hidden>@db/)\n"
    assert err == "training failed: RuntimeError: could not reach mongodb://<credentials hidden>@db:27017/\n"


def test_debug_shows_the_tracebacks_with_credentials_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    console, err = run_failing_cli(True, capsys)

    assert console.startswith("step report failed (store at mongodb://<credentials hidden>@db/)\nTraceback")
    assert "OSError: [Errno 28] No space left on device: '/reports/run/report.json'" in console
    assert err.startswith("Traceback (most recent call last):") and "hunter2" not in console + err
    assert err.endswith("training failed: RuntimeError: could not reach mongodb://<credentials hidden>@db:27017/\n")


@pytest.mark.parametrize("parser", [training_parser, models_parser])
def test_every_flow_command_line_has_debug(parser: object) -> None:
    assert parser().parse_args(["--debug"]).debug is True  # type: ignore[operator]


@pytest.mark.usefixtures("prefect_harness")
def test_credentials_never_reach_the_prefect_run_log() -> None:
    import asyncio

    from prefect import flow, get_run_logger, task

    from tests.flows.test_training import run_log

    @task
    def connect() -> None:
        raise ConnectionError("no answer from mongodb://admin:hunter2@db:27017/prices")

    @flow
    def leaky() -> None:
        get_run_logger().info("reading mongodb://admin:hunter2@db:27017/prices")
        connect()

    state = leaky(return_state=True)

    assert state.is_failed()
    log = "\n".join(asyncio.run(run_log(state.state_details.flow_run_id)))
    assert "reading mongodb://<credentials hidden>@db:27017/prices" in log
    assert "no answer from mongodb://<credentials hidden>@db:27017/prices" in log and "hunter2" not in log
