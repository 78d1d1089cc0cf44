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
