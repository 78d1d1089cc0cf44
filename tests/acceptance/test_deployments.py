"""The README's "Running every day" recipe: a Prefect server, the `stock-ai` process pool, `prefect deploy --all`,
a worker, then `prefect deployment run` of each deployment. Every run, and the retrain the weekly run
starts, must reach Completed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from settings import load_settings
from stores.metrics import MetricsHistory
from stores.registry import LocalModelRegistry
from tests.acceptance.conftest import (
    FEWER_FOLDS,
    PATH_SETTINGS,
    PYTHON,
    ROOT,
    background,
    ingest_demo,
    prefect_server,
    run,
    tail,
    user_env,
    workspace_paths,
)

PREFECT = [PYTHON, "-m", "prefect"]


def flow_runs(api: str) -> list[tuple[str, str, str]]:
    """(flow name, deployment name, state name) of every flow run that started, oldest first.

    Runs the schedules created (02:00, Sunday 01:00) are left out: those that have not started, and one that came
    due while the test ran (a suite that spans 19:00 UTC meets the daily 02:00 Asia/Ho_Chi_Minh run).
    """
    runs = httpx.post(f"{api}/flow_runs/filter", timeout=30, json={
        "sort": "EXPECTED_START_TIME_ASC", "flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}}}).json()
    runs = [r for r in runs if "auto-scheduled" not in r["tags"]]
    flows = {r["flow_id"]: httpx.get(f"{api}/flows/{r['flow_id']}", timeout=30).json()["name"] for r in runs}
    deployments = {r["deployment_id"]: httpx.get(f"{api}/deployments/{r['deployment_id']}", timeout=30).json()["name"]
                   for r in runs if r["deployment_id"]}
    return [(flows[r["flow_id"]], deployments.get(r["deployment_id"], ""), r["state"]["name"]) for r in runs]


def deployed_schedules(api: str) -> dict[str, list[tuple[str, str, bool]]]:
    """flow/deployment -> (cron, timezone, active) of each of its schedules, as the server holds them."""
    found = {}
    for deployment in httpx.post(f"{api}/deployments/filter", json={}, timeout=30).json():
        flow = httpx.get(f"{api}/flows/{deployment['flow_id']}", timeout=30).json()["name"]
        found[f"{flow}/{deployment['name']}"] = [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"])
                                                 for s in deployment["schedules"]]
    return found


def flow_run_id(output: str) -> str:
    """The flow run `prefect deployment run` created, from its output."""
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output[-2000:]
    return match.group(1)


def test_every_path_setting_is_redirected_into_the_workspace(tmp_path: Path) -> None:
    settings = load_settings(None).model_dump()
    found = {f"{section.upper()}__{key.upper()}" for section, values in settings.items()
             for key, value in values.items() if isinstance(value, Path)}
    assert found == set(PATH_SETTINGS)


@pytest.mark.long(seconds=195)
def test_deployments_run_through_a_worker(tmp_path: Path) -> None:
    with prefect_server(tmp_path, tmp_path / "server.log") as api:
        # The worker's flow runs start in the checkout (prefect.yaml's pull step); their data goes to tmp_path.
        env = user_env(tmp_path, **workspace_paths(tmp_path), OPTIMIZATION__N_TRIALS="1",
                       DEPLOYMENT__ENABLED="false", SCHEDULING__WEEKLY_EVALUATION__VOLATILITY_BOUND="1.0001",
                       **FEWER_FOLDS) | {"PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "2"}
        ingest_demo(tmp_path, env, days=300)
        for command in (["work-pool", "create", "stock-ai", "--type", "process"], ["--no-prompt", "deploy", "--all"]):
            result = run([*PREFECT, *command], ROOT, env, timeout=300)
            assert result.returncode == 0, tail(result)
        assert deployed_schedules(api) == {"training/full": [],
                                           "daily-retrain/daily": [("0 2 * * *", "Asia/Ho_Chi_Minh", True)],
                                           "weekly-evaluation/weekly": [("0 1 * * 0", "Asia/Ho_Chi_Minh", True)]}

        with background([*PREFECT, "worker", "start", "--pool", "stock-ai"], tmp_path, env, tmp_path / "worker.log"):
            full = run([*PREFECT, "deployment", "run", "training/full", "-p", 'symbols=["VHM"]', "-p", "deploy=false",
                        "--watch", "--watch-timeout", "900"], ROOT, env)
            assert full.returncode == 0, tail(full) + (tmp_path / "worker.log").read_text()[-5000:]
            reports = sorted((tmp_path / "reports").glob("*/report.json"))
            assert len(reports) == 1 and json.loads(reports[0].read_text())["status"] == "completed"

            daily = run([*PREFECT, "deployment", "run", "daily-retrain/daily", "-p", 'symbols=["VHM"]', "--watch",
                          "--watch-timeout", "900"],
                        ROOT, env)
            assert daily.returncode == 0, tail(daily) + (tmp_path / "worker.log").read_text()[-5000:]
            logs = run([*PREFECT, "flow-run", "logs", flow_run_id(daily.stdout)], ROOT, env).stdout
            assert "VHM: retrain (no production model)" in logs, logs[-3000:]

            # VHM goes to production as a deployment records it: the next daily retrain has nothing to do and says
            # why, in the run's own log.
            registry = LocalModelRegistry(tmp_path / PATH_SETTINGS["MODELS__REGISTRY_PATH"])
            version = registry.get("catboost", "VHM").version
            registry.set_alias("VHM", "production", "catboost", version)
            MetricsHistory(tmp_path / PATH_SETTINGS["MONITORING__HISTORY_PATH"]).record_score(
                "VHM", "catboost", version, 0.25, datetime.now(UTC).date(), "deployment")
            again = run([*PREFECT, "deployment", "run", "daily-retrain/daily", "-p", 'symbols=["VHM"]', "--watch",
                          "--watch-timeout", "900"],
                        ROOT, env)
            assert again.returncode == 0, tail(again) + (tmp_path / "worker.log").read_text()[-5000:]
            logs = run([*PREFECT, "flow-run", "logs", flow_run_id(again.stdout)], ROOT, env)
            assert logs.returncode == 0, tail(logs)
            assert (f"VHM: skip (catboost v{version}: live composite 0.25 (deployment " in logs.stdout and
                    "is 100% of its 0.25 at deployment, at or above the 70% threshold: not needed)" in logs.stdout and
                    "nothing to retrain among 1 symbol(s)" in logs.stdout), logs.stdout[-3000:]

            # The worker's weekly runs read a volatility bound a hair above 1: VHM's daily range moved beyond it.
            weekly = run([*PREFECT, "deployment", "run", "weekly-evaluation/weekly", "--watch",
                          "--watch-timeout", "900"], ROOT, env)
            assert weekly.returncode == 0, tail(weekly) + (tmp_path / "worker.log").read_text()[-5000:]
            logs = run([*PREFECT, "flow-run", "logs", flow_run_id(weekly.stdout)], ROOT, env).stdout
            assert f"VHM catboost v{version} is degraded: its composite over the newest 60 sessions is " in logs, logs

        runs = flow_runs(api)
    top_level = [(flow, deployment, state) for flow, deployment, state in runs if deployment]
    assert top_level == [("training", "full", "Completed"), ("daily-retrain", "daily", "Completed"),
                         ("daily-retrain", "daily", "Completed"), ("weekly-evaluation", "weekly", "Completed"),
                         ("daily-retrain", "daily", "Completed")], runs
    assert all(state == "Completed" for _, _, state in runs), runs
    weekly_reports = list((tmp_path / "reports").glob("weekly-*/weekly.json"))
    assert len(weekly_reports) == 1
    rows = json.loads(weekly_reports[0].read_text())["rows"]
    assert [(r["symbol"], r["degraded"]) for r in rows] == [("VHM", True)]
    assert registry.versions("catboost", "VHM")[-1] > version  # the weekly run's retrain trained VHM again
