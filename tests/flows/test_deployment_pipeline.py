"""The deployment pipeline against real model servers (staging and production) on loopback ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from flows.deployment_pipeline import deployment_pipeline, main, rollback
from schemas import JobFailure, RunFailed
from serving import TOKEN_ENV, ServerProcess, free_port
from settings import Settings, load_settings
from stores.features import read_split
from stores.metrics import MetricsHistory
from stores.registry import LocalModelRegistry
from tasks.delivery.deploy import begin_promotion, deployment_tests, package_champion, push
from tasks.evaluation.choose import Decision
from tests.models.test_contract import FEATURES, ar1_frame, parts
from tests.tasks.modeling.test_train import write_feature_set

pytestmark = pytest.mark.usefixtures("prefect_harness")
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("servers")
    with ServerProcess("staging", root / "staging", TOKEN) as staging, \
            ServerProcess("production", root / "production", TOKEN) as production:
        yield {"staging": staging.url, "production": production.url}


def setup(tmp_path: Path, servers: dict[str, str], **deployment: object) -> tuple[Settings, dict, list[Decision]]:
    """A registered catboost champion for VHM and settings pointing at the servers."""
    from models.catboost import CatBoostForecaster

    refs = {"VHM": write_feature_set(tmp_path / "features", "VHM")}
    settings = load_settings(overrides={
        "models": {"registry_path": str(tmp_path / "registry")},
        "execution": {"cache_dir": str(tmp_path / "cache")},
        "monitoring": {"history_path": str(tmp_path / "history.sqlite")},
        "deployment": {"staging_endpoint": servers["staging"], "production_endpoint": servers["production"],
                       "token": TOKEN, "packages_path": str(tmp_path / "packages"), "retries": 0,
                       "max_p95_ms": 2000, **deployment}})
    registry = LocalModelRegistry(settings.models.registry_path)
    train, val, _, _ = parts(ar1_frame(rows=640))
    for depth in (6, 2):  # two versions whose predictions surely differ
        params = CatBoostForecaster.params_type(iterations=60, depth=depth)
        model = CatBoostForecaster(FEATURES, params).fit(train, val)
        registry.register(model, "VHM", metrics={}, data_hash=refs["VHM"].content_hash, code_version="t",
                          duration_seconds=0.1)
    decision = Decision("VHM", "promote", "catboost", 1, 0.5, ("won",))
    return settings, refs, [decision]


def served(url: str) -> dict:
    return httpx.get(f"{url}/v1/models").json()["models"]


def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """The environment `python -m flows.deployment_pipeline` would read these settings from."""
    cfg = settings.deployment
    monkeypatch.setenv("STOCK_AI_MODELS__REGISTRY_PATH", str(settings.models.registry_path))
    monkeypatch.setenv("STOCK_AI_DEPLOYMENT__STAGING_ENDPOINT", cfg.staging_endpoint)
    monkeypatch.setenv("STOCK_AI_DEPLOYMENT__PRODUCTION_ENDPOINT", cfg.production_endpoint)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def production_alias_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write of a `production` alias raises as on a full disk; other aliases are written."""
    real = LocalModelRegistry.set_alias

    def full_disk(self: LocalModelRegistry, symbol: str, alias: str, model_type: str, version: int) -> None:
        if alias == "production":
            raise OSError(28, "No space left on device")
        real(self, symbol, alias, model_type, version)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalModelRegistry, "set_alias", full_disk)


def test_deploys_to_production_after_passing_tests_then_rolls_back(tmp_path: Path, servers: dict) -> None:
    settings, refs, decisions = setup(tmp_path, servers)
    [result] = deployment_pipeline(decisions, refs, settings)
    assert result.status == "production", result
    assert {c.name for c in result.checks} == {"health", "deployed_version", "prediction_parity", "latency_p95",
                                               "unknown_symbol"} and all(c.passed for c in result.checks)
    registry = LocalModelRegistry(settings.models.registry_path)
    assert registry.alias("VHM", "production").version == 1
    assert served(servers["production"])["VHM"]["version"] == 1
    [score] = MetricsHistory(settings.monitoring.history_path).recent_scores("VHM")
    assert (score.source, score.version, score.composite) == ("deployment", 1, 0.5)

    second = [Decision("VHM", "promote", "catboost", 2, 0.6, ("won",))]
    assert deployment_pipeline(second, refs, settings)[0].status == "production"
    assert served(servers["production"])["VHM"]["version"] == 2
    restored = rollback("VHM", settings)
    assert restored["version"] == 1 and served(servers["production"])["VHM"]["version"] == 1
    assert registry.alias("VHM", "production").version == 1


