"""deploy: package champions, push them to a model server, test them there, promote them.

The HTTP side uses httpx; pushes are retried when a server cannot be reached. Nothing here changes the
production alias unless every deployment test on staging passed. A production promotion is recorded as a
pending intent in the registry before the push and cleared once the alias is set; a failure in between
rolls production back, and what cannot be undone stays pending for `reconcile`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.base import Forecaster
from models.pooled import CrossSection
from schemas import FeatureSetRef, JobFailure
from settings import DeploymentSettings
from stores.features import history_before, read_split
from stores.metrics import MetricsHistory
from stores.registry import ModelRegistry, PendingPromotion, RegistryError
from tasks.evaluation.choose import Decision
from tasks.evaluation.evaluate import loaded
from tasks.operations.caching import file_system_error
from tasks.operations.monitor import resource_logged

__all__ = [
    "DeploymentCheck",
    "DeploymentError",
    "DeploymentResult",
    "NothingToRollBackError",
    "PackageRef",
    "ProductionState",
    "auth_headers",
    "begin_promotion",
    "deployment_tests",
    "failed_deployment",
    "package_champion",
    "production_states",
    "promote",
    "push",
    "reconcile",
    "served_models",
    "server_rollback",
    "stage_champions",
    "undo_promotion",
]

Target = tuple[str, int]
"""(model type, version)."""


class DeploymentError(RuntimeError):
    """A server refused or could not take a deployment; the message names the server and the reason."""


class NothingToRollBackError(DeploymentError):
    """The server has no earlier deployment of the symbol (or none at all) to return to."""


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


@dataclass(frozen=True)
class ProductionState:
    """What production serves for a symbol, what the registry's `production` alias says, any pending intent."""

    symbol: str
    served: Target | None
    registry: Target | None
    pending: PendingPromotion | None

    @property
    def agrees(self) -> bool:
        return self.served == self.registry and self.pending is None

    def describe(self) -> str:
        line = f"{self.symbol}: production serves {_label(self.served)}, registry alias says {_label(self.registry)}"
        if self.pending:
            line += (f"; pending promotion to {_label((self.pending.model_type, self.pending.version))} since "
                     f"{self.pending.started_at:%Y-%m-%d %H:%M:%S} UTC" + (f" ({self.pending.error})"
                                                                          if self.pending.error else ""))
        return line


def _label(target: Target | None) -> str:
    return f"{target[0]} v{target[1]}" if target else "nothing"


def auth_headers(cfg: DeploymentSettings) -> dict[str, str]:
    """The bearer token header the model servers require."""
    if cfg.token is None:
        raise DeploymentError("deployment.token is not set: set STOCK_AI_DEPLOYMENT__TOKEN for the pipeline "
                              "and the model servers")
    return {"Authorization": f"Bearer {cfg.token.get_secret_value()}"}


def _retry_unreachable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a push only when the server could not be reached; a refusal will not change."""
    return isinstance(state.result(raise_on_failure=False), (httpx.ConnectError, httpx.TimeoutException))


@task(name="stage-champions", cache_policy=NO_CACHE,
      retry_condition_fn=file_system_error)  # retries: execution.io_retries, set by the training flow
@resource_logged
def stage_champions(decisions: list[Decision], registry: ModelRegistry) -> list[Decision]:
    """Point each promoted symbol's `staging` alias at its new champion; return the promotions. Retried on file
    errors that may heal only: setting an alias again is harmless, a missing version or a read-only registry
    will not change."""
    promoted = [d for d in decisions if d.action == "promote" and d.model_type and d.version]
    for decision in promoted:
        registry.set_alias(decision.symbol, "staging", decision.model_type, decision.version)  # type: ignore[arg-type]
    return promoted


@task(name="package", task_run_name="package-{decision.symbol}", cache_policy=NO_CACHE)
@resource_logged
def package_champion(decision: Decision, ref: FeatureSetRef, registry: ModelRegistry,
                     packages_path: Path, cross_section: CrossSection | None = None) -> PackageRef:
    """Build the deployment archive of a champion: its registry files and the symbol's feature history (and a
    cross-sectional pooled model's statistics of dates after its training, `cross_section`)."""
    from serving.package import build_package

    assert decision.model_type is not None and decision.version is not None
    entry = registry.get(decision.model_type, decision.symbol, decision.version)
    packages_path.mkdir(parents=True, exist_ok=True)
    out = packages_path / f"{decision.symbol}-{decision.model_type}-v{decision.version}.tar.gz"
    history = read_split(ref, "all")
    build_package(entry.path, history, symbol=decision.symbol, model_type=decision.model_type,
                  version=decision.version, data_hash=entry.metadata.data_hash, out=out,
                  cross_section=None if cross_section is None else cross_section.stats)
    return PackageRef(decision.symbol, decision.model_type, decision.version, entry.metadata.data_hash, out)


