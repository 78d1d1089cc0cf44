"""`python -m flows.training --symbols VHM` with the shipped defaults (tuning and deployment on), fewer trials, days
and walk-forward folds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving import ServerProcess, free_port
from tests.acceptance.conftest import FEWER_FOLDS, PYTHON, ingest_demo, run, tail, user_env

TYPES = ["arima", "catboost", "lstm", "transformer"]
TOKEN = "acceptance-token"


def newest_report(workspace: Path) -> dict:
    reports = sorted((workspace / "reports").glob("*/report.json"))
    assert reports, "no report written"
    return json.loads(reports[-1].read_text())


@pytest.mark.long(seconds=105)
def test_default_tuned_run_trains_every_type_and_a_failed_job_fails_the_run(tmp_path: Path) -> None:
    env = user_env(tmp_path, DEPLOYMENT__TOKEN=TOKEN, **FEWER_FOLDS)
    ingest_demo(tmp_path, env, days=300)
    with ServerProcess("staging", tmp_path / "serving" / "staging", TOKEN) as staging, \
            ServerProcess("production", tmp_path / "serving" / "production", TOKEN) as production:
        env |= {"STOCK_AI_DEPLOYMENT__STAGING_ENDPOINT": staging.url,
                "STOCK_AI_DEPLOYMENT__PRODUCTION_ENDPOINT": production.url}
        tuned = run([PYTHON, "-m", "flows.training", "--symbols", "VHM", "--trials", "2"], tmp_path, env)

        assert tuned.returncode == 0, tail(tuned)
        out = tuned.stdout + tuned.stderr
        for model_type in TYPES:  # every study ran both trials, with progress lines
            assert f"tune-{model_type}: trial 2/2" in out, tail(tuned)
        content = newest_report(tmp_path)
        assert content["status"] == "completed" and content["failures"] == []
        assert sorted(row["model"] for row in content["leaderboard"]) == TYPES
        assert all(r["status"] == "trained" and r["reason"] == "optuna params"
                   for r in content["training"]["results"])
        assert "Finished in state Failed" not in out

        # One job forced to fail: the others finish, the report names it, the run fails, exit 1.
        failing = env | {"STOCK_AI_MODELS__PARAMS__LSTM__LOOKBACK": "5000"}
        failed = run([PYTHON, "-m", "flows.training", "--symbols", "VHM", "--retrain-all", "--no-optimize"],
                     tmp_path, failing)

    assert failed.returncode == 1, tail(failed)
    content = newest_report(tmp_path)
    assert content["status"] == "completed_with_failures"
    assert [(f["symbol"], f["model_type"], f["step"]) for f in content["failures"]] == [("VHM", "lstm", "train")]
    # lstm's earlier version is evaluated; a production model older than its type's newest version has a row too
    assert sorted({row["model"] for row in content["leaderboard"]}) == TYPES
    page = sorted((tmp_path / "reports").glob("*/report.html"))[-1].read_text()
    assert page.index('class="failures"') < page.index("Leaderboard") and "lstm VHM" in page
    assert "1 of " in failed.stderr and "jobs failed" in failed.stderr
    assert "Finished in state Failed('Flow run encountered an exception: RunFailed: 1 of" in failed.stderr
    assert "Traceback" not in failed.stderr.split("RunFailed")[-1]  # the summary comes without a traceback


def one_line_error(args: list[str], workspace: Path, env: dict[str, str]) -> str:
    """Run the training CLI expecting bad input: exit 2 and a single line of output; returns that line."""
    result = run([PYTHON, "-m", "flows.training", *args], workspace, env, timeout=300)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, tail(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.long(seconds=22)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no prices in" in one_line_error(["--symbols", "VHM"], empty, user_env(empty))

    env = user_env(tmp_path)
    ingest_demo(tmp_path, env, days=80)
    mongo_down = env | {"STOCK_AI_DATA__SOURCE": "mongodb", "STOCK_AI_DATA__MONGODB__RETRIES": "1",
                        "STOCK_AI_DATA__MONGODB__URI": f"mongodb://127.0.0.1:{free_port()}",
                        "STOCK_AI_DATA__MONGODB__TIMEOUT_MS": "300"}
    cases = {
        "unknown symbol": (["--symbols", "NOPE"], env, "no prices for symbol 'NOPE'"),
        "too short a history": (["--symbols", "VHM"], env, "VHM has 80 rows of history in the window"),
        "invalid symbol": (["--symbols", "../x"], env, "invalid symbol '../x'"),
        "MongoDB down": (["--symbols", "VHM"], mongo_down, "127.0.0.1"),
    }
    for name, (args, case_env, expected) in cases.items():
        assert expected in one_line_error(args, tmp_path, case_env), name


@pytest.mark.parametrize("flag", ["--trials", "--tuning-timeout"])
def test_tuning_budget_flags_refuse_non_positive_values(tmp_path: Path, flag: str) -> None:
    result = run([PYTHON, "-m", "flows.training", flag, "0"], tmp_path, user_env(tmp_path), timeout=120)
    assert result.returncode == 2 and flag in result.stderr, tail(result)