def test_staging_down_leaves_production_untouched(tmp_path: Path, servers: dict) -> None:
    settings, refs, decisions = setup(tmp_path, servers, staging_endpoint=f"http://127.0.0.1:{free_port()}")
    before = served(servers["production"]).get("VHM")
    with pytest.raises(RunFailed, match="1 of 1 jobs failed") as failed:
        deployment_pipeline(decisions, refs, settings)
    [result] = failed.value.outcome
    assert result.status == "failed" and result.reason.startswith("staging push failed")
    assert result.failure == JobFailure("VHM", "catboost", "deploy", result.reason)
    assert served(servers["production"]).get("VHM") == before
    assert LocalModelRegistry(settings.models.registry_path).alias("VHM", "production") is None


def test_wrong_token_is_refused(tmp_path: Path, servers: dict) -> None:
    settings, refs, decisions = setup(tmp_path, servers, token="not-the-token")
    with pytest.raises(RunFailed) as failed:
        deployment_pipeline(decisions, refs, settings)
    [result] = failed.value.outcome
    assert result.status == "failed" and "HTTP 401" in result.reason


def test_tampered_model_fails_parity(tmp_path: Path, servers: dict) -> None:
    settings, refs, decisions = setup(tmp_path, servers)
    package = package_champion.fn(decisions[0], refs["VHM"], LocalModelRegistry(settings.models.registry_path),
                                  settings.deployment.packages_path)
    # The archive claims v1 but carries v2's model: the served predictions differ from v1's offline ones.
    registry = LocalModelRegistry(settings.models.registry_path)
    from serving.package import build_package
    from stores.features import read_split

    build_package(registry.get("catboost", "VHM", 2).path, read_split(refs["VHM"], "all"), symbol="VHM",
                  model_type="catboost", version=1, data_hash=package.data_hash, out=package.path)
    push.fn(package, settings.deployment.staging_endpoint, settings.deployment)
    checks = {c.name: c for c in deployment_tests.fn(package, refs["VHM"], settings.deployment.staging_endpoint,
                                                      settings.deployment,
                                                      LocalModelRegistry(settings.models.registry_path))}
    assert not checks["prediction_parity"].passed and "max |served - offline|" in checks["prediction_parity"].detail
    assert checks["deployed_version"].passed


