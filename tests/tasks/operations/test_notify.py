"""Notifiers against a real loopback HTTP server, and the notify task in and outside a flow."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from settings import MonitoringSettings
from tasks.operations.monitor import Anomaly
from tasks.operations.notify import LogNotifier, WebhookNotifier, format_alerts, notifiers, notify

ALERTS = [Anomaly("failed_job", "lstm VHM", "ValueError: nan loss"),
          Anomaly("stale_feed", "VCB", "newest prices are from 2024-05-01")]


@dataclass
class Webhook:
    """A loopback server that records JSON bodies and answers with `status`."""

    url: str
    status: int = 200
    bodies: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            hook.bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_format_alerts() -> None:
    assert format_alerts(ALERTS, "daily retrain") == (
        "daily retrain\n• failed_job lstm VHM: ValueError: nan loss\n"
        "• stale_feed VCB: newest prices are from 2024-05-01")


def test_webhook_posts_slack_text(webhook: Webhook) -> None:
    WebhookNotifier(webhook.url, timeout=5).send(ALERTS, "daily retrain")
    assert webhook.bodies == [{"text": format_alerts(ALERTS, "daily retrain")}]


def test_webhook_posts_nothing_without_alerts(webhook: Webhook) -> None:
    WebhookNotifier(webhook.url, timeout=5).send([], "daily retrain")
    assert webhook.bodies == []


def test_webhook_error_raises(webhook: Webhook) -> None:
    webhook.status = 500
    with pytest.raises(httpx.HTTPStatusError):
        WebhookNotifier(webhook.url, timeout=5).send(ALERTS, "daily retrain")


def test_log_notifier(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tasks.operations.notify"):
        LogNotifier().send(ALERTS, "weekly")
    assert [r.getMessage() for r in caplog.records] == [
        "weekly: failed_job lstm VHM: ValueError: nan loss",
        "weekly: stale_feed VCB: newest prices are from 2024-05-01"]


def test_notify_without_alerts_does_nothing(webhook: Webhook) -> None:
    assert notify.fn([], "daily", notifiers(MonitoringSettings(webhook_url=webhook.url))) == 0
    assert webhook.bodies == []


def test_notify_without_webhook_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tasks.operations.notify"):
        assert notify.fn(ALERTS, "daily", notifiers(MonitoringSettings())) == 2
    assert len([r for r in caplog.records if r.name == "tasks.operations.notify"]) == 2


def test_notify_with_webhook_posts(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tasks.operations.notify"):
        assert notify.fn(ALERTS, "daily", notifiers(MonitoringSettings(webhook_url=webhook.url))) == 2
    assert len([r for r in caplog.records if r.name == "tasks.operations.notify"]) == 2
    assert webhook.bodies == [{"text": format_alerts(ALERTS, "daily")}]


def test_notify_in_a_flow_publishes_the_artifact(prefect_harness: None, webhook: Webhook) -> None:
    @flow
    def alerting() -> int:
        return notify(ALERTS, "weekly evaluation", notifiers(MonitoringSettings(webhook_url=webhook.url)))

    assert alerting() == 2
    assert len(webhook.bodies) == 1
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["alerts"])))
    assert any("lstm VHM" in str(a.data) for a in artifacts)


def test_a_multi_line_error_stays_in_its_row_of_the_alerts_table() -> None:
    from tasks.operations.notify import _markdown

    error = Anomaly("failed_job", "arima VHM", "ModelError: no fit converged:\n(1, 0, 1): maxiter | (1, 0, 0): roots\n")

    table = _markdown([error, ALERTS[1]], "training\nrun 7").splitlines()

    assert table[0] == "# training / run 7"
    rows = [line for line in table if line.startswith("| ") and "---" not in line][1:]
    assert rows == ["| failed\\_job | arima VHM | ModelError: no fit converged: / (1, 0, 1): maxiter \\| "
                    "(1, 0, 0): roots |",
                    "| stale\\_feed | VCB | newest prices are from 2024-05-01 |"]  # shown literally, not italic
    assert all(row.count(" | ") == 2 for row in rows)  # three cells each: an escaped pipe splits none


def test_credentials_in_an_alert_never_reach_the_webhook_or_the_log(webhook: Webhook,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    leaky = [Anomaly("failed_job", "training x", "load failed: mongodb://admin:hunter2@db:27017/ refused")]
    with caplog.at_level(logging.WARNING, logger="tasks.operations.notify"):
        notify.fn(leaky, "daily", notifiers(MonitoringSettings(webhook_url=webhook.url)))

    sent = json.dumps(webhook.bodies) + caplog.text
    assert "hunter2" not in sent and "mongodb://<credentials hidden>@db:27017/ refused" in sent


def test_a_job_failure_keeps_no_credentials() -> None:
    from schemas import JobFailure

    failure = JobFailure("VHM", "", "load", "ServerSelectionTimeoutError: mongodb://u:hunter2@db/: timed out")
    assert failure.error == "ServerSelectionTimeoutError: mongodb://<credentials hidden>@db/: timed out"