@task(name="push", task_run_name="push-{package.symbol}", cache_policy=NO_CACHE,
      retry_condition_fn=_retry_unreachable)  # retries: deployment.retries, set by the deployment pipeline
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


def _parity(package: PackageRef, model: Forecaster, ref: FeatureSetRef, endpoint: str,
            cfg: DeploymentSettings) -> DeploymentCheck:
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


def _latency(symbol: str, ref: FeatureSetRef, features: tuple[str, ...], endpoint: str,
             cfg: DeploymentSettings) -> DeploymentCheck:
    """p95 of /v1/predict, each request one held-out test row (cycling): "latest" is computed at load time."""
    test = read_split(ref, "test")
    rows = test.select("date", *features).with_columns(test["date"].cast(str)).to_dicts()
    timings = []
    with httpx.Client(timeout=cfg.timeout_seconds) as client:
        for i in range(cfg.latency_requests):
            started = time.perf_counter()
            response = client.post(f"{endpoint}/v1/predict", json={"symbol": symbol, "rows": [rows[i % len(rows)]]})
            timings.append(1000 * (time.perf_counter() - started))
            if response.status_code != 200:
                return _check("latency_p95", False, f"HTTP {response.status_code} during the latency test: "
                                                    f"{response.text[:200]}")
    p95 = float(np.percentile(timings, 95))
    return _check("latency_p95", p95 <= cfg.max_p95_ms,
                  f"p95 {p95:.1f} ms over {len(timings)} requests of one held-out row each "
                  f"({min(len(rows), len(timings))} distinct rows; bound {cfg.max_p95_ms:g} ms)")


@task(name="deployment-tests", task_run_name="deployment-tests-{package.symbol}", cache_policy=NO_CACHE)
@resource_logged
def deployment_tests(package: PackageRef, ref: FeatureSetRef, endpoint: str, cfg: DeploymentSettings,
                     registry: ModelRegistry, cross_section: CrossSection | None = None) -> tuple[DeploymentCheck, ...]:
    """Health, deployed version, prediction parity, p95 latency and bad-symbol handling on a server."""
    checks = []
    try:
        health = httpx.get(f"{endpoint}/health", timeout=cfg.timeout_seconds)
        checks.append(_check("health", health.status_code == 200, f"HTTP {health.status_code}"))
        listed = httpx.get(f"{endpoint}/v1/models", timeout=cfg.timeout_seconds).json()["models"].get(package.symbol)
        expected = {"model_type": package.model_type, "version": package.version, "data_hash": package.data_hash}
        actual = {k: (listed or {}).get(k) for k in expected}
        checks.append(_check("deployed_version", actual == expected, f"server has {actual}, package {expected}"))
        model = loaded(registry, package.model_type, package.symbol, package.version, 1, cross_section)
        checks.append(_parity(package, model, ref, endpoint, cfg))
        checks.append(_latency(package.symbol, ref, model.features, endpoint, cfg))
        bad = httpx.post(f"{endpoint}/v1/predict", json={"symbol": "NOSUCHSYMBOL", "rows": "latest"},
                         timeout=cfg.timeout_seconds)
        checks.append(_check("unknown_symbol", bad.status_code == 404, f"HTTP {bad.status_code} (expected 404)"))
    except httpx.HTTPError as exc:
        checks.append(_check("reachable", False, f"{endpoint}: {type(exc).__name__}: {exc}"))
    return tuple(checks)


def served_models(endpoint: str, cfg: DeploymentSettings) -> dict[str, Target]:
    """What a server serves: symbol -> (model type, version)."""
    response = httpx.get(f"{endpoint}/v1/models", timeout=cfg.timeout_seconds)
    response.raise_for_status()
    return {s: (m["model_type"], int(m["version"])) for s, m in response.json()["models"].items()}


def server_rollback(endpoint: str, symbol: str, cfg: DeploymentSettings) -> Target:
    """Make a server serve the symbol's previous deployment again; return what it serves now."""
    response = httpx.post(f"{endpoint}/v1/rollback/{symbol}", headers=auth_headers(cfg), timeout=cfg.timeout_seconds)
    if response.status_code != 200:
        error = NothingToRollBackError if response.status_code in (404, 409) else DeploymentError
        raise error(f"{endpoint} could not roll back {symbol}: HTTP {response.status_code} {response.text}")
    restored = response.json()
    return restored["model_type"], int(restored["version"])


def _production_alias(registry: ModelRegistry, symbol: str) -> Target | None:
    entry = registry.alias(symbol, "production")
    return (entry.model_type, entry.version) if entry else None


@task(name="begin-promotion", task_run_name="begin-promotion-{package.symbol}", cache_policy=NO_CACHE)
def begin_promotion(package: PackageRef, registry: ModelRegistry) -> None:
    """Record, before production is touched, that `package` is about to become the production model."""
    registry.begin_promotion(PendingPromotion(
        symbol=package.symbol, model_type=package.model_type, version=package.version,
        previous=_production_alias(registry, package.symbol), started_at=datetime.now(UTC)))


