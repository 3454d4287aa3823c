"""The deliveries API: an endpoint's messages with their attempts (paginated, filtered), replay one message,
recover every failed message since a time; who may do what; another organization gets 404 everywhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers.ingest import IngestProject, add_key, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user
from tests.helpers.webhook_receiver import WebhookReceiver
from tests.helpers.webhook_rows import attempts, insert_endpoint

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@dataclass
class Tenant:
    project: IngestProject
    read_key: IngestProject
    admin_key: IngestProject
    owner: User
    admin: User
    member: User
    viewer: User
    endpoint_id: UUID

    @property
    def base(self) -> str:
        return f"/v1/projects/{self.project.project_id}/webhooks"


def _tenant(db: psycopg.Connection[Any], label: str) -> Tenant:
    project = make_project(("read",), label=label)
    users = {}
    for role in ("owner", "admin", "member", "viewer"):
        users[role] = make_user(db)
        add_membership(db, project.org_id, users[role].id, role)
    endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, "https://hooks.example.test/in")
    return Tenant(
        project,
        project,
        add_key(project, ("admin",)),
        users["owner"],
        users["admin"],
        users["member"],
        users["viewer"],
        endpoint_id,
    )


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture
def tenant(conn: psycopg.Connection[Any]) -> Tenant:
    return _tenant(conn, "Hooks A")


@pytest.fixture(scope="module")
def stranger(conn: psycopg.Connection[Any]) -> Tenant:
    return _tenant(conn, "Hooks B")


def put_message(
    db: psycopg.Connection[Any], t: Tenant, status: str, created_at: datetime, statuses: tuple[int | None, ...] = ()
) -> UUID:
    """A message of the tenant's endpoint in ``status``, with attempts answered by ``statuses``."""
    row = db.execute(
        "insert into public.webhook_messages (org_id, project_id, endpoint_id, event_id, event_type, payload, status,"
        " attempts, next_attempt_at, created_at) values (%s, %s, %s, %s, 'alert.firing', %s, %s, %s, %s, %s)"
        " returning id",
        (
            t.project.org_id,
            t.project.project_id,
            t.endpoint_id,
            uuid.uuid4(),
            Jsonb({"type": "alert.firing", "timestamp": created_at.isoformat(), "data": {}}),
            status,
            len(statuses),
            created_at if status == "pending" else None,
            created_at,
        ),
    ).fetchone()
    assert row is not None
    for n, code in enumerate(statuses, start=1):
        db.execute(
            "insert into public.webhook_attempts (org_id, project_id, message_id, endpoint_id, attempt, at,"
            " status_code, duration_ms, response_excerpt, error, succeeded) values (%s, %s, %s, %s, %s, %s, %s, 12,"
            " %s, %s, %s)",
            (
                t.project.org_id,
                t.project.project_id,
                row["id"],
                t.endpoint_id,
                n,
                created_at + timedelta(seconds=n),
                code,
                "nope" if code else None,
                None if code else "timeout",
                code is not None and 200 <= code < 300,
            ),
        )
    return UUID(str(row["id"]))


def call(method: str, path: str, headers: dict[str, str], query: str = "") -> Result:
    return invoke("webhook_deliveries", method, path, headers=headers, query=query)


def ok(result: Result) -> Any:
    assert result.status == 200, result.text
    return result.data


def error(result: Result, status: int) -> dict[str, Any]:
    assert result.status == status, result.text
    return dict(result.error)


