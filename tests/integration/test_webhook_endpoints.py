"""The webhook endpoints API in-process (WebhooksFunction's handler, real Postgres): CRUD, the secret shown once and
never again (responses, logs), rotation signing with both secrets for 24 hours (verified with the standardwebhooks
package on what a real localhost receiver got), the test route against real receivers, validation (422 with the
field), who may write and read, tenant isolation on every route, and the soft delete stopping pending messages."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.auth.principal import Principal
from observai.webhooks import endpoints
from observai.webhooks.signing import secret_hint
from standardwebhooks import Webhook, WebhookVerificationError

from tests.helpers.ingest import IngestProject, add_key, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user
from tests.helpers.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.integration


@dataclass
class Tenant:
    project: IngestProject  # an ingest key
    reader: IngestProject  # a read key of the same project
    admin_key: IngestProject  # an admin key of the same project
    owner: User
    admin: User
    member: User
    viewer: User

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project.project_id}/webhooks"


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    project = make_project(scopes=("ingest",), label="Webhooks")
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
    """Another organization: its owner and its project's admin key."""
    other = make_project(scopes=("read", "admin"), label="Stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
    return owner, other


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliveries may reach 127.0.0.1, as in `make dev` (the receivers of these tests run there)."""
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")


@pytest.fixture
def hook(loopback: None) -> Iterator[WebhookReceiver]:
    """A real receiver on 127.0.0.1 answering 200 with a small JSON body."""
    with WebhookReceiver(reply=Reply(200, b'{"received":true}')) as r:
        yield r


def call(method: str, path: str, headers: dict[str, str], body: Any = None) -> Result:
    return invoke("webhooks", method, path, headers=headers, json_body=body)


def create(tenant: Tenant, url: str, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    response = call("POST", tenant.path, headers or tenant.admin.headers, {"url": url, **fields})
    assert response.status == 201, response.text
    return dict(response.data)


def principal_of(user: User) -> Principal:
    return Principal(kind="user", user_id=user.id, email=user.email)


def rows(db: psycopg.Connection[Any], query: str, *params: Any) -> list[dict[str, Any]]:
    return list(db.execute(query, params).fetchall())


def signatures(header: str) -> set[str]:
    return set(header.split(" "))


def expected_signature(secret: str, received: Any) -> str:
    """What `secret` signs for the message the receiver got (the standardwebhooks package's own signer)."""
    at = datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), UTC)
    return Webhook(secret).sign(received.headers["webhook-id"], at, received.body.decode())


# --- CRUD ----------------------------------------------------------------------------------------------------------


def test_crud_round_trip_audited(tenant: Tenant, hook: WebhookReceiver, db: psycopg.Connection[Any]) -> None:
    # Given an admin of the project
    # When they subscribe an endpoint to two event types
    created = create(
        tenant,
        hook.url(),
        description="  Pager bridge  ",
        event_types=["incident.triggered", "alert.firing", "alert.firing"],
        rate_limit_per_s=5,
    )

    # Then it is saved as sent (description trimmed, event types sorted without repeats), with its secret
    assert created["url"] == hook.url() and created["description"] == "Pager bridge"
    assert created["event_types"] == ["alert.firing", "incident.triggered"]
    assert created["enabled"] is True and created["rate_limit_per_s"] == 5
    assert created["secret"].startswith("whsec_") and created["secret_hint"]
    assert created["previous_secret_expires_at"] is None and created["disabled_reason"] is None
    endpoint_path = f"{tenant.path}/{created['id']}"

    # And a viewer reads it, alone and in the list, without the secret
    got = call("GET", endpoint_path, tenant.viewer.headers)
    assert got.status == 200, got.text
    assert "secret" not in got.data
    assert {k: v for k, v in created.items() if k != "secret"} == got.data
    listed = call("GET", tenant.path, tenant.viewer.headers)
    assert created["id"] in [e["id"] for e in listed.data]

    # When the admin changes the description, the filter back to every type, and the rate limit off
    patched = call(
        "PATCH",
        endpoint_path,
        tenant.admin.headers,
        {"description": "Pager bridge v2", "event_types": None, "rate_limit_per_s": None},
    )
    assert patched.status == 200, patched.text
    assert patched.data["description"] == "Pager bridge v2"
    assert patched.data["event_types"] is None and patched.data["rate_limit_per_s"] is None
    assert patched.data["url"] == hook.url()  # left out: kept
    assert call("GET", endpoint_path, tenant.viewer.headers).data == patched.data

    # When they delete it
    deleted = call("DELETE", endpoint_path, tenant.admin.headers)
    assert deleted.status == 200, deleted.text
    assert deleted.data == {"id": created["id"], "deleted": True, "stopped_messages": 0}

    # Then it is gone from every read, and cannot be changed or deleted again
    assert call("GET", endpoint_path, tenant.viewer.headers).status == 404
    assert created["id"] not in [e["id"] for e in call("GET", tenant.path, tenant.viewer.headers).data]
    assert call("PATCH", endpoint_path, tenant.admin.headers, {"enabled": False}).status == 404
    assert call("DELETE", endpoint_path, tenant.admin.headers).status == 404

    # And the row stays, soft-deleted and disabled
    (row,) = rows(db, "select deleted_at, enabled from public.webhook_endpoints where id = %s", created["id"])
    assert row["deleted_at"] is not None and row["enabled"] is False

    # And every write is in the audit trail, by the admin, without the secret
    audit = rows(
        db,
        "select action, actor_id, details from public.audit_log where target_id = %s order by id",
        created["id"],
    )
    assert [a["action"] for a in audit] == ["webhook.create", "webhook.update", "webhook.delete"]
    assert {a["actor_id"] for a in audit} == {str(tenant.admin.id)}
    assert audit[1]["details"]["changed"] == ["description", "event_types", "rate_limit_per_s"]
    assert created["secret"] not in json.dumps([a["details"] for a in audit])


