"""Notifications under the local runner (`make dev`): a route's notification recorded by the real dispatcher is
sent to a Slack stand-in on localhost by DeliverNotificationsFunction, polled from NotificationQueue as Lambda's
event source mapping would (observai_local.sqs.QueuePoller, SQS being moto's), and read back over HTTP."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from observai_local.functions import local_overrides
from observai_local.server import start_server
from observai_local.sqs import QueuePoller, configured_sources
from observai_local.template import load_template
from psycopg.rows import dict_row

from tests.helpers.alert_rows import new_board
from tests.helpers.http import client, ok_data
from tests.helpers.moto_queue import QueueAndBucket, queue_and_bucket
from tests.helpers.users import add_membership, make_user
from tests.helpers.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def local_stack(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[tuple[str, QueueAndBucket]]:
    """The runner with NOTIFY_QUEUE_URL set in the shell (moto's queue), and its queue pollers running."""
    for name in ("SPOOL_QUEUE_URL", "EXPORT_QUEUE_URL", "ALERT_TIMER_QUEUE_URL", "WEBHOOK_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NOTIFY_KMS_KEY_ID", raising=False)  # the development key, as `make dev`
    with queue_and_bucket(monkeypatch, "notifications-local") as aws:
        monkeypatch.setenv("NOTIFY_QUEUE_URL", aws.queue_url)
        template = load_template()
        server, base_url = start_server("127.0.0.1", 0, overrides=local_overrides("test", database_url), quiet=True)
        sources = configured_sources(template, os.environ)
        assert [s.function for s, _ in sources] == ["DeliverNotificationsFunction"]
        poller = QueuePoller(server.invoker.invoke, sources, aws.sqs, idle_wait_s=0.05).start()
        try:
            yield base_url, aws
        finally:
            poller.stop()
            server.shutdown()
            server.server_close()


def test_a_route_notification_reaches_a_local_slack_stand_in(
    local_stack: tuple[str, QueueAndBucket], database_url: str
) -> None:
    from observai.alerts.dispatch import flush_group
    from observai.alerts.routing import route_transitions

    base_url, _ = local_stack
    with (
        WebhookReceiver(reply=Reply(200, b"ok")) as slack,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db,
    ):
        # Given a project whose owner creates a Slack contact point on the stand-in over HTTP, and a route naming it
        board = new_board(db, "Local notifications")
        owner = make_user(db)
        add_membership(db, board.org_id, owner.id, "owner")
        with client(base_url, user=owner) as http:
            body = {"name": "local-slack", "kind": "slack", "settings": {"url": slack.url("/services/local/dev")}}
            ok_data(http.post(f"/v1/projects/{board.project_id}/contact-points", json=body), 201)
        board.put_policy({"route": {"receivers": {"contact_points": ["local-slack"]}}})

        # When an alert fires and the dispatcher sends the group's first notification
        now = datetime.now(UTC) - timedelta(minutes=1)  # its group_wait (30 s) has passed
        board.fire(now, service="checkout")
        route_transitions(now)
        group = board.group(alertname="HighLatency")
        result = flush_group(group["id"], group["next_flush_at"])
        assert result.outcome == "notified"

        # Then the runner's poller hands the wake-up to DeliverNotificationsFunction and the stand-in gets it
        deadline = time.monotonic() + 30
        while not slack.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        (received,) = slack.requests
        message = json.loads(received.body)
        assert message["blocks"][0]["type"] == "header" and "HighLatency" in message["text"]

        # And the incident's notifications say it was sent
        path = f"/v1/projects/{board.project_id}/incidents/{result.incident_id}/notifications"
        with client(base_url, user=owner) as http:
            deadline = time.monotonic() + 10
            items = ok_data(http.get(path))
            while items[0]["status"] != "sent" and time.monotonic() < deadline:
                time.sleep(0.1)
                items = ok_data(http.get(path))
        assert [(i["contact_point_name"], i["channel"], i["event"], i["status"], i["attempts"]) for i in items] == [
            ("local-slack", "slack", "notify", "sent", 1)
        ]
        assert "services/local/dev" not in json.dumps(items)
