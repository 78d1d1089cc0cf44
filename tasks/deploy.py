"""deploy: package champions, push them to a model server, test them there, promote them.

The HTTP side uses httpx; pushes are retried when a server cannot be reached. Nothing here changes the
production alias unless every deployment test on staging passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas import FeatureSetRef
from settings import DeploymentSettings
from stores.features import history_before, read_split
from stores.metrics import MetricsHistory
from stores.registry import LocalModelRegistry
from tasks.choose import Decision
from tasks.monitor import resource_logged

__all__ = [
    "DeploymentCheck",
    "DeploymentError",
    "PackageRef",
    "auth_headers",
    "deployment_tests",
    "package_champion",
    "promote",
    "push",
    "stage_champions",
]


class DeploymentError(RuntimeError):
    """A server refused or could not take a deployment; the message names the server and the reason."""


@dataclass(frozen=True)
class PackageRef:
    """A built deployment package."""

    symbol: str
    model_type: str
    version: int
    data_hash: str
    path: Path


@dataclass(frozen=True)
class DeploymentCheck:
    """One deployment test against a server."""

    name: str
    passed: bool
    detail: str


def auth_headers(cfg: DeploymentSettings) -> dict[str, str]:
    """The bearer token header the model servers require."""
    if cfg.token is None:
        raise DeploymentError("deployment.token is not set: set STOCK_AI_DEPLOYMENT__TOKEN for the pipeline "
                              "and the model servers")
    return {"Authorization": f"Bearer {cfg.token.get_secret_value()}"}


def _retry_unreachable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a push only when the server could not be reached; a refusal will not change."""
    return isinstance(state.result(raise_on_failure=False), (httpx.ConnectError, httpx.TimeoutException))


