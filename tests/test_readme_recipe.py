"""The README's "Running every day" block, read as a shell script: the order its commands need to work when pasted.

tests/acceptance/test_deployments.py runs the same steps against a real server and worker."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def recipe() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Running every day")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, "no bash block under 'Running every day'"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


def first(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, f"no line matches {pattern!r} in the recipe"
    return found[0]


def test_the_recipe_waits_for_the_server_before_talking_to_it() -> None:
    lines = recipe()
    started, waits = first(lines, r"prefect server start .*&$"), first(lines, r"until curl .*/health")
    assert started < waits < first(lines, r"prefect work-pool create")


def test_a_worker_runs_before_any_deployment_run_and_the_outcome_is_read_from_the_log() -> None:
    lines = recipe()
    assert first(lines, r"prefect worker start .*&") < first(lines, r"prefect deployment run")
    daily = [i for i, line in enumerate(lines) if "deployment run daily-retrain/daily" in line]
    assert daily and first(lines, r"prefect flow-run logs") > daily[0]


def test_every_python_module_the_recipe_runs_exists() -> None:
    modules = {m for line in recipe() for m in re.findall(r"python -m ([\w.]+)", line)}
    assert modules >= {"serving", "flows.deployment_pipeline"}
    assert all(importlib.util.find_spec(m) is not None for m in modules), modules
