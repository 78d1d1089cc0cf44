"""The deployment pipeline against real model servers (staging and production) on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flows.deployment_pipeline import deployment_pipeline, rollback
from schemas import JobFailure, RunFailed
from serving import ServerProcess, free_port
from settings import Settings, load_settings
from stores.metrics import MetricsHistory
from stores.registry import LocalModelRegistry
from tasks.choose import Decision
from tasks.deploy import deployment_tests, package_champion, push
from tests.models.test_contract import FEATURES, ar1_frame, parts
from tests.tasks.test_train import write_feature_set

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
    package = package_champion.fn(decisions[0], refs["VHM"], settings.models.registry_path,
                                  settings.deployment.packages_path)
    # The archive claims v1 but carries v2's model: the served predictions differ from v1's offline ones.
    registry = LocalModelRegistry(settings.models.registry_path)
    from serving.package import build_package
    from stores.features import read_split

    build_package(registry.get("catboost", "VHM", 2).path, read_split(refs["VHM"], "all"), symbol="VHM",
                  model_type="catboost", version=1, data_hash=package.data_hash, out=package.path)
    push.fn(package, settings.deployment.staging_endpoint, settings.deployment)
    checks = {c.name: c for c in deployment_tests.fn(package, refs["VHM"], settings.deployment.staging_endpoint,
                                                      settings.deployment, settings.models.registry_path)}
    assert not checks["prediction_parity"].passed and "max |served - offline|" in checks["prediction_parity"].detail
    assert checks["deployed_version"].passed