def test_alias_write_failing_after_the_production_push_rolls_production_back(
        tmp_path: Path, servers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, refs, decisions = setup(tmp_path, servers)
    assert deployment_pipeline(decisions, refs, settings)[0].status == "production"
    production_alias_fails(monkeypatch)
    with pytest.raises(RunFailed) as failed:
        deployment_pipeline([Decision("VHM", "promote", "catboost", 2, 0.6, ("won",))], refs, settings)
    [result] = failed.value.outcome
    assert result.status == "failed" and "No space left on device" in result.reason, result.reason
    assert "production rolled back: it serves catboost v1, as the registry says" in result.reason
    registry = LocalModelRegistry(settings.models.registry_path)
    assert served(servers["production"])["VHM"]["version"] == 1
    assert registry.alias("VHM", "production").version == 1
    assert registry.pending_promotion("VHM") is None


def test_status_shows_and_reconcile_repairs_production_out_of_sync_with_the_registry(
        tmp_path: Path, servers: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with ServerProcess("production", tmp_path / "production", TOKEN) as production:
        settings, refs, decisions = setup(tmp_path, {**servers, "production": production.url})
        cli_env(monkeypatch, settings)
        registry, cfg = LocalModelRegistry(settings.models.registry_path), settings.deployment
        assert deployment_pipeline(decisions, refs, settings)[0].status == "production"
        capsys.readouterr()
        assert main(["status"]) == 0

        # A crash after the production push, before the alias update: the intent is all that is left.
        package = package_champion.fn(Decision("VHM", "promote", "catboost", 2, 0.6, ("won",)), refs["VHM"],
                                      LocalModelRegistry(settings.models.registry_path), cfg.packages_path)
        begin_promotion.fn(package, LocalModelRegistry(settings.models.registry_path))
        push.fn(package, production.url, cfg)
        assert main(["status"]) == 1
        err = capsys.readouterr().err
        assert ("VHM: production serves catboost v2, registry alias says catboost v1; pending promotion to "
                "catboost v2 since") in err and "reconcile" in err
        assert main(["reconcile"]) == 0
        [line] = capsys.readouterr().out.splitlines()
        assert line.startswith("VHM: rolled production back from catboost v2 to catboost v1"), line
        assert served(production.url)["VHM"]["version"] == 1 and registry.alias("VHM", "production").version == 1
        assert registry.pending_promotion("VHM") is None and main(["status"]) == 0

        # An operator's rollback whose alias write fails: no intent, so the registry follows the server.
        push.fn(package, production.url, cfg)
        registry.set_alias("VHM", "production", "catboost", 2)
        with monkeypatch.context() as patch:
            production_alias_fails(patch)
            assert main(["rollback", "--symbol", "VHM"]) == 2
        assert "reconcile" in capsys.readouterr().err
        assert main(["status"]) == 1
        assert "VHM: production serves catboost v1, registry alias says catboost v2" in capsys.readouterr().err
        assert main(["reconcile"]) == 0
        assert capsys.readouterr().out.strip() == ("VHM: moved the registry alias from catboost v2 to catboost v1, "
                                                   "which production serves; production and registry agree on "
                                                   "catboost v1")
        assert registry.alias("VHM", "production").version == 1 and main(["status"]) == 0

        # The registry names a production model the server does not have: reconcile says so and fails.
        registry.register(registry.load("catboost", "VHM", 1)[0], "FPT", metrics={}, data_hash="x",
                          code_version="t", duration_seconds=0.1)
        registry.set_alias("FPT", "production", "catboost", 1)
        capsys.readouterr()
        assert main(["reconcile"]) == 1
        assert "FPT: production serves nothing but the registry alias names catboost v1" in capsys.readouterr().err


def test_latency_is_timed_on_held_out_rows(tmp_path: Path, servers: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, refs, decisions = setup(tmp_path, servers)
    cfg = settings.deployment
    package = package_champion.fn(decisions[0], refs["VHM"], LocalModelRegistry(settings.models.registry_path),
                                  cfg.packages_path)
    push.fn(package, cfg.staging_endpoint, cfg)
    bodies: list[dict] = []

    class Recording(httpx.Client):  # the real client, noting each body it sends
        def __init__(self, **kwargs: object) -> None:
            super().__init__(event_hooks={"request": [lambda r: bodies.append(json.loads(r.content))]},
                             **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "Client", Recording)
    checks = {c.name: c for c in deployment_tests.fn(package, refs["VHM"], cfg.staging_endpoint, cfg,
                                                      LocalModelRegistry(settings.models.registry_path))}
    assert len(bodies) == cfg.latency_requests
    test_dates = set(read_split(refs["VHM"], "test")["date"].cast(str))
    assert all(b["rows"] != "latest" and {r["date"] for r in b["rows"]} <= test_dates for b in bodies), bodies[0]
    assert len({r["date"] for b in bodies for r in b["rows"]}) == cfg.latency_requests  # no answer twice
    assert checks["latency_p95"].passed and "held-out row" in checks["latency_p95"].detail


@pytest.mark.parametrize("command", [["rollback", "--symbol", "VHM"], ["predict", "--symbol", "VHM"]])
def test_production_down_is_one_line_naming_the_server(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STOCK_AI_DEPLOYMENT__PRODUCTION_ENDPOINT", url)
    monkeypatch.setenv("STOCK_AI_MODELS__REGISTRY_PATH", str(tmp_path / "registry"))
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert main(command) == 1
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: cannot reach the production server at {url} (ConnectError") and \
        "is the server running?" in line and not captured.out


def test_production_down_from_the_command_line_has_no_traceback(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {"STOCK_AI_DEPLOYMENT__PRODUCTION_ENDPOINT": url, "STOCK_AI_MODELS__REGISTRY_PATH": str(tmp_path / "r"),
           TOKEN_ENV: TOKEN}
    result = subprocess.run([sys.executable, "-m", "flows.deployment_pipeline", "rollback", "--symbol", "VHM"],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2],
                            env={**os.environ, **env})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"cannot reach the production server at {url}" in result.stderr.strip().splitlines()[-1]


def predicted(out: str) -> tuple[str, float, str]:
    """(date, prediction, model and stage) of the one line `predict` prints."""
    [line] = out.splitlines()
    head, _, tail = line.partition(": predicted forward log return ")
    value, _, served_by = tail.partition(" ")
    return head, float(value), served_by


def test_status_and_predict_say_what_each_server_serves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with ServerProcess("staging", tmp_path / "staging", TOKEN) as staging, \
            ServerProcess("production", tmp_path / "production", TOKEN) as production:
        settings, refs, _ = setup(tmp_path, {"staging": staging.url, "production": production.url})
        cli_env(monkeypatch, settings)
        registry, cfg = LocalModelRegistry(settings.models.registry_path), settings.deployment
        assert main(["status"]) == 0
        assert capsys.readouterr().out.splitlines() == [f"staging {staging.url}: up, 0 model(s): ",
                                                        f"production {production.url}: up, 0 model(s): "]
        assert main(["predict", "--symbol", "VHM"]) == 1
        captured = capsys.readouterr()
        assert captured.err.strip() == "production serves no model for VHM (no champion has been deployed for it)"
        assert not captured.out

        # v2 on staging; v1 on production, as the registry says.
        for version, url in ((2, staging.url), (1, production.url)):
            package = package_champion.fn(Decision("VHM", "promote", "catboost", version, 0.5, ("won",)),
                                          refs["VHM"], LocalModelRegistry(settings.models.registry_path),
                                          cfg.packages_path)
            push.fn(package, url, cfg)
        registry.set_alias("VHM", "production", "catboost", 1)
        assert main(["status"]) == 0
        captured = capsys.readouterr()
        assert captured.out.splitlines() == [f"staging {staging.url}: up, 1 model(s): VHM catboost v2",
                                             f"production {production.url}: up, 1 model(s): VHM catboost v1"]
        assert not captured.err

        # The newest row of the deployed feature history, predicted with everything before it as context.
        history = read_split(refs["VHM"], "all")
        newest, context = history.tail(1), history.head(history.height - 1)
        newest_day = newest["date"].cast(pl.String).item()
        offline = {v: float(registry.load("catboost", "VHM", v)[0].predict(newest, context=context)[0])
                   for v in (1, 2)}
        assert abs(offline[1] - offline[2]) > 1e-5  # so the stage asked matters
        for stage, version in (("production", 1), ("staging", 2)):
            assert main(["predict", "--symbol", "VHM", "--stage", stage]) == 0
            day, value, served_by = predicted(capsys.readouterr().out)
            assert day == f"VHM {newest_day}" and served_by == f"(catboost v{version}, {stage})"
            assert value == pytest.approx(offline[version], abs=1e-6)
        assert main(["predict", "--symbol", "VHM"]) == 0
        assert predicted(capsys.readouterr().out)[2] == "(catboost v1, production)"  # production by default

        assert main(["predict", "--symbol", "../x"]) == 2
        assert capsys.readouterr().err.startswith("error: invalid symbol '../x'")

        production.stop()
        assert main(["status"]) == 1
        captured = capsys.readouterr()
        assert captured.out.splitlines() == [f"staging {staging.url}: up, 1 model(s): VHM catboost v2"]
        assert captured.err.strip() == f"production {production.url}: unreachable (ConnectError)"


def test_status_waits_for_the_servers_to_come_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for stage in ("STAGING", "PRODUCTION"):  # one server answers for both stages
        monkeypatch.setenv(f"STOCK_AI_DEPLOYMENT__{stage}_ENDPOINT", url)
    monkeypatch.setenv("STOCK_AI_MODELS__REGISTRY_PATH", str(tmp_path / "registry"))
    monkeypatch.setenv(TOKEN_ENV, TOKEN)

    started = time.monotonic()
    assert main(["status"]) == 1  # no wait: the first refused connection is the answer
    assert capsys.readouterr().err.strip() == f"staging {url}: unreachable (ConnectError)"
    assert main(["status", "--wait", "1"]) == 1
    assert time.monotonic() - started >= 1.0
    assert capsys.readouterr().err.strip() == f"staging {url}: unreachable (ConnectError)"

    server = ServerProcess("staging", tmp_path / "server", TOKEN, port=port)
    late = threading.Timer(1.0, server.start)
    late.start()
    try:
        started = time.monotonic()
        assert main(["status", "--wait", "60"]) == 0
        assert time.monotonic() - started >= 1.0
    finally:
        late.join()
        server.stop()
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"staging {url}: up, 0 model(s): ", f"production {url}: up, 0 model(s): "]
    assert not captured.err


def test_an_empty_token_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "STOCK_AI_MODELS__REGISTRY_PATH": str(tmp_path / "r"), TOKEN_ENV: ""}
    result = subprocess.run([sys.executable, "-m", "flows.deployment_pipeline", "status"], capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).parents[2], env=env)

    assert result.returncode == 2 and not result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith("error: invalid configuration: deployment.token: is empty: set a token")


def test_a_corrupt_pending_promotion_is_one_line(tmp_path: Path, servers: dict, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    pending = tmp_path / "registry" / "aliases" / "VHM.pending.json"
    pending.parent.mkdir(parents=True)
    pending.write_text('{"symbol": "VHM", "model_type": ', encoding="utf-8")
    monkeypatch.setenv("STOCK_AI_MODELS__REGISTRY_PATH", str(tmp_path / "registry"))
    monkeypatch.setenv("STOCK_AI_DEPLOYMENT__PRODUCTION_ENDPOINT", servers["production"])
    monkeypatch.setenv(TOKEN_ENV, TOKEN)

    assert main(["reconcile"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"error: pending promotion file corrupt: {pending} (Invalid JSON: EOF while parsing a value at " \
                   "line 1 column 32)"