def test_list_is_paginated_newest_first(tenant: Tenant, hook: WebhookReceiver, database_url: str) -> None:
    # Given a project of its own with three endpoints
    project = make_project(scopes=("admin", "read"), label="Paged")
    ids = [create(tenant_like(tenant, project), hook.url(), headers=project.headers)["id"] for _ in range(3)]
    path = f"/v1/projects/{project.project_id}/webhooks"

    # When a read key lists them two at a time
    first = invoke("webhooks", "GET", path, headers=project.headers, query="limit=2")
    assert first.status == 200, first.text
    cursor = first.json()["meta"]["next_cursor"]
    second = invoke("webhooks", "GET", path, headers=project.headers, query=f"limit=2&cursor={cursor}")

    # Then the pages hold all three, newest first, and the last page ends the list
    assert [e["id"] for e in first.data + second.data] == list(reversed(ids))
    assert cursor and second.json()["meta"]["next_cursor"] is None

    # And a forged cursor is a 400 naming the parameter
    bad = invoke("webhooks", "GET", path, headers=project.headers, query="cursor=bm9wZQ")
    assert bad.status == 400 and bad.error["details"]["loc"] == ["query", "cursor"]


def tenant_like(tenant: Tenant, project: IngestProject) -> Tenant:
    return Tenant(project, project, project, tenant.owner, tenant.admin, tenant.member, tenant.viewer)


def test_at_most_20_endpoints_per_project(hook: WebhookReceiver) -> None:
    # Given a project with 20 endpoints (created by its admin key)
    project = make_project(scopes=("admin", "read"), label="Full")
    path = f"/v1/projects/{project.project_id}/webhooks"
    for _ in range(20):
        assert invoke("webhooks", "POST", path, headers=project.headers, json_body={"url": hook.url()}).status == 201

    # When a 21st is subscribed
    refused = invoke("webhooks", "POST", path, headers=project.headers, json_body={"url": hook.url()})

    # Then it is refused with a clear code, and nothing was added
    assert refused.status == 409, refused.text
    assert refused.error["code"] == "webhook_limit_reached"
    assert refused.error["details"] == {"endpoints": 20, "limit": 20}
    listed = invoke("webhooks", "GET", path, headers=project.headers, query="limit=200")
    assert len(listed.data) == 20