@task(name="stage-champions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
@resource_logged
def stage_champions(decisions: list[Decision], registry_path: Path) -> list[Decision]:
    """Point each promoted symbol's `staging` alias at its new champion; return the promotions."""
    registry = LocalModelRegistry(registry_path)
    promoted = [d for d in decisions if d.action == "promote" and d.model_type and d.version]
    for decision in promoted:
        registry.set_alias(decision.symbol, "staging", decision.model_type, decision.version)  # type: ignore[arg-type]
    return promoted


@task(name="package", task_run_name="package-{decision.symbol}", cache_policy=NO_CACHE)
@resource_logged
def package_champion(decision: Decision, ref: FeatureSetRef, registry_path: Path, packages_path: Path) -> PackageRef:
    """Build the deployment archive of a champion: its registry files and the symbol's feature history."""
    from serving.package import build_package

    assert decision.model_type is not None and decision.version is not None
    entry = LocalModelRegistry(registry_path).get(decision.model_type, decision.symbol, decision.version)
    packages_path.mkdir(parents=True, exist_ok=True)
    out = packages_path / f"{decision.symbol}-{decision.model_type}-v{decision.version}.tar.gz"
    history = read_split(ref, "all")
    build_package(entry.path, history, symbol=decision.symbol, model_type=decision.model_type,
                  version=decision.version, data_hash=entry.metadata.data_hash, out=out)
    return PackageRef(decision.symbol, decision.model_type, decision.version, entry.metadata.data_hash, out)


@task(name="push", task_run_name="push-{package.symbol}", cache_policy=NO_CACHE, retries=3,
      retry_delay_seconds=[1, 3, 9], retry_condition_fn=_retry_unreachable)
@resource_logged
def push(package: PackageRef, endpoint: str, cfg: DeploymentSettings) -> dict[str, Any]:
    """POST the archive to a server's /v1/deployments; returns its answer."""
    response = httpx.post(f"{endpoint}/v1/deployments", content=package.path.read_bytes(),
                          headers={**auth_headers(cfg), "Content-Type": "application/gzip"},
                          timeout=cfg.timeout_seconds)
    if response.status_code != 201:
        raise DeploymentError(f"{endpoint} refused {package.path.name}: HTTP {response.status_code} {response.text}")
    answer: dict[str, Any] = response.json()
    return answer


def _check(name: str, passed: bool, detail: str) -> DeploymentCheck:
    return DeploymentCheck(name, bool(passed), detail)


def _parity(package: PackageRef, ref: FeatureSetRef, endpoint: str, cfg: DeploymentSettings,
            registry_path: Path) -> DeploymentCheck:
    model, _ = LocalModelRegistry(registry_path).load(package.model_type, package.symbol, package.version)
    test = read_split(ref, "test")
    offline = model.predict(test, context=history_before(ref, test))
    # Labels go along: models that read past labels (ARIMA) use those of earlier rows, as offline.
    rows = test.select("date", *model.features, "label").with_columns(test["date"].cast(str)).to_dicts()
    response = httpx.post(f"{endpoint}/v1/predict", json={"symbol": package.symbol, "rows": rows},
                          timeout=cfg.timeout_seconds)
    if response.status_code != 200:
        return _check("prediction_parity", False, f"HTTP {response.status_code}: {response.text[:200]}")
    served = np.array([p["prediction"] for p in response.json()["predictions"]], dtype=np.float64)
    if served.shape != offline.shape:
        return _check("prediction_parity", False, f"{served.shape[0]} predictions for {offline.shape[0]} rows")
    gap = float(np.max(np.abs(served - offline)))
    return _check("prediction_parity", gap <= cfg.parity_tolerance,
                  f"max |served - offline| = {gap:.3g} over {test.height} held-out rows "
                  f"(tolerance {cfg.parity_tolerance:g})")


def _latency(symbol: str, endpoint: str, cfg: DeploymentSettings) -> DeploymentCheck:
    timings = []
    with httpx.Client(timeout=cfg.timeout_seconds) as client:
        for _ in range(cfg.latency_requests):
            started = time.perf_counter()
            response = client.post(f"{endpoint}/v1/predict", json={"symbol": symbol, "rows": "latest"})
            timings.append(1000 * (time.perf_counter() - started))
            if response.status_code != 200:
                return _check("latency_p95", False, f"HTTP {response.status_code} during the latency test")
    p95 = float(np.percentile(timings, 95))
    return _check("latency_p95", p95 <= cfg.max_p95_ms,
                  f"p95 {p95:.1f} ms over {len(timings)} requests (bound {cfg.max_p95_ms:g} ms)")


@task(name="deployment-tests", task_run_name="deployment-tests-{package.symbol}", cache_policy=NO_CACHE)
@resource_logged
def deployment_tests(package: PackageRef, ref: FeatureSetRef, endpoint: str, cfg: DeploymentSettings,
                     registry_path: Path) -> tuple[DeploymentCheck, ...]:
    """Health, deployed version, prediction parity, p95 latency and bad-symbol handling on a server."""
    checks = []
    try:
        health = httpx.get(f"{endpoint}/health", timeout=cfg.timeout_seconds)
        checks.append(_check("health", health.status_code == 200, f"HTTP {health.status_code}"))
        listed = httpx.get(f"{endpoint}/v1/models", timeout=cfg.timeout_seconds).json()["models"].get(package.symbol)
        expected = {"model_type": package.model_type, "version": package.version, "data_hash": package.data_hash}
        actual = {k: (listed or {}).get(k) for k in expected}
        checks.append(_check("deployed_version", actual == expected, f"server has {actual}, package {expected}"))
        checks.append(_parity(package, ref, endpoint, cfg, registry_path))
        checks.append(_latency(package.symbol, endpoint, cfg))
        bad = httpx.post(f"{endpoint}/v1/predict", json={"symbol": "NOSUCHSYMBOL", "rows": "latest"},
                         timeout=cfg.timeout_seconds)
        checks.append(_check("unknown_symbol", bad.status_code == 404, f"HTTP {bad.status_code} (expected 404)"))
    except httpx.HTTPError as exc:
        checks.append(_check("reachable", False, f"{endpoint}: {type(exc).__name__}: {exc}"))
    return tuple(checks)


@task(name="promote", task_run_name="promote-{package.symbol}", cache_policy=NO_CACHE)
@resource_logged
def promote(package: PackageRef, registry_path: Path, composite: float | None, history_path: Path) -> None:
    """Point the registry's `production` alias at a package production now serves, and record its score.

    The composite recorded here is the reference the weekly evaluation measures degradation against.
    """
    LocalModelRegistry(registry_path).set_alias(package.symbol, "production", package.model_type, package.version)
    if composite is not None:
        MetricsHistory(history_path).record_score(package.symbol, package.model_type, package.version, composite,
                                                  datetime.now(UTC).date(), "deployment")