def test_deliveries_list_with_attempts_filter_and_pages(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given three messages: failed after two attempts, succeeded on the first, pending
    failed = put_message(conn, tenant, "failed", T0, (500, None))
    done = put_message(conn, tenant, "succeeded", T0 + timedelta(minutes=1), (204,))
    pending = put_message(conn, tenant, "pending", T0 + timedelta(minutes=2))
    path = f"{tenant.base}/{tenant.endpoint_id}/deliveries"
    # When a viewer lists them
    items = ok(call("GET", path, tenant.viewer.headers))
    # Then newest first, each with its attempts: time, status, duration, response excerpt
    assert [i["id"] for i in items] == [str(pending), str(done), str(failed)]
    assert [
        (a["attempt"], a["status_code"], a["duration_ms"], a["response_excerpt"], a["error"])
        for a in items[2]["attempt_log"]
    ] == [
        (1, 500, 12, "nope", None),
        (2, None, 12, None, "timeout"),
    ]
    assert items[2]["attempt_log"][0]["at"].startswith("2026-11-20T08:00:01")
    assert items[1]["attempt_log"][0]["succeeded"] is True and items[0]["attempt_log"] == []
    # filtered by status
    assert [i["id"] for i in ok(call("GET", path, tenant.read_key.headers, "status=failed"))] == [str(failed)]
    # page by page
    first = call("GET", path, tenant.viewer.headers, "limit=2")
    cursor = first.json()["meta"]["next_cursor"]
    second = ok(call("GET", path, tenant.viewer.headers, f"limit=2&cursor={cursor}"))
    assert [i["id"] for i in first.data] + [i["id"] for i in second] == [str(pending), str(done), str(failed)]
    # Bad input: 4xx naming the field
    assert error(call("GET", path, tenant.viewer.headers, "status=lost"), 422)["details"]
    assert "status" in str(error(call("GET", path, tenant.viewer.headers, "status=lost"), 422))
    assert error(call("GET", path, tenant.viewer.headers, "cursor=garbage"), 400)["details"]["loc"] == [
        "query",
        "cursor",
    ]
    # An unknown endpoint is 404
    assert error(call("GET", f"{tenant.base}/{uuid.uuid4()}/deliveries", tenant.viewer.headers), 404)


def test_retry_replays_one_message_keeping_its_attempts(
    conn: psycopg.Connection[Any], tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from observai.webhooks.delivery import deliver_message

    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")
    with WebhookReceiver() as hook:
        conn.execute(
            "update public.webhook_endpoints set url = %s where id = %s", (hook.url("/hook"), tenant.endpoint_id)
        )
        # Given a message that failed after two attempts
        mid = put_message(conn, tenant, "failed", T0, (500, 503))
        # When an admin retries it
        before = datetime.now(UTC)
        replayed = ok(call("POST", f"{tenant.base}/deliveries/{mid}/retry", tenant.admin.headers))
        # Then it is pending again, due now; and the replay is audited
        assert replayed["status"] == "pending" and replayed["next_attempt_at"] >= before.isoformat()[:19]
        audit = conn.execute(
            "select actor_id from public.audit_log where action = 'webhook.delivery.retry' and target_id = %s",
            (str(mid),),
        ).fetchall()
        assert [a["actor_id"] for a in audit] == [str(tenant.admin.id)]
        # and the engine delivers it as a new sequence: the old attempts stay, the new one is numbered 1
        assert deliver_message(mid, datetime.now(UTC)).outcome == "succeeded"
        assert [(a["attempt"], a["status_code"]) for a in attempts(conn, mid)] == [(1, 500), (2, 503), (1, 204)]
        assert len(hook.requests) == 1
    # An admin key may replay too
    other = put_message(conn, tenant, "failed", T0, (500,))
    assert ok(call("POST", f"{tenant.base}/deliveries/{other}/retry", tenant.admin_key.headers))["status"] == "pending"


def test_recover_replays_failed_messages_since_a_time(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given failed messages before and after a time, and a succeeded one after it
    before = put_message(conn, tenant, "failed", T0 - timedelta(hours=1), (500,))
    after = [put_message(conn, tenant, "failed", T0 + timedelta(minutes=n), (500,)) for n in range(3)]
    done = put_message(conn, tenant, "succeeded", T0 + timedelta(minutes=5), (200,))
    # When the owner recovers since that time
    result = ok(
        call("POST", f"{tenant.base}/{tenant.endpoint_id}/recover", tenant.owner.headers, "since=2026-11-20T08:00:00Z")
    )
    # Then the three failed since then are replayed, and nothing else
    assert (result["replayed"], result["more"]) == (3, False)
    statuses = {
        r["id"]: (r["status"], r["attempts"])
        for r in conn.execute(
            "select id, status, attempts from public.webhook_messages where endpoint_id = %s", (tenant.endpoint_id,)
        )
    }
    assert [statuses[m] for m in after] == [("pending", 0)] * 3
    assert statuses[before] == ("failed", 1) and statuses[done] == ("succeeded", 1)
    # A missing or malformed since is a 422 naming it
    for query in ("", "since=yesterday"):
        err = error(call("POST", f"{tenant.base}/{tenant.endpoint_id}/recover", tenant.owner.headers, query), 422)
        assert "since" in str(err["details"])


def _routes(t: Tenant, message_id: UUID, endpoint_id: UUID | None = None) -> list[tuple[str, str, str]]:
    endpoint_id = endpoint_id or t.endpoint_id
    return [
        ("GET", f"{t.base}/{endpoint_id}/deliveries", ""),
        ("POST", f"{t.base}/deliveries/{message_id}/retry", ""),
        ("POST", f"{t.base}/{endpoint_id}/recover", "since=2026-01-01T00:00:00Z"),
    ]


def test_readers_read_but_do_not_replay(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a failed message
    mid = put_message(conn, tenant, "failed", T0, (500,))
    for method, path, query in _routes(tenant, mid):
        # When viewers, members and read keys call each route
        for headers in (tenant.viewer.headers, tenant.member.headers, tenant.read_key.headers):
            result = call(method, path, headers, query)
            # Then they read, but replays are 403 (members too: replays are for admins and up)
            if method == "GET":
                ok(result)
            else:
                assert error(result, 403)["code"] in ("forbidden", "scope_missing")
    # And nothing was replayed
    row = conn.execute("select status from public.webhook_messages where id = %s", (mid,)).fetchone()
    assert row is not None and row["status"] == "failed"


@pytest.mark.parametrize("index", range(3), ids=["list", "retry", "recover"])
def test_another_tenant_gets_404_on_every_route(
    conn: psycopg.Connection[Any], tenant: Tenant, stranger: Tenant, index: int
) -> None:
    # Given a failed message of A, and one of B
    mine = put_message(conn, tenant, "failed", T0, (500,))
    theirs = put_message(conn, stranger, "failed", T0, (500,))
    calls = [
        # B's owner and B's admin key on A's project
        (stranger.owner.headers, _routes(tenant, mine)[index]),
        (stranger.admin_key.headers, _routes(tenant, mine)[index]),
        # B's owner naming A's endpoint or message under B's own project, and A's owner naming B's
        (stranger.owner.headers, _routes(stranger, mine, tenant.endpoint_id)[index]),
        (tenant.owner.headers, _routes(tenant, theirs, stranger.endpoint_id)[index]),
    ]
    for headers, (method, path, query) in calls:
        # When the route is called
        result = call(method, path, headers, query)
        # Then 404, naming nothing of the other tenant's
        assert error(result, 404)["code"] == "not_found", (headers, path)
        assert str(tenant.project.org_id) not in result.text and str(stranger.project.org_id) not in result.text
    # And neither message was replayed
    rows = conn.execute("select status from public.webhook_messages where id = any(%s)", ([mine, theirs],)).fetchall()
    assert [r["status"] for r in rows] == ["failed", "failed"]