def test_re_enabling_clears_what_the_delivery_engine_left(
    tenant: Tenant, hook: WebhookReceiver, db: psycopg.Connection[Any]
) -> None:
    # Given an endpoint the delivery engine disabled (410 Gone) after a run of failures
    created = create(tenant, hook.url())
    db.execute(
        "update public.webhook_endpoints set enabled = false, disabled_reason = 'the receiver answered 410 Gone',"
        " disabled_at = now(), failing_since = now() - interval '2 days' where id = %s",
        (created["id"],),
    )
    path = f"{tenant.path}/{created['id']}"
    shown = call("GET", path, tenant.viewer.headers).data
    assert shown["enabled"] is False and shown["disabled_reason"] == "the receiver answered 410 Gone"
    assert shown["disabled_at"] and shown["failing_since"]

    # When an admin key re-enables it
    patched = call("PATCH", path, tenant.admin_key.headers, {"enabled": True})

    # Then it is enabled with a clean slate, and the audit trail says what was cleared
    assert patched.status == 200, patched.text
    assert patched.data["enabled"] is True
    assert patched.data["disabled_reason"] is None and patched.data["disabled_at"] is None
    assert patched.data["failing_since"] is None
    (audit,) = rows(
        db, "select details from public.audit_log where action = 'webhook.update' and target_id = %s", created["id"]
    )
    assert audit["details"]["cleared_disabled_reason"] == "the receiver answered 410 Gone"

    # When a person disables it, no engine reason is made up
    disabled = call("PATCH", path, tenant.owner.headers, {"enabled": False})
    assert disabled.data["enabled"] is False and disabled.data["disabled_reason"] is None


def test_a_patch_changing_nothing_writes_nothing(
    tenant: Tenant, hook: WebhookReceiver, db: psycopg.Connection[Any]
) -> None:
    # Given an endpoint
    created = create(tenant, hook.url(), description="same")

    # When it is patched with the values it has
    patched = call("PATCH", f"{tenant.path}/{created['id']}", tenant.admin.headers, {"description": "same"})

    # Then nothing changed and nothing was audited
    assert patched.status == 200 and patched.data["updated_at"] == created["updated_at"]
    assert not rows(
        db, "select 1 from public.audit_log where action = 'webhook.update' and target_id = %s", created["id"]
    )


# --- the secret ----------------------------------------------------------------------------------------------------


def test_the_secret_is_shown_once_and_never_logged(
    tenant: Tenant, hook: WebhookReceiver, captured_logs: io.StringIO, db: psycopg.Connection[Any]
) -> None:
    # Given an endpoint created, tested, rotated, read and listed, with every log line captured (DEBUG)
    created = create(tenant, hook.url())
    path = f"{tenant.path}/{created['id']}"
    assert call("POST", f"{path}/test", tenant.admin.headers).status == 200
    rotated = call("POST", f"{path}/rotate-secret", tenant.admin.headers)
    assert rotated.status == 200, rotated.text
    reads = [
        call("GET", path, tenant.viewer.headers),
        call("GET", tenant.path, tenant.reader.headers),
        call("PATCH", path, tenant.admin.headers, {"description": "read me"}),
        call("POST", f"{path}/test", tenant.admin.headers),
    ]

    # Then create and rotate each returned a secret, a new one, with its hint
    first, second = created["secret"], rotated.data["secret"]
    assert first.startswith("whsec_") and second.startswith("whsec_") and first != second
    assert created["secret_hint"] == secret_hint(first) and rotated.data["secret_hint"] == secret_hint(second)

    # And no other response holds either secret, or the key bytes they encode
    for response in reads:
        assert response.status == 200, response.text
        for secret in (first, second):
            assert secret not in response.text and secret.removeprefix("whsec_") not in response.text
        items = response.data if isinstance(response.data, list) else [response.data]
        assert all("secret" not in item for item in items)

    # And no log line holds either secret
    logs = captured_logs.getvalue()
    assert "webhook endpoint created" in logs and "webhook secret rotated" in logs  # the logs were captured
    for secret in (first, second):
        assert secret.removeprefix("whsec_") not in logs

    # And the database holds them only encrypted
    (row,) = rows(db, "select * from public.webhook_endpoints where id = %s", created["id"])
    for value in row.values():
        text = bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)
        assert first.removeprefix("whsec_") not in text and second.removeprefix("whsec_") not in text


