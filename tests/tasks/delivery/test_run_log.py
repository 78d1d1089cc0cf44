"""The run's account of itself: the best models per symbol at 4 significant digits, every decision with its
reasons, deployments or why there were none, failures and the report, each logged as a summary record."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from schemas import JobFailure
from tasks.delivery.deploy import DeploymentResult
from tasks.delivery.run_log import (
    SUMMARY,
    leaderboard_lines,
    log_choice,
    log_deployments,
    log_report,
)
from tasks.evaluation.choose import Decision


def row(symbol: str, model: str, composite: float, chosen: bool = False, **metrics: Any) -> dict[str, Any]:
    return {"symbol": symbol, "model": model, "version": 1, "composite": composite, "chosen": chosen,
            "production": False, "r2": -0.0034061234, "rmse": 0.0122391234, "dir_acc": 0.52112, "ic": 0.0451234,
            "sharpe": 1.23456, "max_dd": -0.1234567, "total_return": 0.0567891, "p_adj": None, **metrics}


def test_the_best_models_per_symbol_and_the_chosen_one_wherever_it_ranks() -> None:
    rows = [row("VCB", m, c, chosen=m == "arima") for m, c in
            [("lstm-pooled", 0.2455400208940786), ("catboost", 0.2), ("lstm", 0.15), ("transformer", 0.1),
             ("arima", 0.05)]] + [row("VHM", "catboost_pooled", 0.3)]
    vcb, vhm = leaderboard_lines(rows)
    lines = vcb.splitlines()
    assert lines[0] == "leaderboard VCB: 5 model(s), best composite first"
    assert lines[1] == ("  lstm-pooled v1: composite 0.2455, r2 -0.003406, rmse 0.01224, dir_acc 0.5211, ic 0.04512, "
                        "sharpe 1.235, max_dd -0.1235, total_return 0.05679, p_adj n/a")
    assert [line.split(":")[0].strip() for line in lines[1:5]] == ["lstm-pooled v1", "catboost v1", "lstm v1",
                                                                   "arima v1"]
    assert lines[4].endswith("[chosen]") and lines[5] == "  ... 1 more in the report"
    assert vhm.splitlines()[1].startswith("  catboost_pooled v1: composite 0.3,")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Any:
    logger = logging.getLogger("tests.run_log")
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler.records
    logger.removeHandler(handler)


def test_every_block_is_a_summary_record(logged: Any) -> None:
    logger, records = logged
    decisions = [Decision("VCB", "promote", "lstm-pooled", 1, 0.2455400208940786, ("lstm-pooled v1: won (...)",
                                                                                  "arima v1: fails the gate")),
                 Decision("VHM", "none", None, None, None, ("no challenger passes: nothing to serve",))]
    log_choice(logger, [row("VCB", "lstm-pooled", 0.2455, chosen=True)], ["passes: lstm-pooled v1 ..."], decisions)
    log_deployments(logger, decisions, None)
    log_deployments(logger, decisions, [])
    log_deployments(logger, decisions, [DeploymentResult("VCB", "lstm-pooled", 1, "failed", "staging push failed")])
    log_report(logger, [JobFailure("VHM", "lstm", "train", "ModelError: too short")], Path("/r/report.html"))
    messages = [r.getMessage() for r in records]
    assert all(getattr(r, SUMMARY) is True for r in records)
    assert messages == [
        "leaderboard VCB: 1 model(s), best composite first\n  lstm-pooled v1: composite 0.2455, r2 -0.003406, "
        "rmse 0.01224, dir_acc 0.5211, ic 0.04512, sharpe 1.235, max_dd -0.1235, total_return 0.05679, "
        "p_adj n/a [chosen]",
        "universe gate passes: lstm-pooled v1 ...",
        "decision VCB: promote lstm-pooled v1 (composite 0.2455)\n    lstm-pooled v1: won (...)\n"
        "    arima v1: fails the gate",
        "decision VHM: none (no model to serve)\n    no challenger passes: nothing to serve",
        "deployment off (deployment.enabled false or --no-deploy): staged (registry alias staging): VCB "
        "lstm-pooled v1; nothing sent to the model servers",
        "deployment: nothing to deploy, no champion promoted",
        "deployment VCB: lstm-pooled v1 -> failed (staging push failed)",
        "failed: train lstm VHM: ModelError: too short",
        "report: /r/report.html"]
    assert records[-2].levelno == logging.WARNING
