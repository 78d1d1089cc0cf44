"""flows/ never shadows an importable name: Prefect loads a file entrypoint with flows/ first on sys.path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def top_level_names() -> set[str]:
    """The project's own top-level modules and packages."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    modules = {p.stem for p in ROOT.glob("*.py")}
    return packages | modules


def test_no_flow_module_shares_a_name_with_a_top_level_module_or_the_stdlib() -> None:
    flow_modules = {p.stem for p in (ROOT / "flows").glob("*.py")} - {"__init__"}
    assert {"training", "model_pipeline"} <= flow_modules  # the glob found the folder
    assert {"models", "tasks", "stores", "serving", "settings", "schemas"} <= top_level_names()
    clashes = flow_modules & (top_level_names() | set(sys.stdlib_module_names))
    assert not clashes, f"flows/ modules shadow importable names: {sorted(clashes)}"


def test_every_deployment_entrypoint_loads_as_prefect_loads_it() -> None:
    """In a fresh interpreter, as a worker does: the script's folder goes first on sys.path."""
    entrypoints = [d["entrypoint"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]]
    assert len(entrypoints) == 3
    script = (
        "import sys\n"
        "from prefect.flows import load_flow_from_entrypoint\n"
        "for entrypoint in sys.argv[1:]:\n"
        "    flow = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)\n"
        "    print(entrypoint, flow.name)\n"
        # Names a flow imports lazily, inside its body, must resolve to the project's packages too.
        "import models.base, tasks.modeling.train, stores.registry\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *entrypoints], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line.split()[1] for line in result.stdout.splitlines()] == [
        "training", "daily-retrain", "weekly-evaluation"]
