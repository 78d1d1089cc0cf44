"""notify: deliver anomalies to the log, a Prefect artifact and, when configured, a chat webhook."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import httpx
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError

from schemas import redact_credentials
from settings import MonitoringSettings
from tasks.delivery.markdown import cell, inline
from tasks.operations.monitor import Anomaly, resource_logged

__all__ = ["LogNotifier", "Notifier", "WebhookNotifier", "format_alerts", "notifiers", "notify"]

_log = logging.getLogger(__name__)


class Notifier(Protocol):
    """Somewhere alerts go."""

    def send(self, alerts: Sequence[Anomaly], title: str) -> None: ...


def format_alerts(alerts: Sequence[Anomaly], title: str) -> str:
    """Plain text: the title, then one bullet per alert."""
    return "\n".join([title, *(f"• {a.kind} {a.subject}: {a.detail}" for a in alerts)])


class WebhookNotifier:
    """Posts `{"text": ...}` to a Slack-compatible incoming webhook; raises on HTTP errors."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

    def send(self, alerts: Sequence[Anomaly], title: str) -> None:
        """Post the alerts as one message; nothing is posted when there are none."""
        if not alerts:
            return
        response = httpx.post(self.url, json={"text": format_alerts(alerts, title)}, timeout=self.timeout)
        response.raise_for_status()


class LogNotifier:
    """Writes each alert as a warning: to `logger`, else to the logger of the run it is sent from."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None) -> None:
        self.logger = logger

    def send(self, alerts: Sequence[Anomaly], title: str) -> None:
        """Log one line per alert."""
        logger = self.logger or _logger()
        for alert in alerts:
            logger.warning("%s: %s %s: %s", title, alert.kind, alert.subject, alert.detail)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # called as `notify.fn` outside a run
        return _log


def _markdown(alerts: Sequence[Anomaly], title: str) -> str:
    rows = "\n".join(f"| {cell(a.kind)} | {cell(a.subject)} | {cell(a.detail)} |" for a in alerts)
    return f"# {inline(title)}\n\n| kind | subject | detail |\n|---|---|---|\n{rows}\n"


def notifiers(cfg: MonitoringSettings) -> list[Notifier]:
    """Where alerts go, built once from settings: the run's log, and the webhook when one is set."""
    return [LogNotifier(), *([WebhookNotifier(cfg.webhook_url)] if cfg.webhook_url else [])]


@task(name="notify", cache_policy=NO_CACHE)  # flows add retries from execution.io_retries / io_retry_delays
@resource_logged
def notify(alerts: list[Anomaly], title: str, to: list[Notifier]) -> int:
    """Send every alert to each of `to` (see `notifiers`) and publish the "alerts" artifact (inside a run).

    Returns:
        How many alerts were delivered; 0 when there were none (then nothing is published or sent).
    """
    if not alerts:
        return 0
    alerts = [replace(a, subject=redact_credentials(a.subject), detail=redact_credentials(a.detail)) for a in alerts]
    if FlowRunContext.get() or TaskRunContext.get():  # Prefect deprecates artifacts made outside a run
        create_markdown_artifact(_markdown(alerts, title), key="alerts", description=title)
    for notifier in to:
        notifier.send(alerts, title)
    return len(alerts)
