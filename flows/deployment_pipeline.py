"""Flow `deployment-pipeline`: package champions -> staging -> deployment tests -> production.

CLI:
  python -m flows.deployment_pipeline rollback --symbol VHM     restore the previous production model
  python -m flows.deployment_pipeline predict --symbol VHM      ask a server for the newest prediction
  python -m flows.deployment_pipeline status [--wait SECONDS]   health and models of both servers; exit 1 when
                                                                production and the registry alias disagree
  python -m flows.deployment_pipeline reconcile                 make production and the registry agree again
"""

from __future__ import annotations

import argparse
import sys

from flows.cli import deployment_parser, one_line, print_traceback

if __name__ == "__main__":
    deployment_parser().parse_args()  # answer --help and usage errors before the slow imports below

import time
from typing import Any

import httpx
from prefect import flow

from models.pooled import is_pooled
from schemas import FeatureSetRef, RunFailed, failed_jobs_message, validate_symbol
from settings import ConfigError, Settings, load_settings
from stores.factory import open_feature_store, open_registry
from stores.registry import RegistryError
from tasks.delivery.deploy import (
    DeploymentError,
    DeploymentResult,
    begin_promotion,
    deployment_tests,
    failed_deployment,
    package_champion,
    production_states,
    promote,
    push,
    reconcile,
    served_models,
    server_rollback,
    undo_promotion,
)
from tasks.evaluation.choose import Decision
from tasks.evaluation.pooled import cross_section_updates

__all__ = ["DeploymentResult", "deployment_pipeline", "main", "rollback"]

STAGES = ("staging", "production")


@flow(name="deployment-pipeline", log_prints=True)
def deployment_pipeline(decisions: list[Decision], refs: dict[str, FeatureSetRef],
                        settings: Settings) -> list[DeploymentResult]:
    """Deploy every promoted champion; a failure leaves that symbol's production model as it was.

    Ends Failed (RunFailed carrying every result) when any deployment failed, after the others finished.
    """
    cfg, registry = settings.deployment, open_registry(settings.models)
    send = push.with_options(retries=cfg.retries, retry_delay_seconds=[3**i for i in range(cfg.retries)])
    results = []
    promoted = [d for d in decisions if d.action == "promote"]
    if not promoted:
        print("nothing to deploy: no champion promoted")
    pooled = [(d.model_type, d.version) for d in promoted if d.model_type and d.version and is_pooled(d.model_type)]
    later = cross_section_updates(pooled, registry, open_feature_store(settings.data)) if pooled else {}
    for decision in promoted:
        cross_section = later.get((decision.model_type, decision.version))  # type: ignore[arg-type]
        package = package_champion(decision, refs[decision.symbol], registry, cfg.packages_path, cross_section)
        try:
            send(package, cfg.staging_endpoint, cfg)
        except (DeploymentError, httpx.HTTPError) as exc:
            results.append(failed_deployment(decision, f"staging push failed: {exc}"))
            continue
        checks = deployment_tests(package, refs[decision.symbol], cfg.staging_endpoint, cfg, registry,
                                  cross_section)
        failing = [c for c in checks if not c.passed]
        if failing:
            results.append(failed_deployment(
                decision, f"deployment test {failing[0].name} failed: {failing[0].detail}", checks))
            continue
        try:
            begin_promotion(package, registry)
        except (RegistryError, OSError) as exc:
            results.append(failed_deployment(
                decision, f"could not record the promotion, production untouched: {exc}", checks))
            continue
        try:
            send(package, cfg.production_endpoint, cfg)
        except (DeploymentError, httpx.HTTPError) as exc:
            undone = undo_promotion(package, cfg, registry)
            results.append(failed_deployment(decision, f"production push failed: {exc}; {undone}", checks))
            continue
        try:
            promote(package, registry, decision.composite, settings.monitoring.history_path)
        except Exception as exc:  # full disk, permissions, a broken history file: production must not drift
            undone = undo_promotion(package, cfg, registry)
            results.append(failed_deployment(
                decision, f"promotion failed after the production push: {exc}; {undone}", checks))
            continue
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
    model_type, version = server_rollback(settings.deployment.production_endpoint, validate_symbol(symbol),
                                          settings.deployment)
    try:
        open_registry(settings.models).set_alias(symbol, "production", model_type, version)
    except (RegistryError, OSError) as exc:
        raise DeploymentError(f"production now serves {symbol} {model_type} v{version} but the registry alias "
                              f"could not follow ({exc}): run `python -m flows.deployment_pipeline reconcile`") from exc
    return {"symbol": symbol, "model_type": model_type, "version": version}


def _endpoint(settings: Settings, stage: str) -> str:
    return settings.deployment.production_endpoint if stage == "production" else settings.deployment.staging_endpoint


def _unreachable(settings: Settings, exc: httpx.TransportError) -> str:
    """One line naming the server a request could not reach."""
    try:
        url = exc.request.url
        base = f"{url.scheme}://{url.netloc.decode()}"
    except RuntimeError:  # an error raised without its request
        base = "a model server"
    stage = next((s for s in STAGES if _endpoint(settings, s).rstrip("/") == base), "model")
    return (f"cannot reach the {stage} server at {base} ({type(exc).__name__}: {exc}): is the server running? "
            f"(`python -m flows.deployment_pipeline status` shows both servers)")


def _status(settings: Settings, wait: float) -> int:
    deadline = time.monotonic() + wait
    served = {}
    for stage in STAGES:
        url = _endpoint(settings, stage)
        while True:
            try:
                served[stage] = served_models(url, settings.deployment)
                print(f"{stage} {url}: up, {len(served[stage])} model(s): "
                      + ", ".join(f"{s} {t} v{v}" for s, (t, v) in sorted(served[stage].items())))
                break
            except httpx.HTTPError as exc:
                if time.monotonic() >= deadline:
                    print(f"{stage} {url}: unreachable ({type(exc).__name__})", file=sys.stderr)
                    return 1
                time.sleep(0.5)
    drift = [s for s in production_states(served["production"], open_registry(settings.models)) if not s.agrees]
    for state in drift:
        print(f"out of sync: {state.describe()}", file=sys.stderr)
    if drift:
        print("run `python -m flows.deployment_pipeline reconcile` to make them agree", file=sys.stderr)
    return 1 if drift else 0


def _reconcile(settings: Settings) -> int:
    cfg = settings.deployment
    registry = open_registry(settings.models)
    states = production_states(served_models(cfg.production_endpoint, cfg), registry)
    failed = 0
    for state in (s for s in states if not s.agrees):
        try:
            print(reconcile(state, cfg, registry))
        except DeploymentError as exc:
            print(f"cannot reconcile {exc}", file=sys.stderr)
            failed += 1
    if all(s.agrees for s in states):
        print(f"production and registry agree on {len(states)} symbol(s): nothing to do")
    return 1 if failed else 0


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
    except ConfigError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        if args.command == "rollback":
            restored = rollback(args.symbol, settings)
            print(f"{args.symbol}: production restored to {restored['model_type']} v{restored['version']}")
            return 0
        if args.command == "predict":
            return _predict(settings, args.symbol, args.stage)
        if args.command == "reconcile":
            return _reconcile(settings)
        return _status(settings, args.wait)
    except (ValueError, DeploymentError, RegistryError) as exc:
        if args.debug:
            print_traceback()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except httpx.TransportError as exc:
        print(f"error: {one_line(_unreachable(settings, exc))}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.debug:
            print_traceback()
        print(f"{args.command} failed: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