def test_rotation_signs_with_both_secrets_for_24_hours(
    tenant: Tenant, hook: WebhookReceiver, db: psycopg.Connection[Any]
) -> None:
    # Given an endpoint whose secret was just rotated
    created = create(tenant, hook.url())
    path = f"{tenant.path}/{created['id']}"
    rotated = call("POST", f"{path}/rotate-secret", tenant.admin.headers)
    assert rotated.status == 200, rotated.text
    old, new = created["secret"], rotated.data["secret"]
    until = datetime.fromisoformat(rotated.data["previous_secret_expires_at"])
    assert timedelta(hours=23, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=24)

    # When a test event is sent now
    sent = call("POST", f"{path}/test", tenant.admin.headers)
    assert sent.status == 200 and sent.data["succeeded"] is True, sent.text

    # Then the receiver got two signatures, and a verifier holding either secret alone accepts the message
    received = hook.requests[-1]
    assert len(signatures(received.headers["webhook-signature"])) == 2
    for secret in (old, new):
        payload = Webhook(secret).verify(received.body, received.headers)
        assert payload["type"] == "webhook.test"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 11).verify(received.body, received.headers)  # any other secret: refused

    # When the same endpoint sends a test 24 hours and a second later (the service's injected clock)
    later = datetime.now(UTC) + timedelta(hours=24, seconds=1)
    result = endpoints.send_test(principal_of(tenant.admin), tenant.project.project_id, uuid.UUID(created["id"]), later)

    # Then only the new secret signs it
    assert result.succeeded, result
    received = hook.requests[-1]
    assert received.headers["webhook-id"] == result.webhook_id
    assert signatures(received.headers["webhook-signature"]) == {expected_signature(new, received)}
    assert expected_signature(old, received) not in received.headers["webhook-signature"]

    # And reads then say no previous secret signs any more
    assert (
        endpoints.to_endpoint(
            rows(db, "select * from public.webhook_endpoints where id = %s", created["id"])[0], later
        ).previous_secret_expires_at
        is None
    )

    # And the rotation is audited with both hints, never a secret
    (audit,) = rows(
        db,
        "select details from public.audit_log where action = 'webhook.rotate_secret' and target_id = %s",
        created["id"],
    )
    assert audit["details"]["secret_hint"] == rotated.data["secret_hint"]
    assert audit["details"]["previous_secret_hint"] == created["secret_hint"]
    assert old not in json.dumps(audit["details"]) and new not in json.dumps(audit["details"])


