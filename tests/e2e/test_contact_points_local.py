"""Contact points under the local runner (`make dev`), over real HTTP: the docs' flow against Slack and PagerDuty
stand-ins on localhost, with no AWS account (secrets sealed with the development key), and the secret never shown."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.http import client, error_of, ok_data
from tests.helpers.ingest import make_project
from tests.helpers.users import add_membership, make_user
from tests.helpers.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.e2e

ROUTING_KEY = "e2eRoutingKey0123456789abcdefXYZ"


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WebhookReceiver, WebhookReceiver]]:
    with WebhookReceiver(reply=Reply(200, b"ok")) as slack, WebhookReceiver(reply=Reply(202, b"{}")) as pagerduty:
        monkeypatch.setenv("PAGERDUTY_EVENTS_URL", pagerduty.url("/v2/enqueue"))
        monkeypatch.delenv("NOTIFY_KMS_KEY_ID", raising=False)
        yield slack, pagerduty


def test_create_and_test_contact_points_over_http(
    runner_url: str, database_url: str, stand_ins: tuple[WebhookReceiver, WebhookReceiver]
) -> None:
    slack, pagerduty = stand_ins
    # Given a project with an owner and a viewer
    project = make_project(scopes=("ingest",), label="Contact points e2e")
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        owner, viewer = make_user(db), make_user(db)
        add_membership(db, project.org_id, owner.id, "owner")
        add_membership(db, project.org_id, viewer.id, "viewer")
    base = f"/v1/projects/{project.project_id}/contact-points"
    slack_url = slack.url("/services/local/e2e/SecretPart")

    with client(runner_url, user=owner) as http:
        # When the owner creates a Slack and a PagerDuty contact point and tests both
        made_slack = ok_data(
            http.post(base, json={"name": "team-slack", "kind": "slack", "settings": {"url": slack_url}}), 201
        )
        made_pd = ok_data(
            http.post(base, json={"name": "team-pd", "kind": "pagerduty", "settings": {"routing_key": ROUTING_KEY}}),
            201,
        )
        slack_test = ok_data(http.post(f"{base}/{made_slack['id']}/test"))
        pd_test = ok_data(http.post(f"{base}/{made_pd['id']}/test"))

    # Then the stand-ins got the messages, and the answers came back
    assert slack_test["ok"] is True and slack_test["response_excerpt"] == "ok"
    assert pd_test["ok"] is True and pd_test["status_code"] == 202
    assert json.loads(slack.requests[0].body)["blocks"][0]["type"] == "header"
    assert json.loads(pagerduty.requests[0].body)["routing_key"] == ROUTING_KEY

    # And the viewer reads both, with hints only
    with client(runner_url, user=viewer) as http:
        listed = http.get(base)
        assert {c["name"] for c in ok_data(listed)} == {"team-slack", "team-pd"}
        assert "SecretPart" not in listed.text and ROUTING_KEY not in listed.text
        assert error_of(http.post(f"{base}/{made_slack['id']}/test"), 403)
