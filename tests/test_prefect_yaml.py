"""prefect.yaml: the three deployments deploy to a real Prefect server with the configured schedules."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from settings import DEFAULT_CONFIG_FILE, load_settings

ROOT = Path(__file__).resolve().parent.parent
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


def cron(time: str, day: str | None = None) -> str:
    hour, minute = (int(part) for part in time.split(":"))
    return f"{minute} {hour} * * {WEEKDAYS.index(day) if day else '*'}"


def deployments() -> dict[str, dict]:
    content = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    return {d["name"]: d for d in content["deployments"]}


def test_schedules_mirror_the_settings() -> None:
    scheduling = load_settings(DEFAULT_CONFIG_FILE).scheduling
    declared = deployments()
    daily, weekly = declared["daily"]["schedules"][0], declared["weekly"]["schedules"][0]
    assert daily == {"cron": cron(scheduling.daily_retrain.time), "timezone": scheduling.timezone,
                     "active": scheduling.daily_retrain.enabled}
    assert weekly == {"cron": cron(scheduling.weekly_evaluation.time, scheduling.weekly_evaluation.day),
                      "timezone": scheduling.timezone, "active": scheduling.weekly_evaluation.enabled}
    assert (daily["cron"], weekly["cron"]) == ("0 2 * * *", "0 1 * * 0")
    assert "schedules" not in declared["full"]
    assert {d["work_pool"]["name"] for d in declared.values()} == {scheduling.work_pool}


async def read_deployments() -> dict[str, list]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        found = {}
        for deployment in await client.read_deployments():
            flow = await client.read_flow(deployment.flow_id)
            found[f"{flow.name}/{deployment.name}"] = [
                (s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules]
        return found


async def remove_deployments_and_pool(pool: str) -> None:
    """Leave the shared test server as it was: a deployment left there would be run by other tests' flows (the
    weekly evaluation runs `daily-retrain/daily` when it exists, and waits for a worker)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for deployment in await client.read_deployments():
            await client.delete_deployment(deployment.id)
        await client.delete_work_pool(pool)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.long(seconds=16)
def test_prefect_deploy_all_creates_the_three_deployments() -> None:
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    prefect = [sys.executable, "-m", "prefect"]
    pool = load_settings(DEFAULT_CONFIG_FILE).scheduling.work_pool
    subprocess.run([*prefect, "work-pool", "create", pool, "--type", "process"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    try:
        result = subprocess.run([*prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        found = asyncio.run(read_deployments())
    finally:
        asyncio.run(remove_deployments_and_pool(pool))
    assert found["training/full"] == []
    assert found["daily-retrain/daily"] == [("0 2 * * *", "Asia/Ho_Chi_Minh", True)]
    assert found["weekly-evaluation/weekly"] == [("0 1 * * 0", "Asia/Ho_Chi_Minh", True)]
    assert asyncio.run(read_deployments()) == {}