def test_rotating_twice_keeps_only_the_two_newest_secrets(tenant: Tenant, hook: WebhookReceiver) -> None:
    # Given an endpoint rotated twice within 24 hours
    created = create(tenant, hook.url())
    path = f"{tenant.path}/{created['id']}"
    second = call("POST", f"{path}/rotate-secret", tenant.admin.headers).data["secret"]
    third = call("POST", f"{path}/rotate-secret", tenant.admin.headers).data["secret"]

    # When a test event is sent
    assert call("POST", f"{path}/test", tenant.admin.headers).data["succeeded"] is True

    # Then the newest two secrets sign it, the first no longer
    received = hook.requests[-1]
    assert signatures(received.headers["webhook-signature"]) == {
        expected_signature(third, received),
        expected_signature(second, received),
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(received.body, received.headers)


# --- the test route ------------------------------------------------------------------------------------------------


def test_the_test_route_reports_what_the_receiver_answered(
    tenant: Tenant, hook: WebhookReceiver, db: psycopg.Connection[Any]
) -> None:
    # Given an endpoint at a receiver answering 200
    created = create(tenant, hook.url())
    before = rows(db, "select count(*) as n from public.webhook_messages")[0]["n"]

    # When an admin sends a test event
    sent = call("POST", f"{tenant.path}/{created['id']}/test", tenant.admin.headers)

    # Then the receiver got a signed webhook.test event for this endpoint, as the Standard Webhooks verifier sees it
    assert sent.status == 200, sent.text
    received = hook.requests[-1]
    payload = Webhook(created["secret"]).verify(received.body, received.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["endpoint_id"] == created["id"]
    assert payload["data"]["project_id"] == str(tenant.project.project_id)
    assert payload["data"]["message"]
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
    assert received.headers["content-type"].startswith("application/json")

    # And the route returns its status, timing and response, under the id the receiver saw
    result = sent.data
    assert result["succeeded"] is True and result["status_code"] == 200 and result["error"] is None
    assert result["response_excerpt"] == '{"received":true}'
    assert result["duration_ms"] >= 0 and result["webhook_id"] == received.headers["webhook-id"]
    assert result["event_type"] == "webhook.test"

    # And nothing was recorded among the deliveries; the audit trail has the test
    assert rows(db, "select count(*) as n from public.webhook_messages")[0]["n"] == before
    (audit,) = rows(
        db, "select details from public.audit_log where action = 'webhook.test' and target_id = %s", created["id"]
    )
    assert audit["details"]["status_code"] == 200 and audit["details"]["succeeded"] is True


def test_the_test_route_reports_a_failing_receiver(tenant: Tenant, loopback: None) -> None:
    # Given an endpoint at a receiver answering 500 with a long body
    with WebhookReceiver(reply=Reply(500, b"boom " * 1000)) as failing:
        created = create(tenant, failing.url())

        # When a test event is sent
        sent = call("POST", f"{tenant.path}/{created['id']}/test", tenant.admin.headers)

    # Then the route itself succeeds and says the receiver failed, with at most 1 kB of what it answered
    assert sent.status == 200, sent.text
    assert sent.data["succeeded"] is False and sent.data["status_code"] == 500
    assert sent.data["response_excerpt"].startswith("boom boom") and len(sent.data["response_excerpt"]) <= 1024
    assert len(failing.requests) == 1  # a test is sent once, never retried


def test_the_test_route_refuses_a_private_target_when_loopback_is_not_allowed(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an endpoint at a loopback receiver, created while loopback was allowed
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")
    with WebhookReceiver() as local:
        created = create(tenant, local.url())

        # When loopback is no longer allowed and a test event is sent
        monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "false")
        sent = call("POST", f"{tenant.path}/{created['id']}/test", tenant.admin.headers)

        # Then the SSRF guard refused it before any connection: no answer, a reason, nothing received
        assert sent.status == 200, sent.text
        assert sent.data["succeeded"] is False and sent.data["status_code"] is None
        assert sent.data["error"]
        assert local.requests == []


# --- validation ----------------------------------------------------------------------------------------------------


def _loc(result: Result) -> list[list[str]]:
    return [d["loc"] for d in result.error["details"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "not a url"}, ["body", "url"]),
        ({"url": "ftp://example.com/hook"}, ["body", "url"]),
        ({"url": "https://user:pw@example.com/hook"}, ["body", "url"]),
        ({}, ["body", "url"]),
        ({"url": "https://example.com/hook", "event_types": ["alert.firing", "alert.exploded"]}, None),
        ({"url": "https://example.com/hook", "event_types": []}, ["body", "event_types"]),
        ({"url": "https://example.com/hook", "rate_limit_per_s": 0}, ["body", "rate_limit_per_s"]),
        ({"url": "https://example.com/hook", "description": "x" * 1001}, ["body", "description"]),
        ({"url": "https://example.com/hook", "secret": "whsec_mine"}, ["body", "secret"]),
    ],
    ids=["not-a-url", "ftp", "credentials", "missing", "unknown-type", "no-types", "rate-0", "long", "extra"],
)
def test_invalid_bodies_are_422_with_the_field(tenant: Tenant, body: dict[str, Any], loc: list[str] | None) -> None:
    # Given / When an admin posts an invalid endpoint
    response = call("POST", tenant.path, tenant.admin.headers, body)

    # Then it is a 422 naming the field (for an unknown event type: its index)
    assert response.status == 422, response.text
    assert response.error["code"] == "validation_error"
    expected = loc or ["body", "event_types", "1"]
    assert expected in _loc(response)
    if loc is None:
        (detail,) = response.error["details"]
        assert "alert.exploded" in detail["message"] and "alert.firing" in detail["message"]