@task(name="promote", task_run_name="promote-{package.symbol}", cache_policy=NO_CACHE)
@resource_logged
def promote(package: PackageRef, registry: ModelRegistry, composite: float | None, history_path: Path) -> None:
    """Point the registry's `production` alias at a package production now serves, and record its score.

    The composite recorded here is the reference the weekly evaluation measures degradation against.
    """
    registry.set_alias(package.symbol, "production", package.model_type, package.version)
    registry.end_promotion(package.symbol)
    if composite is not None:
        MetricsHistory(history_path).record_score(package.symbol, package.model_type, package.version, composite,
                                                  datetime.now(UTC).date(), "deployment")


@task(name="undo-promotion", task_run_name="undo-promotion-{package.symbol}", cache_policy=NO_CACHE)
def undo_promotion(package: PackageRef, cfg: DeploymentSettings, registry: ModelRegistry) -> str:
    """After a failed promotion, roll production back to what the registry names; one line on the outcome.

    Clears the pending intent once production and registry agree; otherwise marks it with the reason.
    """
    target = (package.model_type, package.version)
    try:
        wanted = _production_alias(registry, package.symbol)
        served = served_models(cfg.production_endpoint, cfg).get(package.symbol)
        note = "the promotion itself completed" if wanted == target else "production untouched"
        if served == target and wanted != target:
            served, note = server_rollback(cfg.production_endpoint, package.symbol, cfg), "production rolled back"
        if served == wanted:
            registry.end_promotion(package.symbol)
            return f"{note}: it serves {_label(served)}, as the registry says"
        reason = f"production serves {_label(served)}, registry alias says {_label(wanted)}"
    except (DeploymentError, RegistryError, httpx.HTTPError, OSError) as exc:
        reason = f"could not roll production back: {exc}"
    try:
        intent = registry.pending_promotion(package.symbol)
        if intent is not None:
            registry.begin_promotion(intent.model_copy(update={"error": reason}))
    except (RegistryError, OSError):
        pass  # the unmarked intent stays: reconcile reads it all the same
    return f"{reason}; run `python -m flows.deployment_pipeline reconcile`"


def production_states(served: dict[str, Target], registry: ModelRegistry) -> list[ProductionState]:
    """For every symbol production serves, the registry aliases or a promotion is pending for: its state."""
    symbols = sorted({*served, *registry.aliased_symbols("production"), *registry.pending_symbols()})
    return [ProductionState(s, served.get(s), _production_alias(registry, s), registry.pending_promotion(s))
            for s in symbols]


def reconcile(state: ProductionState, cfg: DeploymentSettings, registry: ModelRegistry) -> str:
    """Make production and the registry agree on a symbol; one line saying what was done.

    An unfinished promotion whose model production serves is rolled back on the server; otherwise the
    registry follows the server (whatever production serves passed the staging tests to get there).

    Raises:
        DeploymentError: production serves nothing the registry can name, or nothing at all.
    """
    served, done = state.served, []
    intent = state.pending
    if intent and served == (intent.model_type, intent.version) and served != state.registry:
        try:
            served = server_rollback(cfg.production_endpoint, state.symbol, cfg)
            done.append(f"rolled production back from {_label(state.served)} to {_label(served)} "
                        f"(the promotion was not finished)")
        except NothingToRollBackError:
            pass  # the registry follows the server below
    if served != state.registry:
        if served is None:
            raise DeploymentError(f"{state.symbol}: production serves nothing but the registry alias names "
                                  f"{_label(state.registry)}: deploy it again")
        try:
            registry.set_alias(state.symbol, "production", *served)
        except (RegistryError, OSError) as exc:
            raise DeploymentError(f"{state.symbol}: cannot point the registry at {_label(served)}: {exc}") from None
        done.append(f"moved the registry alias from {_label(state.registry)} to {_label(served)}, "
                    f"which production serves")
    if intent:
        registry.end_promotion(state.symbol)
        done.append(f"cleared the pending promotion to {_label((intent.model_type, intent.version))}")
    return f"{state.symbol}: " + "; ".join(done) + f"; production and registry agree on {_label(served)}"


@dataclass(frozen=True)
class DeploymentResult:
    """What happened to one champion."""

    symbol: str
    model_type: str
    version: int
    status: str
    """"production" (deployed and promoted) or "failed" (production untouched)."""
    reason: str = ""
    checks: tuple[DeploymentCheck, ...] = field(default_factory=tuple)

    @property
    def failure(self) -> JobFailure | None:
        """The failed job this deployment was, or None when it reached production."""
        return JobFailure(self.symbol, self.model_type, "deploy", self.reason) if self.status == "failed" else None


def failed_deployment(decision: Decision, reason: str, checks: tuple[DeploymentCheck, ...] = ()) -> DeploymentResult:
    """A champion whose deployment failed for `reason`: production untouched."""
    return DeploymentResult(decision.symbol, str(decision.model_type), int(decision.version or 0), "failed",
                            reason, checks)
