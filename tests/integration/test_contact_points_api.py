"""The contact points API in-process (ContactPointsFunction's handler, real Postgres): CRUD per kind, secrets sealed
and never returned nor logged, validation (422 with the field), names and the per-project limit (409), the test
route against real receivers (Slack and PagerDuty stand-ins on localhost, SES under moto, the webhook engine), a
Slack 410 disabling the contact point and PATCH re-enabling it, the hidden webhook endpoint, who may write and read,
tenant isolation on every route; and each member's notification settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import psycopg
import pytest
from observai.webhooks.delivery import deliver_message
from observai.webhooks.fanout import fan_out
from observai.webhooks.sender import close_connections
from standardwebhooks import Webhook

from tests.helpers.ingest import IngestProject, add_key, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.moto_queue import REGION, queue_and_bucket
from tests.helpers.users import User, add_membership, make_user
from tests.helpers.webhook_receiver import Reply, WebhookReceiver
from tests.helpers.webhook_rows import emit_event, messages

pytestmark = pytest.mark.integration

ROUTING_KEY = "Pd0123456789abcdefABCDEF0123wxyz"
SENDER = "pager@observai.example.test"


@dataclass
class Tenant:
    project: IngestProject
    reader: IngestProject
    admin_key: IngestProject
    owner: User
    admin: User
    member: User
    viewer: User

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project.project_id}/contact-points"

    @property
    def org_path(self) -> str:
        return f"/v1/orgs/{self.project.org_id}/members"


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    project = make_project(scopes=("ingest",), label="Contact points")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        users = {}
        for role in ("owner", "admin", "member", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
    return Tenant(
        project,
        add_key(project, ("read",)),
        add_key(project, ("admin",)),
        users["owner"],
        users["admin"],
        users["member"],
        users["viewer"],
    )


@pytest.fixture(scope="module")
def stranger(database_url: str) -> tuple[User, IngestProject]:
    other = make_project(scopes=("read", "admin"), label="Stranger CP")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
    return owner, other


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_ALLOW_LOOPBACK", "true")
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")


@pytest.fixture
def slack_hook(loopback: None) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(reply=Reply(200, b"ok")) as r:
        yield r
    close_connections()


def call(method: str, path: str, headers: dict[str, str], body: Any = None, query: str = "") -> Result:
    return invoke("contact_points", method, path, headers=headers, json_body=body, query=query)


def create(tenant: Tenant, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = call("POST", tenant.path, headers or tenant.admin.headers, body)
    assert response.status == 201, response.text
    return dict(response.data)


def _unique(prefix: str) -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rows(db: psycopg.Connection[Any], query: str, *params: Any) -> list[dict[str, Any]]:
    return list(db.execute(query, params).fetchall())


# --- CRUD ----------------------------------------------------------------------------------------------------------


def test_slack_crud_round_trip_secret_sealed_and_audited(
    tenant: Tenant, slack_hook: WebhookReceiver, db: psycopg.Connection[Any], captured_logs: Any
) -> None:
    # Given an admin of the project
    url = slack_hook.url("/services/T000/B000/SlackSecretToken9z8Y")
    name = _unique("slack")
    # When they create a Slack contact point
    created = create(tenant, {"name": name, "kind": "slack", "settings": {"url": url}})
    # Then it is saved without showing the URL back: only its last 4 characters
    assert created["kind"] == "slack" and created["name"] == name and created["enabled"] is True
    assert created["settings"] == {} and created["secret_hint"] == "9z8Y"
    assert created["signing_secret"] is None
    path = f"{tenant.path}/{created['id']}"
    # And the database holds it sealed (not the URL)
    (row,) = rows(db, "select secret_sealed, secret_hint from public.contact_points where id = %s", created["id"])
    assert url.encode() not in bytes(row["secret_sealed"]) and row["secret_hint"] == "9z8Y"

    # And a viewer and a read key read it, alone and in the list (kind filter), never the URL
    got = call("GET", path, tenant.viewer.headers)
    assert got.status == 200, got.text
    assert got.data == {k: v for k, v in created.items() if k != "signing_secret"}
    listed = call("GET", tenant.path, tenant.reader.headers, query="kind=slack")
    assert created["id"] in [c["id"] for c in listed.data]
    assert created["id"] not in [
        c["id"] for c in call("GET", tenant.path, tenant.reader.headers, query="kind=email").data
    ]

    # When the admin renames it and replaces the URL
    new_url = slack_hook.url("/services/T000/B000/OtherSecretQrst")
    patched = call("PATCH", path, tenant.admin.headers, {"name": name + "-2", "settings": {"url": new_url}})
    assert patched.status == 200, patched.text
    assert patched.data["name"] == name + "-2" and patched.data["secret_hint"] == "Qrst"

    # And sends a test: the receiver got the new URL's post
    tested = call("POST", f"{path}/test", tenant.admin.headers)
    assert tested.status == 200, tested.text
    assert tested.data["ok"] is True and tested.data["status_code"] == 200 and tested.data["response_excerpt"] == "ok"
    assert slack_hook.requests[-1].path == "/services/T000/B000/OtherSecretQrst"
    body = json.loads(slack_hook.requests[-1].body)
    assert body["blocks"][0]["text"]["text"].startswith("[TEST]")
    # And the test is recorded as a delivery
    (delivery,) = rows(
        db,
        "select channel, event, source, status, attempts, response_code from public.notification_deliveries"
        " where id = %s",
        tested.data["delivery_id"],
    )
    assert delivery == {
        "channel": "slack",
        "event": "test",
        "source": "test",
        "status": "sent",
        "attempts": 1,
        "response_code": 200,
    }

    # When they delete it
    deleted = call("DELETE", path, tenant.admin.headers)
    assert deleted.status == 200, deleted.text
    assert deleted.data == {"id": created["id"], "deleted": True}
    # Then it is gone from every read and write
    assert call("GET", path, tenant.viewer.headers).status == 404
    assert call("PATCH", path, tenant.admin.headers, {"enabled": False}).status == 404
    assert call("POST", f"{path}/test", tenant.admin.headers).status == 404
    assert call("DELETE", path, tenant.admin.headers).status == 404
    (row,) = rows(
        db, "select deleted_at, enabled, secret_sealed from public.contact_points where id = %s", created["id"]
    )
    assert row["deleted_at"] is not None and row["enabled"] is False and row["secret_sealed"] is None

    # And every write is audited by the admin, and no response, audit row or log line holds a secret
    audit = rows(
        db, "select action, actor_id, details from public.audit_log where target_id = %s order by id", created["id"]
    )
    assert [a["action"] for a in audit] == [
        "contact_point.create",
        "contact_point.update",
        "contact_point.test",
        "contact_point.delete",
    ]
    assert {a["actor_id"] for a in audit} == {str(tenant.admin.id)}
    everything = json.dumps([a["details"] for a in audit]) + captured_logs.getvalue()
    everything += created.__repr__() + patched.text + tested.text + got.text + listed.text
    for secret in ("SlackSecretToken9z8Y", "OtherSecretQrst", "/services/T000/B000"):
        assert secret not in everything


def test_hint_is_last_four(tenant: Tenant, loopback: None) -> None:
    created = create(tenant, {"name": _unique("pd"), "kind": "pagerduty", "settings": {"routing_key": ROUTING_KEY}})
    assert created["secret_hint"] == "wxyz"
    assert ROUTING_KEY not in json.dumps(created)


def test_email_and_pagerduty_settings(tenant: Tenant) -> None:
    # Given an e-mail contact point with a repeated address
    email = create(
        tenant,
        {
            "name": _unique("mail"),
            "kind": "email",
            "settings": {"addresses": ["a@example.test", " b@example.test", "A@example.test"]},
        },
    )
    # Then the addresses are kept once each, and there is no secret
    assert email["settings"] == {"addresses": ["a@example.test", "b@example.test"]} and email["secret_hint"] is None
    # And a PagerDuty contact point keeps its severity map in the clear, its routing key sealed
    pd = create(
        tenant,
        {
            "name": _unique("pd"),
            "kind": "pagerduty",
            "settings": {"routing_key": ROUTING_KEY, "severity_map": {"warning": "error"}},
        },
    )
    assert pd["settings"] == {"severity_map": {"warning": "error"}}
    # When only the severity map changes, the routing key stays
    path = f"{tenant.path}/{pd['id']}"
    patched = call("PATCH", path, tenant.admin.headers, {"settings": {"severity_map": {"info": "warning"}}})
    assert patched.status == 200, patched.text
    assert patched.data["settings"] == {"severity_map": {"info": "warning"}} and patched.data["secret_hint"] == "wxyz"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (
            {"name": "ok", "kind": "email", "settings": {"addresses": ["not-an-address"]}},
            ["body", "email", "settings", "addresses", "0"],
        ),
        ({"name": "ok", "kind": "email", "settings": {"addresses": []}}, ["body", "email", "settings", "addresses"]),
        (
            {"name": "ok", "kind": "email", "settings": {"addresses": [f"u{i}@example.test" for i in range(51)]}},
            ["body", "email", "settings", "addresses"],
        ),
        (
            {"name": "ok", "kind": "pagerduty", "settings": {"routing_key": "short"}},
            ["body", "pagerduty", "settings", "routing_key"],
        ),
        (
            {
                "name": "ok",
                "kind": "pagerduty",
                "settings": {"routing_key": ROUTING_KEY, "severity_map": {"bad": "error"}},
            },
            ["body", "pagerduty", "settings", "severity_map", "bad", "[key]"],
        ),
        (
            {"name": "ok", "kind": "slack", "settings": {"url": "ftp://hooks.slack.com/x"}},
            ["body", "slack", "settings", "url"],
        ),
        (
            {"name": "ok", "kind": "webhook", "settings": {"url": "ftp://example.com/x"}},
            ["body", "webhook", "settings", "url"],
        ),
        (
            {"name": "-bad name", "kind": "email", "settings": {"addresses": ["a@example.test"]}},
            ["body", "email", "name"],
        ),
        ({"name": "ok", "kind": "fax", "settings": {}}, ["body"]),
        (
            {"name": "ok", "kind": "email", "settings": {"addresses": ["a@example.test"], "extra": 1}},
            ["body", "email", "settings", "extra"],
        ),
    ],
)
def test_invalid_bodies_are_422_with_the_field(tenant: Tenant, body: dict[str, Any], loc: list[str]) -> None:
    response = call("POST", tenant.path, tenant.admin.headers, body)
    assert response.status == 422, response.text
    locs = [d["loc"] for d in response.error["details"]]
    assert any([str(p) for p in got[: len(loc)]] == loc for got in locs), locs


def test_patch_settings_are_checked_against_the_kind(tenant: Tenant) -> None:
    pd = create(tenant, {"name": _unique("pd"), "kind": "pagerduty", "settings": {"routing_key": ROUTING_KEY}})
    response = call("PATCH", f"{tenant.path}/{pd['id']}", tenant.admin.headers, {"settings": {"routing_key": "x"}})
    assert response.status == 422, response.text
    assert response.error["details"][0]["loc"] == ["body", "settings", "routing_key"]
    response = call("PATCH", f"{tenant.path}/{pd['id']}", tenant.admin.headers, {"settings": {"url": "https://x.test"}})
    assert response.status == 422 and response.error["details"][0]["loc"] == ["body", "settings", "url"]
    assert call("PATCH", f"{tenant.path}/{pd['id']}", tenant.admin.headers, {}).status == 422
    assert call("PATCH", f"{tenant.path}/{pd['id']}", tenant.admin.headers, {"name": None}).status == 422


def test_names_unique_and_fifty_per_project(database_url: str) -> None:
    # Given a project of its own, with an admin key
    project = make_project(scopes=("admin", "read"), label="CP limit")
    path = f"/v1/projects/{project.project_id}/contact-points"

    def body(name: str) -> dict[str, Any]:
        return {"name": name, "kind": "email", "settings": {"addresses": ["a@example.test"]}}

    first = call("POST", path, project.headers, body("team"))
    assert first.status == 201, first.text
    # When the name is taken: 409
    again = call("POST", path, project.headers, body("team"))
    assert again.status == 409 and again.error["code"] == "contact_point_name_taken"
    other = call("POST", path, project.headers, body("team-2"))
    renamed = call("PATCH", f"{path}/{other.data['id']}", project.headers, {"name": "team"})
    assert renamed.status == 409 and renamed.error["code"] == "contact_point_name_taken"
    # But a deleted contact point's name is free again
    assert call("DELETE", f"{path}/{first.data['id']}", project.headers).status == 200
    assert call("POST", path, project.headers, body("team")).status == 201
    # When the project has 50: 409
    for i in range(48):
        assert call("POST", path, project.headers, body(f"cp-{i}")).status == 201
    full = call("POST", path, project.headers, body("one-too-many"))
    assert full.status == 409 and full.error["code"] == "contact_point_limit_reached"
    # And the list pages through all 50, newest first
    page1 = call("GET", path, project.headers, query="limit=30")
    cursor = page1.json()["meta"]["next_cursor"]
    page2 = call("GET", path, project.headers, query=f"limit=30&cursor={cursor}")
    assert len(page1.data) + len(page2.data) == 50 and page2.json()["meta"]["next_cursor"] is None


# --- the test route ----------------------------------------------------------------------------------------------


def test_slack_410_disables_and_patch_reenables(
    tenant: Tenant, slack_hook: WebhookReceiver, db: psycopg.Connection[Any]
) -> None:
    # Given a Slack contact point whose webhook was removed
    created = create(
        tenant, {"name": _unique("gone"), "kind": "slack", "settings": {"url": slack_hook.url("/services/gone")}}
    )
    path = f"{tenant.path}/{created['id']}"
    slack_hook.script(Reply(410, b"channel_is_archived"))
    # When it is tested
    tested = call("POST", f"{path}/test", tenant.admin.headers)
    # Then the answer is returned, and the contact point is disabled with the reason
    assert tested.status == 200, tested.text
    assert tested.data["ok"] is False and tested.data["status_code"] == 410 and tested.data["retryable"] is False
    assert tested.data["response_excerpt"] == "channel_is_archived"
    assert tested.data["disabled_reason"] == "Slack answered 410: the webhook was removed"
    got = call("GET", path, tenant.viewer.headers).data
    assert got["enabled"] is False and got["disabled_reason"] == "Slack answered 410: the webhook was removed"
    assert got["disabled_at"] is not None
    (delivery,) = rows(
        db, "select status, response_code from public.notification_deliveries where id = %s", tested.data["delivery_id"]
    )
    assert delivery == {"status": "failed", "response_code": 410}
    # And the audit trail says the system disabled it, once: a second 410 changes nothing
    from observai.db.connection import transaction
    from observai.notify import contact_points

    with transaction() as cur:
        assert (
            contact_points.disable(cur, created["id"], "Slack answered 410: the webhook was removed", datetime.now(UTC))
            is False
        )
    disabled = rows(
        db,
        "select actor_type, details from public.audit_log where target_id = %s and action = 'contact_point.disable'",
        created["id"],
    )
    assert [(a["actor_type"], a["details"]["reason"]) for a in disabled] == [
        ("system", "Slack answered 410: the webhook was removed")
    ]

    # When the admin re-enables it
    patched = call("PATCH", path, tenant.admin.headers, {"enabled": True})
    assert patched.status == 200, patched.text
    assert (
        patched.data["enabled"] is True
        and patched.data["disabled_reason"] is None
        and patched.data["disabled_at"] is None
    )
    audit = rows(
        db,
        "select details from public.audit_log where target_id = %s and action = 'contact_point.update'",
        created["id"],
    )
    assert audit[-1]["details"]["cleared_disabled_reason"] == "Slack answered 410: the webhook was removed"


def test_pagerduty_test_route(tenant: Tenant, loopback: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver(reply=Reply(202, b'{"status":"success","message":"Event processed"}')) as pd:
        monkeypatch.setenv("PAGERDUTY_EVENTS_URL", pd.url("/v2/enqueue"))
        created = create(tenant, {"name": _unique("pd"), "kind": "pagerduty", "settings": {"routing_key": ROUTING_KEY}})
        tested = call("POST", f"{tenant.path}/{created['id']}/test", tenant.admin.headers)
    close_connections()
    assert tested.status == 200, tested.text
    assert tested.data["ok"] is True and tested.data["status_code"] == 202
    event = json.loads(pd.requests[0].body)
    assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger"
    assert event["dedup_key"] == f"test-{tested.data['delivery_id']}"
    assert event["payload"]["class"] == "test" and event["payload"]["severity"] == "info"
    assert "group" not in event["payload"] and event["payload"]["source"] == "ObservAI Hub"
    assert ROUTING_KEY not in tested.text


def test_email_test_route(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    with queue_and_bucket(monkeypatch, "cp-email"):
        boto3.client("sesv2", region_name=REGION).create_email_identity(EmailIdentity=SENDER)
        monkeypatch.setenv("NOTIFY_EMAIL_SENDER", SENDER)
        created = create(
            tenant, {"name": _unique("mail"), "kind": "email", "settings": {"addresses": ["oncall@example.test"]}}
        )
        tested = call("POST", f"{tenant.path}/{created['id']}/test", tenant.admin.headers)
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        sent = list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)
    assert tested.status == 200, tested.text
    assert tested.data["ok"] is True
    assert sent[-1].destinations["ToAddresses"] == ["oncall@example.test"]
    assert sent[-1].subject == "[TEST] Test notification from ObservAI Hub"


# --- the webhook kind: a hidden endpoint ---------------------------------------------------------------------------


def test_webhook_contact_point_owns_a_hidden_endpoint(
    tenant: Tenant, loopback: None, db: psycopg.Connection[Any]
) -> None:
    # Given a webhook contact point
    with WebhookReceiver() as hook:
        created = create(tenant, {"name": _unique("hook"), "kind": "webhook", "settings": {"url": hook.url("/in")}})
    # Then its signing secret is in the creation's response only
    assert created["signing_secret"].startswith("whsec_")
    assert created["settings"] == {"url": hook.url("/in")}
    got = call("GET", f"{tenant.path}/{created['id']}", tenant.viewer.headers)
    assert "signing_secret" not in got.data and created["signing_secret"] not in got.text
    (cp,) = rows(db, "select webhook_endpoint_id from public.contact_points where id = %s", created["id"])
    endpoint_id = cp["webhook_endpoint_id"]
    (endpoint,) = rows(db, "select contact_point_owned, url from public.webhook_endpoints where id = %s", endpoint_id)
    assert endpoint == {"contact_point_owned": True, "url": hook.url("/in")}

    # And the webhooks API does not show it: not listed, and 404 on every route of its own
    hooks_path = f"/v1/projects/{tenant.project.project_id}/webhooks"
    listed = invoke("webhooks", "GET", hooks_path, headers=tenant.admin.headers)
    assert str(endpoint_id) not in [e["id"] for e in listed.data]
    one = f"{hooks_path}/{endpoint_id}"
    assert invoke("webhooks", "GET", one, headers=tenant.admin.headers).status == 404
    assert invoke("webhooks", "PATCH", one, headers=tenant.admin.headers, json_body={"enabled": False}).status == 404
    assert invoke("webhooks", "POST", f"{one}/test", headers=tenant.admin.headers).status == 404
    assert invoke("webhooks", "POST", f"{one}/rotate-secret", headers=tenant.admin.headers).status == 404
    assert invoke("webhooks", "GET", f"{one}/deliveries", headers=tenant.admin.headers).status == 404
    assert invoke("webhooks", "DELETE", one, headers=tenant.admin.headers).status == 404

    # And the outbox fan-out does not subscribe it to the project's events
    db.execute("update public.outbox_events set dispatched_at = now() where dispatched_at is null")
    emit_event(
        tenant.project.org_id, tenant.project.project_id, "incident.triggered", {"incident_id": "x"}, datetime.now(UTC)
    )
    fan_out(datetime.now(UTC))
    assert messages(db, endpoint_id=endpoint_id) == []

    # When the contact point is tested, the message goes to the engine for its endpoint
    tested = call("POST", f"{tenant.path}/{created['id']}/test", tenant.admin.headers)
    assert tested.status == 200 and tested.data["ok"] is True, tested.text
    (message,) = messages(db, endpoint_id=endpoint_id)
    assert str(message["event_id"]) == tested.data["delivery_id"] and message["event_type"] == "notification.test"

    # And the webhook engine delivers it, signed with the secret shown at creation
    with WebhookReceiver(reply=Reply(200, b"thanks")) as receiver:
        db.execute("update public.webhook_endpoints set url = %s where id = %s", (receiver.url("/in"), endpoint_id))
        outcome = deliver_message(message["id"], datetime.now(UTC))
    close_connections()
    assert outcome.outcome == "succeeded", outcome
    (received,) = receiver.requests
    payload = Webhook(created["signing_secret"]).verify(received.body, received.headers)
    assert payload["type"] == "notification.test" and received.headers["webhook-id"] == tested.data["delivery_id"]

    # And a retried message of the hidden endpoint cannot be replayed through the webhooks API
    retried = invoke("webhooks", "POST", f"{hooks_path}/deliveries/{message['id']}/retry", headers=tenant.admin.headers)
    assert retried.status == 404, retried.text

    # When the engine disables the endpoint (its receiver answered 410), a test disables the contact point too
    db.execute(
        "update public.webhook_endpoints set enabled = false, disabled_reason = '410 Gone from the receiver',"
        " disabled_at = now() where id = %s",
        (endpoint_id,),
    )
    tested = call("POST", f"{tenant.path}/{created['id']}/test", tenant.admin.headers)
    assert tested.data["ok"] is False and "410 Gone" in tested.data["disabled_reason"]
    assert call("GET", f"{tenant.path}/{created['id']}", tenant.viewer.headers).data["enabled"] is False
    # And the engine's notice to the admins points at the contact point, not at the webhooks API
    from observai.db.connection import transaction
    from observai.webhooks.notices import disabled_notice

    with transaction() as cur:
        notice = disabled_notice(cur, tenant.project.org_id, tenant.project.project_id, endpoint_id, datetime.now(UTC))
    assert notice.subject.startswith(f"Webhook contact point {created['name']} disabled")
    assert f"/contact-points/{created['id']}" in notice.text and "/webhooks/" not in notice.text

    # And PATCH enabled=true re-enables both
    assert call("PATCH", f"{tenant.path}/{created['id']}", tenant.admin.headers, {"enabled": True}).status == 200
    (endpoint,) = rows(db, "select enabled, disabled_reason from public.webhook_endpoints where id = %s", endpoint_id)
    assert endpoint == {"enabled": True, "disabled_reason": None}

    # When its URL changes, the endpoint follows; when it is deleted, the endpoint is deleted and its message fails
    with WebhookReceiver() as hook2:
        patched = call(
            "PATCH", f"{tenant.path}/{created['id']}", tenant.admin.headers, {"settings": {"url": hook2.url("/new")}}
        )
    assert patched.status == 200, patched.text
    assert rows(db, "select url from public.webhook_endpoints where id = %s", endpoint_id)[0]["url"] == hook2.url(
        "/new"
    )
    assert call("DELETE", f"{tenant.path}/{created['id']}", tenant.admin.headers).status == 200
    (endpoint,) = rows(db, "select deleted_at from public.webhook_endpoints where id = %s", endpoint_id)
    assert endpoint["deleted_at"] is not None
    assert [m["status"] for m in messages(db, endpoint_id=endpoint_id)] == ["succeeded"]


# --- who may --------------------------------------------------------------------------------------------------------


def test_who_may_write_and_read(tenant: Tenant) -> None:
    body = {"name": _unique("mail"), "kind": "email", "settings": {"addresses": ["a@example.test"]}}
    # Members and viewers may not write, nor read keys or ingest keys
    for headers in (tenant.member.headers, tenant.viewer.headers, tenant.reader.headers, tenant.project.headers):
        assert call("POST", tenant.path, headers, body).status == 403
    # Owners and admin keys may
    created = create(tenant, body, tenant.owner.headers)
    by_key = create(tenant, {**body, "name": _unique("mail")}, tenant.admin_key.headers)
    path = f"{tenant.path}/{created['id']}"
    for headers in (tenant.member.headers, tenant.viewer.headers, tenant.reader.headers):
        assert call("PATCH", path, headers, {"enabled": False}).status == 403
        assert call("DELETE", path, headers).status == 403
        assert call("POST", f"{path}/test", headers).status == 403
    # Every member and a read key read; an ingest-only key does not
    for headers in (tenant.member.headers, tenant.viewer.headers, tenant.reader.headers, tenant.admin_key.headers):
        assert call("GET", path, headers).status == 200
    assert call("GET", tenant.path, tenant.project.headers).status == 403
    assert call("DELETE", f"{tenant.path}/{by_key['id']}", tenant.admin_key.headers).status == 200


def test_tenant_isolation_on_every_route(tenant: Tenant, stranger: tuple[User, IngestProject]) -> None:
    owner, other = stranger
    created = create(tenant, {"name": _unique("mail"), "kind": "email", "settings": {"addresses": ["a@example.test"]}})
    path = f"{tenant.path}/{created['id']}"
    body = {"name": _unique("x"), "kind": "email", "settings": {"addresses": ["a@example.test"]}}
    for headers in (owner.headers, other.headers):
        assert call("POST", tenant.path, headers, body).status == 404
        assert call("GET", tenant.path, headers).status == 404
        assert call("GET", path, headers).status == 404
        assert call("PATCH", path, headers, {"enabled": False}).status == 404
        assert call("POST", f"{path}/test", headers).status == 404
        assert call("DELETE", path, headers).status == 404
    # And through their own project's path, our contact point does not exist
    theirs = f"/v1/projects/{other.project_id}/contact-points/{created['id']}"
    assert call("GET", theirs, other.headers).status == 404
    assert call("PATCH", theirs, other.headers, {"enabled": False}).status == 404
    assert call("POST", f"{theirs}/test", other.headers).status == 404
    assert call("DELETE", theirs, other.headers).status == 404
    assert call("GET", path, tenant.viewer.headers).data["enabled"] is True
    settings_path = f"{tenant.org_path}/{tenant.member.id}/notification-settings"
    assert call("GET", settings_path, owner.headers).status == 404
    assert call("PUT", settings_path, owner.headers, {"email_enabled": False}).status == 404
    assert call("GET", settings_path, other.headers).status == 404


# --- people's notification settings -------------------------------------------------------------------------------


def test_member_notification_settings(tenant: Tenant, db: psycopg.Connection[Any], database_url: str) -> None:
    slack_cp = create(
        tenant,
        {
            "name": _unique("team-slack"),
            "kind": "slack",
            "settings": {"url": "https://hooks.slack.com/services/T/B/abcd"},
        },
    )
    email_cp = create(tenant, {"name": _unique("mail"), "kind": "email", "settings": {"addresses": ["a@example.test"]}})
    mine = f"{tenant.org_path}/{tenant.member.id}/notification-settings"
    # Given a member who never set anything: the defaults
    got = call("GET", mine, tenant.member.headers)
    assert got.status == 200, got.text
    assert got.data["email_enabled"] is True and got.data["slack_user_id"] is None and got.data["updated_at"] is None
    # When they set their Slack member id and contact point
    put = call(
        "PUT",
        mine,
        tenant.member.headers,
        {"email_enabled": False, "slack_user_id": "U024BE7LH", "slack_contact_point_id": slack_cp["id"]},
    )
    assert put.status == 200, put.text
    assert put.data["slack_user_id"] == "U024BE7LH" and put.data["slack_contact_point_id"] == slack_cp["id"]
    assert call("GET", mine, tenant.member.headers).data == put.data
    # And the people module reaches them there
    from observai.db.connection import transaction
    from observai.notify.people import member_for_slack_user, reach

    with transaction() as cur:
        reached = reach(cur, tenant.project.org_id, tenant.member.id)
        assert member_for_slack_user(cur, tenant.project.org_id, "U024BE7LH", None) == tenant.member.id
    assert reached is not None and reached.email is None and str(reached.slack_contact_point_id) == slack_cp["id"]

    # An admin sets another member's; a member may not set (or read) someone else's
    viewer_path = f"{tenant.org_path}/{tenant.viewer.id}/notification-settings"
    assert (
        call("PUT", viewer_path, tenant.admin.headers, {"email_enabled": True, "slack_user_id": "W0ABC"}).status == 200
    )
    assert call("PUT", viewer_path, tenant.member.headers, {"email_enabled": False}).status == 403
    assert call("GET", viewer_path, tenant.member.headers).status == 403
    # A Slack member id is one member's (409); its format, and the contact point's kind and org, are checked (422)
    taken = call("PUT", viewer_path, tenant.admin.headers, {"slack_user_id": "U024BE7LH"})
    assert taken.status == 409 and taken.error["code"] == "slack_user_id_taken"
    bad = call("PUT", mine, tenant.member.headers, {"slack_user_id": "someone"})
    assert bad.status == 422 and bad.error["details"][0]["loc"][:2] == ["body", "slack_user_id"]
    bad_team = call("PUT", mine, tenant.member.headers, {"slack_user_id": "U024BE7LH", "slack_team_id": "acme"})
    assert bad_team.status == 422 and bad_team.error["details"][0]["loc"][:2] == ["body", "slack_team_id"]
    # A member pins the workspace of their Slack member id: only buttons pressed there act as them
    pinned = {
        "email_enabled": False,
        "slack_user_id": "U024BE7LH",
        "slack_team_id": "T0001",
        "slack_contact_point_id": slack_cp["id"],
    }
    assert call("PUT", mine, tenant.member.headers, pinned).data["slack_team_id"] == "T0001"
    with transaction() as cur:
        assert member_for_slack_user(cur, tenant.project.org_id, "U024BE7LH", "T0001") == tenant.member.id
        assert member_for_slack_user(cur, tenant.project.org_id, "U024BE7LH", "T0002") is None
    not_slack = call("PUT", mine, tenant.member.headers, {"slack_contact_point_id": email_cp["id"]})
    assert not_slack.status == 422 and not_slack.error["details"][0]["loc"] == ["body", "slack_contact_point_id"]
    # A user who is not a member, and an API key, get 404
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        outsider = make_user(conn)
    assert call("GET", f"{tenant.org_path}/{outsider.id}/notification-settings", tenant.admin.headers).status == 404
    assert call("GET", mine, tenant.admin_key.headers).status == 404
    # And deleting the Slack contact point unsets it
    assert call("DELETE", f"{tenant.path}/{slack_cp['id']}", tenant.admin.headers).status == 200
    assert call("GET", mine, tenant.member.headers).data["slack_contact_point_id"] is None
    # And changes are audited
    audit = rows(
        db,
        "select actor_id, details from public.audit_log where action = 'member.notification_settings.update'"
        " and target_id = %s order by id",
        str(tenant.member.id),
    )
    assert audit[0]["actor_id"] == str(tenant.member.id)
    assert audit[0]["details"]["after"]["slack_user_id"] == "U024BE7LH"