def test_outside_local_stages_only_https_on_allowed_ports(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a deployed stage (dev)
    from observai.config import SUPABASE_CLI_DEV_JWT_SECRET

    monkeypatch.setenv("STAGE", "dev")
    monkeypatch.setenv("SUPABASE_JWT_SECRET", SUPABASE_CLI_DEV_JWT_SECRET)

    # When an admin subscribes an http URL, or an https one on another port
    for url in ("http://example.com/hook", "https://example.com:8080/hook"):
        response = call("POST", tenant.path, tenant.admin.headers, {"url": url})

        # Then each is a 422 at the URL field
        assert response.status == 422, response.text
        assert ["body", "url"] in _loc(response)


def test_unsafe_targets_are_422_unsafe_url(
    tenant: Tenant, hook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection[Any]
) -> None:
    # Given loopback is not allowed (the default), and a host name that resolves to 127.0.0.1 (/etc/hosts: vm)
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "false")
    before = rows(db, "select count(*) as n from public.webhook_endpoints")[0]["n"]

    # When an admin subscribes it
    response = call("POST", tenant.path, tenant.admin.headers, {"url": f"http://vm:{hook.port}/hook"})

    # Then it is refused by the SSRF guard, at the URL field, with its reason, and nothing is saved
    assert response.status == 422, response.text
    assert response.error["code"] == "unsafe_url"
    assert ["body", "url"] in _loc(response)
    assert response.error["details"][0]["message"]
    assert rows(db, "select count(*) as n from public.webhook_endpoints")[0]["n"] == before

    # And a URL change to such a target is refused the same way, leaving the endpoint as it was
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")
    created = create(tenant, hook.url())
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "false")
    path = f"{tenant.path}/{created['id']}"
    changed = call("PATCH", path, tenant.admin.headers, {"url": f"http://vm:{hook.port}/other"})
    assert changed.status == 422, changed.text
    assert changed.error["code"] == "unsafe_url" and ["body", "url"] in _loc(changed)
    # (an IP literal is refused even before DNS, as an invalid field)
    literal = call("PATCH", path, tenant.admin.headers, {"url": f"http://127.0.0.1:{hook.port}/other"})
    assert literal.status == 422 and literal.error["code"] == "validation_error"
    assert ["body", "url"] in _loc(literal)
    assert call("GET", path, tenant.viewer.headers).data["url"] == hook.url()


def test_patch_refuses_null_for_fields_that_cannot_be_null_and_an_empty_patch(
    tenant: Tenant, hook: WebhookReceiver
) -> None:
    # Given an endpoint
    created = create(tenant, hook.url())
    path = f"{tenant.path}/{created['id']}"

    # When patched with null url, description or enabled, or with nothing
    for field in ("url", "description", "enabled"):
        response = call("PATCH", path, tenant.admin.headers, {field: None})
        # Then each is a 422 naming the field
        assert response.status == 422, response.text
        assert ["body", field] in _loc(response)
    assert call("PATCH", path, tenant.admin.headers, {}).status == 422


# --- who may do what -----------------------------------------------------------------------------------------------


def _writes(base: str, endpoint_id: str, url: str) -> list[tuple[str, str, Any]]:
    path = f"{base}/{endpoint_id}"
    return [
        ("POST", base, {"url": url}),
        ("PATCH", path, {"description": "changed"}),
        ("POST", f"{path}/rotate-secret", None),
        ("POST", f"{path}/test", None),
        ("DELETE", path, None),
    ]


def test_members_viewers_and_read_keys_cannot_write(tenant: Tenant, hook: WebhookReceiver) -> None:
    # Given an endpoint
    created = create(tenant, hook.url())

    # When a member, a viewer, a read key or an ingest key tries every write
    for who, headers in (
        ("member", tenant.member.headers),
        ("viewer", tenant.viewer.headers),
        ("read key", tenant.reader.headers),
        ("ingest key", tenant.project.headers),
    ):
        for method, path, body in _writes(tenant.path, created["id"], hook.url()):
            response = call(method, path, headers, body)
            # Then each is a 403
            assert response.status == 403, f"{who} {method} {path}: {response.text}"

    # And nothing changed: the endpoint is as created, and the receiver got nothing
    got = call("GET", f"{tenant.path}/{created['id']}", tenant.viewer.headers).data
    assert got == {k: v for k, v in created.items() if k != "secret"}
    assert hook.requests == []

    # And an ingest key may not even read
    assert call("GET", tenant.path, tenant.project.headers).status == 403


