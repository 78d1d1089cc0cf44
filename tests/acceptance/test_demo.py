"""`make demo` as the README gives it, on less data (300 days, a universe of 6 symbols instead of VN30's 30, 2
walk-forward folds): servers up, pipeline with per-symbol and universe models, a served prediction, servers down."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pytest

from serving import free_port
from tests.acceptance.conftest import FEWER_FOLDS, PYTHON, ROOT, run, tail, user_env


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.long(seconds=140)
def test_make_demo_trains_deploys_and_answers_a_prediction(tmp_path: Path) -> None:
    staging, production = free_port(), free_port()
    while production == staging:
        production = free_port()
    command = ["make", "--no-print-directory", "-C", str(tmp_path), "-f", str(ROOT / "Makefile"), "demo",
               f"VENV={sys.prefix}", "SYMBOLS=VHM", "UNIVERSE=VN6", "DAYS=300", f"STAGING_PORT={staging}",
               f"PRODUCTION_PORT={production}"]
    # A user's shell: not inside the `make test` that runs this suite.
    env = {k: v for k, v in user_env(tmp_path, **FEWER_FOLDS).items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["STOCK_AI_DATA__UNIVERSES"] = json.dumps({"VN6": ["VCB", "VIC", "VHM", "FPT", "HPG", "VNM"]})
    result = run(command, tmp_path, env, timeout=1200)

    assert result.returncode == 0, tail(result)
    out = result.stdout + result.stderr
    # Library warnings stay off the console: statsmodels' routine ones are counted in the job's line instead.
    warning_lines = [line for line in out.splitlines()
                     if re.search(r"Warning: |EstimationWarning|ConvergenceWarning", line)]
    assert warning_lines == [], "\n".join(warning_lines[:20])
    assert f"staging http://127.0.0.1:{staging}: up" in out and f"production http://127.0.0.1:{production}: up" in out
    reports = sorted((tmp_path / "reports").glob("*/report.json"))
    assert len(reports) == 1, tail(result)
    content = json.loads(reports[0].read_text())
    assert content["status"] == "completed" and content["failures"] == []
    assert sorted(row["model"] for row in content["leaderboard"]) == [
        "arima", "catboost", "catboost-pooled", "lstm", "lstm-pooled", "transformer", "transformer-pooled"]
    assert len(content["universe"]) == 3 and all(" over 6 symbols and " in line for line in content["universe"])
    # Each universe model's ranking traded as a top-3 portfolio of the six, against the equal-weight six.
    assert all("top-3 of " in line and "after costs vs the equal-weight universe's" in line
               for line in content["universe"])
    assert sorted(p["name"] for p in content["portfolios"]) == [
        "catboost-pooled v1", "lstm-pooled v1", "transformer-pooled v1"]
    assert "Portfolios: what the rankings earn after costs and taxes" in (reports[0].parent / "report.html").read_text()
    [decision] = content["decisions"]
    if decision["action"] == "promote":  # deployed through staging, then served by production
        assert [d["status"] for d in content["deployment"]] == ["production"]
        assert "VHM" in result.stdout and "predicted forward log return" in result.stdout
        damaged_production_is_one_line(tmp_path, env)
    else:  # no champion: production says it serves nothing for VHM
        assert "production serves no model for VHM" in result.stderr
    assert f"report: {reports[0].parent / 'report.html'}" in result.stdout
    assert not listening(staging) and not listening(production)  # the demo stopped its servers


def damaged_production_is_one_line(workspace: Path, env: dict[str, str]) -> None:
    """A production model file altered on disk: the weekly evaluation fails naming the file, in one line and
    without a traceback (tests/flows/test_cli.py: --debug shows it)."""
    registry = workspace / "artifacts" / "registry"
    production = json.loads((registry / "aliases" / "VHM.json").read_text())["production"]
    folder = "_POOLED_" if production["model_type"].endswith("-pooled") else "VHM"
    version = registry / production["model_type"] / folder / f"v{production['version']}"
    damaged = max((p for p in version.iterdir() if p.name != "metadata.json"), key=lambda p: p.stat().st_size)
    with damaged.open("ab") as handle:
        handle.write(b"x")

    weekly = run([PYTHON, "-m", "flows.weekly_evaluation", "--symbols", "VHM"], workspace, env, timeout=600)

    assert weekly.returncode == 1, tail(weekly)
    assert "Traceback" not in weekly.stdout + weekly.stderr, tail(weekly)
    failed = f"weekly evaluation failed: RegistryError: model file corrupt (sha256 mismatch): {damaged}"
    assert failed in weekly.stderr.splitlines(), tail(weekly)
