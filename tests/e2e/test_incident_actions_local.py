"""Acknowledge from a notification under the local runner, over real HTTP: a signed link's page (GET), its confirm
form posted as a browser does, and a Slack button signed as Slack signs it."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
import psycopg
import pytest
from observai.config import Settings
from observai.notify.links import action_links
from observai.notify.slack_actions import signature
from psycopg.rows import dict_row

from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush
from tests.helpers.ingest import make_project
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.e2e

SLACK_SECRET = "e2e-slack-signing-secret"


def _incident(db: psycopg.Connection[Any]) -> tuple[Any, dict[str, Any]]:
    project = make_project(label="Actions e2e")
    rule = arrange_rule(db, project.org_id, project.project_id)
    at = datetime.now(UTC).replace(microsecond=0)
    alert = arrange_alert(db, rule, at=at, n=uuid.uuid4().hex[:6])
    incident = flush(arrange_group(db, project.org_id, project.project_id), firing=[alert], now=at)
    return project, dict(incident)


def _status(db: psycopg.Connection[Any], incident_id: Any) -> str:
    row = db.execute("select status from public.incidents where id = %s", (incident_id,)).fetchone()
    assert row is not None
    return str(row["status"])


def test_link_page_then_confirm_over_http(runner_url: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        # Given an incident and its links, made for the runner's base URL (the development secret: STAGE=test)
        project, incident = _incident(db)
        member = make_user(db)
        add_membership(db, project.org_id, member.id, "member")
        settings = Settings(stage="test", public_base_url=runner_url)
        links = action_links(
            UUID(str(incident["id"])), UUID(str(project.project_id)), datetime.now(UTC), settings, user_id=member.id
        )
        assert links["incident"] == f"{runner_url}/v1/projects/{project.project_id}/incidents/{incident['id']}"

        with httpx.Client(timeout=10) as http:
            # When the acknowledge link is opened
            page = http.get(links["acknowledge"])
            # Then it is an HTML page with a confirm form, and nothing changed
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert '<form method="post">' in page.text
            assert page.headers["cache-control"] == "no-store"
            assert _status(db, incident["id"]) == "triggered"

            # When the form is posted as a browser posts it
            done = http.post(
                links["acknowledge"], data={}, headers={"content-type": "application/x-www-form-urlencoded"}
            )
            # Then the incident is acknowledged by the member the link was sent to
            assert done.status_code == 200 and "now acknowledged" in done.text
            row = db.execute(
                "select status, acknowledged_by from public.incidents where id = %s", (incident["id"],)
            ).fetchone()
            assert row == {"status": "acknowledged", "acknowledged_by": member.id}

            # And an expired-looking (tampered) link is a 404 page, not a 500
            bad = http.get(links["resolve"][:-3] + "xyz")
            assert bad.status_code == 404 and bad.headers["content-type"].startswith("text/html")


def test_slack_button_over_http(runner_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SLACK_SECRET)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        # Given an incident and a member whose Slack member id is set
        project, incident = _incident(db)
        member = make_user(db)
        add_membership(db, project.org_id, member.id, "member")
        slack_id = f"U{uuid.uuid4().hex[:10].upper()}"
        db.execute(
            "insert into public.member_notification_settings (org_id, user_id, slack_user_id) values (%s, %s, %s)",
            (project.org_id, member.id, slack_id),
        )
        payload = {
            "type": "block_actions",
            "user": {"id": slack_id},
            "team": {"id": "T0E2E"},
            "actions": [{"action_id": "incident_resolve", "value": f"{project.project_id}/{incident['id']}"}],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        ts = str(int(time.time()))
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": signature(SLACK_SECRET, ts, body),
        }
        with httpx.Client(timeout=10) as http:
            # When Slack posts the button press
            answer = http.post(f"{runner_url}/v1/integrations/slack/actions", content=body, headers=headers)
            # Then Slack gets an ephemeral message and the incident is resolved by the member
            assert answer.status_code == 200, answer.text
            assert answer.json()["response_type"] == "ephemeral" and "You resolved" in answer.json()["text"]
            row = db.execute(
                "select status, resolved_by from public.incidents where id = %s", (incident["id"],)
            ).fetchone()
            assert row == {"status": "resolved", "resolved_by": member.id}
            # And a forged press is a 401
            forged = http.post(
                f"{runner_url}/v1/integrations/slack/actions",
                content=body,
                headers={**headers, "x-slack-signature": "v0=" + "0" * 64},
            )
            assert forged.status_code == 401
