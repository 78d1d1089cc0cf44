"""deploy: act on champion decisions in the registry (the `staging` alias marks models to deploy)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from stores.registry import LocalModelRegistry
from tasks.choose import Decision

__all__ = ["stage_champions"]


@task(name="stage-champions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def stage_champions(decisions: list[Decision], registry_path: Path) -> list[Decision]:
    """Point each promoted symbol's `staging` alias at its new champion; return the promotions."""
    registry = LocalModelRegistry(registry_path)
    promoted = [d for d in decisions if d.action == "promote" and d.model_type and d.version]
    for decision in promoted:
        registry.set_alias(decision.symbol, "staging", decision.model_type, decision.version)  # type: ignore[arg-type]
    return promoted
