"""prefect.yaml: the three deployments' schedules mirror the settings. tests/acceptance/test_deployments.py deploys
them (`prefect deploy --all`) to a real Prefect server, checks the schedules there and runs each through a worker."""

from __future__ import annotations

from pathlib import Path

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