def test_an_admin_key_and_an_owner_may_write(
    tenant: Tenant, hook: WebhookReceiver, db: psycopg.Connection[Any]
) -> None:
    # Given / When an admin-scope key of the project subscribes an endpoint, and the owner deletes it
    created = create(tenant, hook.url(), headers=tenant.admin_key.headers)
    deleted = call("DELETE", f"{tenant.path}/{created['id']}", tenant.owner.headers)

    # Then both succeed, audited as the key and the owner
    assert deleted.status == 200, deleted.text
    audit = rows(
        db, "select action, actor_type, actor_id from public.audit_log where target_id = %s order by id", created["id"]
    )
    assert [(a["action"], a["actor_type"]) for a in audit] == [
        ("webhook.create", "api_key"),
        ("webhook.delete", "user"),
    ]
    assert audit[0]["actor_id"] == str(tenant.admin_key.key_id) and audit[1]["actor_id"] == str(tenant.owner.id)


def test_another_organization_gets_404_on_every_route(
    tenant: Tenant, hook: WebhookReceiver, stranger: tuple[User, IngestProject]
) -> None:
    # Given an endpoint of the tenant, and the owner and admin key of another organization
    created = create(tenant, hook.url())
    owner, other = stranger
    path = f"{tenant.path}/{created['id']}"
    routes = [("GET", tenant.path, None), ("GET", path, None), *_writes(tenant.path, created["id"], hook.url())]

    # When either calls every route on the tenant's project
    for headers in (owner.headers, other.headers):
        for method, route, body in routes:
            response = call(method, route, headers, body)
            # Then each is a 404, as if the project did not exist
            assert response.status == 404, f"{method} {route}: {response.text}"

    # And the tenant's endpoint id under the stranger's own project is not found either
    foreign = f"/v1/projects/{other.project_id}/webhooks/{created['id']}"
    for method, route, body in [
        ("GET", foreign, None),
        *_writes(f"/v1/projects/{other.project_id}/webhooks", created["id"], hook.url())[1:],
    ]:
        response = call(method, route, other.headers, body)
        assert response.status == 404, f"{method} {route}: {response.text}"
        assert response.error["details"] == {"endpoint_id": created["id"]}

    # And nothing happened to it
    assert hook.requests == []
    assert call("GET", path, tenant.viewer.headers).data["description"] == ""


# --- deleting ------------------------------------------------------------------------------------------------------


def test_deleting_stops_the_pending_messages(
    tenant: Tenant, hook: WebhookReceiver, db: psycopg.Connection[Any]
) -> None:
    # Given an endpoint with messages pending (one due, one retrying later), one in flight and one delivered
    created = create(tenant, hook.url())
    org, project = tenant.project.org_id, tenant.project.project_id
    states = {
        "pending-due": ("pending", "now()", None),
        "pending-later": ("pending", "now() + interval '2 hours'", None),
        "delivering": ("delivering", "now()", "now() + interval '30 seconds'"),
        "succeeded": ("succeeded", "null", None),
    }
    ids = {}
    for name, (status, next_at, lease) in states.items():
        (row,) = rows(
            db,
            "insert into public.webhook_messages (org_id, project_id, endpoint_id, event_id, event_type, payload,"
            f" status, next_attempt_at, lease_until) values (%s, %s, %s, gen_random_uuid(), 'alert.firing',"
            f' \'{{"type": "alert.firing"}}\', %s, {next_at}, {lease or "null"}) returning id',
            org,
            project,
            created["id"],
            status,
        )
        ids[name] = row["id"]

    # When the endpoint is deleted
    deleted = call("DELETE", f"{tenant.path}/{created['id']}", tenant.admin.headers)

    # Then the three waiting or in flight failed, with a reason, and will not be attempted again
    assert deleted.status == 200, deleted.text
    assert deleted.data["stopped_messages"] == 3
    after = {
        r["id"]: r
        for r in rows(
            db,
            "select id, status, next_attempt_at, lease_until, failure_reason from public.webhook_messages"
            " where endpoint_id = %s",
            created["id"],
        )
    }
    for name in ("pending-due", "pending-later", "delivering"):
        message = after[ids[name]]
        assert message["status"] == "failed", name
        assert message["next_attempt_at"] is None and message["lease_until"] is None
        assert "deleted" in message["failure_reason"]

    # And the delivered one is left as it was
    assert after[ids["succeeded"]]["status"] == "succeeded" and after[ids["succeeded"]]["failure_reason"] is None
