"""Flow `deployment-pipeline`: package champions -> staging -> deployment tests -> production.

CLI:
  python -m flows.deployment_pipeline rollback --symbol VHM     restore the previous production model
  python -m flows.deployment_pipeline predict --symbol VHM      ask a server for the newest prediction
  python -m flows.deployment_pipeline status [--wait SECONDS]   health and deployed models of both servers
"""

from __future__ import annotations

import sys

from flows.cli import deployment_parser

if __name__ == "__main__":
    deployment_parser().parse_args()  # answer --help and usage errors before the slow imports below

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prefect import flow

from schemas import FeatureSetRef, JobFailure, RunFailed, failed_jobs_message, validate_symbol
from settings import ConfigError, Settings, load_settings
from stores.registry import LocalModelRegistry
from tasks.choose import Decision
from tasks.deploy import (
    DeploymentCheck,
    DeploymentError,
    auth_headers,
    deployment_tests,
    package_champion,
    promote,
    push,
)

__all__ = ["DeploymentResult", "deployment_pipeline", "main", "rollback"]


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


def _failed(decision: Decision, reason: str, checks: tuple[DeploymentCheck, ...] = ()) -> DeploymentResult:
    return DeploymentResult(decision.symbol, str(decision.model_type), int(decision.version or 0), "failed",
                            reason, checks)


@flow(name="deployment-pipeline", log_prints=True)
def deployment_pipeline(decisions: list[Decision], refs: dict[str, FeatureSetRef],
                        settings: Settings) -> list[DeploymentResult]:
    """Deploy every promoted champion; a failure leaves that symbol's production model as it was.

    Ends Failed (RunFailed carrying every result) when any deployment failed, after the others finished.
    """
    cfg, registry_path = settings.deployment, settings.models.registry_path
    send = push.with_options(retries=cfg.retries, retry_delay_seconds=[3**i for i in range(cfg.retries)])
    results = []
    for decision in (d for d in decisions if d.action == "promote"):
        package = package_champion(decision, refs[decision.symbol], registry_path, cfg.packages_path)
        try:
            send(package, cfg.staging_endpoint, cfg)
        except (DeploymentError, httpx.HTTPError) as exc:
            results.append(_failed(decision, f"staging push failed: {exc}"))
            continue
        checks = deployment_tests(package, refs[decision.symbol], cfg.staging_endpoint, cfg, registry_path)
        failing = [c for c in checks if not c.passed]
        if failing:
            results.append(_failed(decision, f"deployment test {failing[0].name} failed: {failing[0].detail}", checks))
            continue
        try:
            send(package, cfg.production_endpoint, cfg)
        except (DeploymentError, httpx.HTTPError) as exc:
            results.append(_failed(decision, f"production push failed: {exc}", checks))
            continue
        promote(package, registry_path, decision.composite, settings.monitoring.history_path)
        results.append(DeploymentResult(decision.symbol, package.model_type, package.version, "production",
                                        "all deployment tests passed on staging", checks))
    for result in results:
        print(f"{result.symbol}: {result.model_type} v{result.version} -> {result.status} ({result.reason})")
    failures = [r.failure for r in results if r.failure]
    if failures:
        raise RunFailed(failed_jobs_message(failures, len(results)), results)
    return results


def rollback(symbol: str, settings: Settings) -> dict[str, Any]:
    """Restore the previous production model on the production server and in the registry alias."""
    cfg = settings.deployment
    response = httpx.post(f"{cfg.production_endpoint}/v1/rollback/{validate_symbol(symbol)}",
                          headers=auth_headers(cfg), timeout=cfg.timeout_seconds)
    if response.status_code != 200:
        raise DeploymentError(f"{cfg.production_endpoint} could not roll back {symbol}: "
                              f"HTTP {response.status_code} {response.text}")
    restored: dict[str, Any] = response.json()
    LocalModelRegistry(settings.models.registry_path).set_alias(
        symbol, "production", restored["model_type"], int(restored["version"]))
    return restored


def _endpoint(settings: Settings, stage: str) -> str:
    return settings.deployment.production_endpoint if stage == "production" else settings.deployment.staging_endpoint


def _status(settings: Settings, wait: float) -> int:
    deadline = time.monotonic() + wait
    for stage in ("staging", "production"):
        url = _endpoint(settings, stage)
        while True:
            try:
                models = httpx.get(f"{url}/v1/models", timeout=5).json()["models"]
                print(f"{stage} {url}: up, {len(models)} model(s): "
                      + ", ".join(f"{s} {m['model_type']} v{m['version']}" for s, m in sorted(models.items())))
                break
            except httpx.HTTPError as exc:
                if time.monotonic() >= deadline:
                    print(f"{stage} {url}: unreachable ({type(exc).__name__})", file=sys.stderr)
                    return 1
                time.sleep(0.5)
    return 0


def _predict(settings: Settings, symbol: str, stage: str) -> int:
    url = _endpoint(settings, stage)
    response = httpx.post(f"{url}/v1/predict", json={"symbol": validate_symbol(symbol), "rows": "latest"},
                          timeout=settings.deployment.timeout_seconds)
    if response.status_code == 404:
        print(f"{stage} serves no model for {symbol} (no champion has been deployed for it)", file=sys.stderr)
        return 1
    response.raise_for_status()
    answer = response.json()
    for row in answer["predictions"]:
        print(f"{symbol} {row['date']}: predicted forward log return {row['prediction']:+.6f} "
              f"({answer['model_type']} v{answer['version']}, {stage})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Deployment commands; exit 2 on bad input or a refused request, 1 when a server has no answer."""
    args: argparse.Namespace = deployment_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command == "rollback":
            restored = rollback(args.symbol, settings)
            print(f"{args.symbol}: production restored to {restored['model_type']} v{restored['version']}")
            return 0
        if args.command == "predict":
            return _predict(settings, args.symbol, args.stage)
        return _status(settings, args.wait)
    except (ConfigError, ValueError, DeploymentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
