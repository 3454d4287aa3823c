"""The incidents API in-process (the function's handler with API Gateway events, the real database): actions and
their state rules, the timeline, permissions, tenant isolation of every route, filters and pagination."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.incidents import Rule, arrange_alert, arrange_group, arrange_rule, flush, resolved
from tests.helpers.ingest import IngestProject, add_key, iso, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration


@dataclass
class Tenant:
    project: IngestProject
    read_key: IngestProject
    admin_key: IngestProject
    owner: User
    member: User
    viewer: User
    rule: Rule

    @property
    def base(self) -> str:
        return f"/v1/projects/{self.project.project_id}/incidents"


def _tenant(db: psycopg.Connection[Any], label: str) -> Tenant:
    project = make_project(("read",), label=label)
    users = {}
    for role in ("owner", "member", "viewer"):
        users[role] = make_user(db)
        add_membership(db, project.org_id, users[role].id, role)
    return Tenant(
        project=project,
        read_key=project,
        admin_key=add_key(project, ("admin",)),
        owner=users["owner"],
        member=users["member"],
        viewer=users["viewer"],
        rule=arrange_rule(db, project.org_id, project.project_id),
    )


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture(scope="module")
def tenant(conn: psycopg.Connection[Any]) -> Tenant:
    return _tenant(conn, "Alpha")


@pytest.fixture(scope="module")
def stranger(conn: psycopg.Connection[Any]) -> Tenant:
    return _tenant(conn, "Beta")


def open_incident(
    db: psycopg.Connection[Any],
    t: Tenant,
    *,
    at: datetime | None = None,
    severity: str = "warning",
    service: str = "checkout",
) -> dict[str, Any]:
    """An incident opened by a group flush, as the dispatcher does it."""
    at = at or datetime.now(UTC).replace(microsecond=0)
    alert = arrange_alert(db, t.rule, at=at, severity=severity, service=service, n=uuid.uuid4().hex[:6])
    group_id = arrange_group(db, t.project.org_id, t.project.project_id)
    incident = flush(group_id, firing=[alert], now=at)
    return {**incident, "group_id": group_id, "alert": alert}


def call(method: str, path: str, headers: dict[str, str], body: Any = None, query: str = "") -> Result:
    return invoke("incidents", method, path, headers=headers, json_body=body, query=query)


def ok(result: Result, status: int = 200) -> Any:
    assert result.status == status, result.text
    assert result.json()["error"] is None
    return result.data


def error(result: Result, status: int) -> dict[str, Any]:
    assert result.status == status, result.text
    assert result.json()["data"] is None
    return dict(result.error)


def timeline(t: Tenant, incident_id: Any, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return list(ok(call("GET", f"{t.base}/{incident_id}/timeline", headers or t.viewer.headers)))


# --- actions and their state rules -------------------------------------------------------------------------------


def test_acknowledge_then_again_is_idempotent(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a triggered incident
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}"

    # When a member acknowledges it
    acked = ok(call("POST", f"{path}/acknowledge", tenant.member.headers))

    # Then it is acknowledged by them, with a timeline event, an outbox event and an audit record
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == str(tenant.member.id)
    # When the owner acknowledges it too: Then 200, unchanged (still the member's), nothing more recorded
    again = ok(call("POST", f"{path}/acknowledge", tenant.owner.headers))
    assert again == acked
    kinds = [e["kind"] for e in timeline(tenant, incident["id"])]
    assert kinds.count("acknowledged") == 1
    outbox = conn.execute(
        "select count(*) as n from public.outbox_events where type = 'incident.acknowledged'"
        " and payload->'data'->>'incident_id' = %s",
        (str(incident["id"]),),
    ).fetchone()
    assert outbox == {"n": 1}
    audit = conn.execute(
        "select actor_id, action from public.audit_log where target_type = 'incident' and target_id = %s",
        (str(incident["id"]),),
    ).fetchall()
    assert audit == [{"actor_id": str(tenant.member.id), "action": "incident.acknowledged"}]


def test_unacknowledge_triggers_again_and_needs_an_acknowledged_incident(
    conn: psycopg.Connection[Any], tenant: Tenant
) -> None:
    # Given a triggered incident
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}"

    # When unacknowledged while triggered: Then 409
    assert (
        error(call("POST", f"{path}/unacknowledge", tenant.member.headers), 409)["code"] == "incident_not_acknowledged"
    )

    # When acknowledged, then unacknowledged: Then triggered again, acknowledgment cleared
    ok(call("POST", f"{path}/acknowledge", tenant.member.headers))
    back = ok(call("POST", f"{path}/unacknowledge", tenant.member.headers))
    assert (back["status"], back["acknowledged_at"], back["acknowledged_by"]) == ("triggered", None, None)
    # And it pages again (incident.triggered with the reason)
    reasons = conn.execute(
        "select payload->'data'->>'reason' as reason from public.outbox_events where type = 'incident.triggered'"
        " and payload->'data'->>'incident_id' = %s order by created_at",
        (str(incident["id"]),),
    ).fetchall()
    assert [r["reason"] for r in reasons] == [None, "unacknowledged"]


def test_snooze_acknowledges_until_a_time(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a triggered incident
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}"

    # When snoozed for 1h
    before = datetime.now(UTC)
    snoozed = ok(call("POST", f"{path}/snooze", tenant.member.headers, {"duration": "1h"}))

    # Then it is acknowledged until about an hour from now, and the timeline says until when
    until = datetime.fromisoformat(snoozed["snoozed_until"])
    assert snoozed["status"] == "acknowledged"
    assert before + timedelta(hours=1) <= until <= datetime.now(UTC) + timedelta(hours=1)
    last = timeline(tenant, incident["id"])[-1]
    assert last["kind"] == "snoozed" and datetime.fromisoformat(last["details"]["until"]) == until

    # When snoozed again with an explicit time: Then the end moves
    later = (datetime.now(UTC) + timedelta(hours=5)).replace(microsecond=0)
    moved = ok(call("POST", f"{path}/snooze", tenant.member.headers, {"until": iso(later)}))
    assert datetime.fromisoformat(moved["snoozed_until"]) == later

    # When snoozed for a number of seconds: Then that long from now
    start = datetime.now(UTC)
    seconds = ok(call("POST", f"{path}/snooze", tenant.member.headers, {"duration": 7200}))
    until = datetime.fromisoformat(seconds["snoozed_until"])
    assert start + timedelta(hours=2) <= until <= datetime.now(UTC) + timedelta(hours=2)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body"]),
        ({"duration": "1h", "until": "2030-01-01T00:00:00Z"}, ["body"]),
        ({"duration": "1 hour"}, ["body", "duration"]),
        ({"duration": 30}, ["body", "duration"]),
        ({"duration": "8d"}, ["body", "duration"]),
        ({"until": "2001-01-01T00:00:00Z"}, ["body", "until"]),
        ({"until": "2030-01-01T00:00:00"}, ["body", "until"]),
    ],
    ids=["empty", "both", "bad-duration", "too-short", "too-long", "past", "naive"],
)
def test_bad_snoozes_are_422_with_the_field(
    conn: psycopg.Connection[Any], tenant: Tenant, body: dict[str, Any], loc: list[str]
) -> None:
    # Given a triggered incident / When snoozed with a bad body
    incident = open_incident(conn, tenant)
    result = call("POST", f"{tenant.base}/{incident['id']}/snooze", tenant.member.headers, body)

    # Then 422 names the field, and the incident is unchanged
    err = error(result, 422)
    assert err["code"] == "validation_error"
    assert any(d["loc"][: len(loc)] == loc for d in err["details"]), err
    assert ok(call("GET", f"{tenant.base}/{incident['id']}", tenant.viewer.headers))["status"] == "triggered"


def test_manual_resolve_keeps_the_note_and_resolved_is_final(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given an acknowledged incident
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}"
    ok(call("POST", f"{path}/acknowledge", tenant.member.headers))

    # When the owner resolves it with a note
    note = "Connection pool exhausted after deploy 812; rolled back and raised the pool to 50."
    done = ok(call("POST", f"{path}/resolve", tenant.owner.headers, {"note": note}))

    # Then it is resolved by them with the note, recorded in the timeline and the outbox
    assert (done["status"], done["resolved_by"], done["resolution_note"]) == ("resolved", str(tenant.owner.id), note)
    last = timeline(tenant, incident["id"])[-1]
    assert (last["kind"], last["actor_type"], last["actor_id"]) == ("resolved", "user", str(tenant.owner.id))
    assert last["details"] == {"reason": "manual", "note": note}
    types = conn.execute(
        "select type from public.outbox_events where payload->'data'->>'incident_id' = %s order by created_at",
        (str(incident["id"]),),
    ).fetchall()
    assert [r["type"] for r in types] == ["incident.triggered", "incident.acknowledged", "incident.resolved"]

    # When anything but a comment is tried on it: Then 409 incident_resolved, and nothing changes
    attempts = [
        ("POST", "acknowledge", None),
        ("POST", "unacknowledge", None),
        ("POST", "snooze", {"duration": "1h"}),
        ("POST", "resolve", {"note": "again"}),
        ("POST", "assign", {"user_id": str(tenant.member.id)}),
        ("PATCH", "", {"auto_resolve": False}),
    ]
    for method, action, body in attempts:
        result = call(method, f"{path}/{action}".rstrip("/"), tenant.member.headers, body)
        assert error(result, 409)["code"] == "incident_resolved", action
    assert ok(call("GET", path, tenant.viewer.headers)) | {"alerts": []} == done | {"alerts": []}

    # And a comment is still taken (the post-mortem goes on)
    ok(call("POST", f"{path}/comments", tenant.member.headers, {"body": "Post-mortem on Thursday"}), 201)


def test_the_resolution_note_is_written_after_resolution_and_patch_checks_its_body(
    conn: psycopg.Connection[Any], tenant: Tenant
) -> None:
    # Given a resolved incident
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}"
    ok(call("POST", f"{path}/resolve", tenant.member.headers, {"note": "first guess"}))

    # When a member writes the note again (the post-mortem), then clears it
    noted = ok(call("PATCH", path, tenant.member.headers, {"resolution_note": "  leak in the pool, fixed in 813 "}))
    cleared = ok(call("PATCH", path, tenant.member.headers, {"resolution_note": ""}))
    same = ok(call("PATCH", path, tenant.member.headers, {"resolution_note": None}))

    # Then the note changed each time it differed (stripped; blank clears), recorded in the timeline and the audit
    assert (noted["status"], noted["resolution_note"]) == ("resolved", "leak in the pool, fixed in 813")
    assert cleared["resolution_note"] is None and same == cleared
    changes = [e["details"] for e in timeline(tenant, incident["id"]) if e["kind"] == "resolution_note_changed"]
    assert changes == [{"note": "leak in the pool, fixed in 813"}, {"note": None}]
    audits = conn.execute(
        "select details from public.audit_log where target_id = %s and action = 'incident.resolution_note_changed'",
        (str(incident["id"]),),
    ).fetchall()
    assert [a["details"]["note"] for a in audits] == [True, False]

    # And auto_resolve stays final on it; an empty body, null auto_resolve, a viewer: refused
    assert error(call("PATCH", path, tenant.member.headers, {"auto_resolve": True}), 409)["code"] == "incident_resolved"
    for body in ({}, {"auto_resolve": None}, {"resolution_note": "x" * 10_001}):
        assert error(call("PATCH", path, tenant.member.headers, body), 422)["code"] == "validation_error"
    assert error(call("PATCH", path, tenant.viewer.headers, {"resolution_note": "n"}), 403)["code"] == "forbidden"


def test_resolve_without_a_body(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a triggered incident / When resolved with no body / Then resolved without a note
    incident = open_incident(conn, tenant)
    done = ok(call("POST", f"{tenant.base}/{incident['id']}/resolve", tenant.member.headers))
    assert (done["status"], done["resolution_note"]) == ("resolved", None)


def test_assign_to_members_only_and_unassign(conn: psycopg.Connection[Any], tenant: Tenant, stranger: Tenant) -> None:
    # Given a triggered incident
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}/assign"

    # When assigned to a viewer of the organization (any member may be assigned): Then it is theirs
    assert ok(call("POST", path, tenant.member.headers, {"user_id": str(tenant.viewer.id)}))["assignee_id"] == str(
        tenant.viewer.id
    )
    # When reassigned to another member: Then it is theirs, the timeline says from whom to whom
    assert ok(call("POST", path, tenant.owner.headers, {"user_id": str(tenant.member.id)}))["assignee_id"] == str(
        tenant.member.id
    )
    last = timeline(tenant, incident["id"])[-1]
    assert last["details"] == {"assignee_id": str(tenant.member.id), "previous_assignee_id": str(tenant.viewer.id)}

    # When assigned to someone of another organization, or to nobody that exists: Then 422 on user_id
    for outsider in (stranger.owner.id, uuid.uuid4()):
        err = error(call("POST", path, tenant.member.headers, {"user_id": str(outsider)}), 422)
        assert err["details"][0]["loc"] == ["body", "user_id"]
    # When the body lacks user_id: Then 422 (null must be explicit)
    assert error(call("POST", path, tenant.member.headers, {}), 422)["details"][0]["loc"][:2] == ["body", "user_id"]

    # When unassigned with null: Then nobody has it
    assert ok(call("POST", path, tenant.member.headers, {"user_id": None}))["assignee_id"] is None
    assigned = [e for e in timeline(tenant, incident["id"]) if e["kind"] == "assigned"]
    assert len(assigned) == 3


def test_comments_are_listed_oldest_first_and_bounded(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a triggered incident
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}/comments"

    # When a member and the admin key comment
    first = ok(call("POST", path, tenant.member.headers, {"body": "Looking at the DB"}), 201)
    second = ok(call("POST", path, tenant.admin_key.headers, {"body": "bot: rollback started"}), 201)

    # Then both are listed, oldest first, with their actors
    listed = ok(call("GET", path, tenant.viewer.headers))
    assert listed == [first, second]
    assert (first["actor_type"], first["actor_id"]) == ("user", str(tenant.member.id))
    assert (second["actor_type"], second["actor_id"]) == ("api_key", str(tenant.admin_key.key_id))
    # And paginated with a cursor
    page1 = call("GET", path, tenant.viewer.headers, query="limit=1")
    assert ok(page1) == [first]
    cursor = page1.json()["meta"]["next_cursor"]
    assert ok(call("GET", path, tenant.viewer.headers, query=f"limit=1&cursor={cursor}")) == [second]

    # When a comment is empty, blank or longer than 10,000 characters: Then 422 on body.body
    for body in ("", "   ", "x" * 10_001, "nul \u0000 inside"):
        err = error(call("POST", path, tenant.member.headers, {"body": body}), 422)
        assert err["details"][0]["loc"][:2] == ["body", "body"] or err["details"][0]["loc"] == ["body"]
    # And 10,000 characters, or several lines, are fine
    ok(call("POST", path, tenant.member.headers, {"body": "y" * 10_000}), 201)
    assert ok(call("POST", path, tenant.member.headers, {"body": "1. restart\n2. watch"}), 201)["body"] == (
        "1. restart\n2. watch"
    )


def test_auto_resolve_can_be_turned_off_and_on(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a triggered incident with auto-resolve off
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}"
    assert ok(call("PATCH", path, tenant.member.headers, {"auto_resolve": False}))["auto_resolve"] is False

    # When its alert resolves: Then it stays triggered
    end = datetime.now(UTC)
    after = flush(incident["group_id"], firing=[], resolved=[resolved(incident["alert"], end)], now=end)
    assert after["status"] == "triggered"

    # When auto-resolve is turned back on: Then it resolves at once (every alert has resolved), by the system
    back = ok(call("PATCH", path, tenant.member.headers, {"auto_resolve": True}))
    assert (back["status"], back["auto_resolve"], back["resolved_by"]) == ("resolved", True, None)
    kinds = [(e["kind"], e["actor_type"]) for e in timeline(tenant, incident["id"])]
    assert kinds[-4:] == [
        ("auto_resolve_changed", "user"),
        ("alert_resolved", "system"),
        ("auto_resolve_changed", "user"),
        ("resolved", "system"),
    ]
    # And unknown fields, and anything but a JSON boolean, are refused
    for body in ({"title": "x"}, {"auto_resolve": 0}, {"auto_resolve": "false"}):
        assert error(call("PATCH", path, tenant.member.headers, body), 422)["code"] == "validation_error"


def test_get_shows_the_alerts_with_their_rule_version(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given an incident opened by an alert of a rule at version 1
    incident = open_incident(conn, tenant, severity="critical")

    # When read
    detail = ok(call("GET", f"{tenant.base}/{incident['id']}", tenant.read_key.headers))

    # Then its alert carries the rule id and version, the rule's definition at that version, and its state
    assert detail["severity"] == "critical" and detail["number"] >= 1
    [alert] = detail["alerts"]
    assert (alert["rule_id"], alert["rule_version"], alert["rule"]) == (str(tenant.rule.id), 1, tenant.rule.definition)
    assert (alert["instance_id"], alert["state"], alert["resolved_at"]) == (
        str(incident["alert"].instance_id),
        "firing",
        None,
    )


# --- the timeline ------------------------------------------------------------------------------------------------


def test_the_timeline_records_every_action_with_actor_and_time(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a triggered incident
    incident = open_incident(conn, tenant)
    path = f"{tenant.base}/{incident['id']}"
    start = datetime.now(UTC) - timedelta(seconds=1)

    # When people and a program act on it, one action each
    steps: list[tuple[User | IngestProject, str, Any, str]] = [
        (tenant.member, "acknowledge", None, "acknowledged"),
        (tenant.owner, "unacknowledge", None, "unacknowledged"),
        (tenant.admin_key, "snooze", {"duration": "30m"}, "snoozed"),
        (tenant.member, "assign", {"user_id": str(tenant.owner.id)}, "assigned"),
        (tenant.owner, "comments", {"body": "Rolling back"}, "comment"),
        (tenant.owner, "resolve", {"note": "Rolled back"}, "resolved"),
    ]
    for actor, action, body, _ in steps:
        result = call("POST", f"{path}/{action}", actor.headers, body)
        assert result.status in (200, 201), result.text

    # Then the timeline holds the opening, the alert, and each action in order, with its actor and a time
    events = timeline(tenant, incident["id"])
    assert [e["kind"] for e in events] == ["triggered", "alert_firing"] + [kind for *_, kind in steps]
    for event, (actor, *_) in zip(events[2:], steps, strict=True):
        if isinstance(actor, User):
            assert (event["actor_type"], event["actor_id"]) == ("user", str(actor.id))
        else:
            assert (event["actor_type"], event["actor_id"]) == ("api_key", str(actor.key_id))
        assert start <= datetime.fromisoformat(event["at"]) <= datetime.now(UTC)
    assert [e["actor_type"] for e in events[:2]] == ["system", "system"]
    # And it pages (limit 3): every event exactly once, oldest first
    seen: list[int] = []
    cursor = ""
    while True:
        result = call("GET", f"{path}/timeline", tenant.viewer.headers, query=f"limit=3{cursor}")
        seen += [e["id"] for e in ok(result)]
        next_cursor = result.json()["meta"]["next_cursor"]
        if not next_cursor:
            break
        cursor = f"&cursor={next_cursor}"
    assert seen == [e["id"] for e in events]


def test_a_bad_cursor_is_400(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    incident = open_incident(conn, tenant)
    for path in (f"{tenant.base}/{incident['id']}/timeline", tenant.base):
        err = error(call("GET", path, tenant.viewer.headers, query="cursor=bm90LWEtY3Vyc29y"), 400)
        assert err["details"]["loc"] == ["query", "cursor"]


# --- who may do what -------------------------------------------------------------------------------------------


def _routes(base: str, incident_id: Any, member_id: Any) -> list[tuple[str, str, Any]]:
    path = f"{base}/{incident_id}"
    return [
        ("GET", base, None),
        ("GET", path, None),
        ("GET", f"{path}/timeline", None),
        ("GET", f"{path}/comments", None),
        ("GET", f"{path}/notifications", None),
        ("PATCH", path, {"auto_resolve": False}),
        ("POST", f"{path}/acknowledge", None),
        ("POST", f"{path}/unacknowledge", None),
        ("POST", f"{path}/snooze", {"duration": "1h"}),
        ("POST", f"{path}/assign", {"user_id": str(member_id)}),
        ("POST", f"{path}/comments", {"body": "hi"}),
        ("POST", f"{path}/resolve", {"note": "done"}),
    ]


ROUTE_IDS = [
    "list",
    "get",
    "timeline",
    "comments",
    "notifications",
    "patch",
    "ack",
    "unack",
    "snooze",
    "assign",
    "comment",
    "resolve",
]


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_viewers_and_read_keys_read_but_do_not_act(conn: psycopg.Connection[Any], tenant: Tenant, index: int) -> None:
    # Given a triggered incident
    incident = open_incident(conn, tenant)
    method, path, body = _routes(tenant.base, incident["id"], tenant.member.id)[index]

    # When a viewer and a read key call the route
    for headers in (tenant.viewer.headers, tenant.read_key.headers):
        result = call(method, path, headers, body)
        # Then reads answer 200, actions 403 (a role too low / a key without the admin scope)
        if method == "GET":
            ok(result)
        else:
            assert error(result, 403)["code"] in ("forbidden", "scope_missing")
    # And nothing changed
    after = ok(call("GET", f"{tenant.base}/{incident['id']}", tenant.viewer.headers))
    assert (after["status"], after["assignee_id"], after["auto_resolve"]) == ("triggered", None, True)
    assert [e["kind"] for e in timeline(tenant, incident["id"])] == ["triggered", "alert_firing"]


@pytest.mark.parametrize("index", range(len(ROUTE_IDS)), ids=ROUTE_IDS)
def test_another_tenant_gets_404_on_every_route(
    conn: psycopg.Connection[Any], tenant: Tenant, stranger: Tenant, index: int
) -> None:
    # Given an incident of A, and B's incident too
    incident = open_incident(conn, tenant)
    theirs = open_incident(conn, stranger)
    route_in_a = _routes(tenant.base, incident["id"], stranger.owner.id)[index]
    # B's owner and B's admin key on A's project and incident
    attempts = [(stranger.owner.headers, route_in_a), (stranger.admin_key.headers, route_in_a)]
    if index:  # routes of one incident: also across projects (B's project with A's incident, and the reverse)
        attempts.append((stranger.owner.headers, _routes(stranger.base, incident["id"], stranger.owner.id)[index]))
        attempts.append((tenant.owner.headers, _routes(tenant.base, theirs["id"], tenant.owner.id)[index]))
    for headers, (method, path, body) in attempts:
        # When the route is called
        result = call(method, path, headers, body)
        # Then 404, and the response names nothing of the other tenant's
        assert error(result, 404)["code"] == "not_found"
        assert incident["title"] not in result.text and str(tenant.project.org_id) not in result.text
    # And B's own list shows none of A's incidents
    listed = ok(call("GET", stranger.base, stranger.owner.headers, query="limit=200"))
    assert str(incident["id"]) not in {i["id"] for i in listed}
    # And A's incident is unchanged
    after = ok(call("GET", f"{tenant.base}/{incident['id']}", tenant.viewer.headers))
    assert (after["status"], after["assignee_id"], after["auto_resolve"]) == ("triggered", None, True)
    assert [e["kind"] for e in timeline(tenant, incident["id"])] == ["triggered", "alert_firing"]
    assert [e["kind"] for e in timeline(stranger, theirs["id"])] == ["triggered", "alert_firing"]


def test_unknown_incident_is_404(tenant: Tenant) -> None:
    missing = uuid.uuid4()
    for method, path, body in _routes(tenant.base, missing, tenant.member.id)[1:]:
        assert error(call(method, path, tenant.owner.headers, body), 404)["code"] == "not_found"


# --- filters and pagination ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(conn: psycopg.Connection[Any]) -> tuple[Tenant, list[dict[str, Any]]]:
    """A project with 7 incidents a minute apart: severities, services, statuses and assignees mixed."""
    t = _tenant(conn, "Filters")
    base = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    made = []
    for n in range(7):
        severity = ("critical", "warning", "info")[n % 3]
        service = ("api", "web")[n % 2]
        made.append(open_incident(conn, t, at=base + timedelta(minutes=n), severity=severity, service=service))
    # #2 acknowledged, #3 resolved, #5 assigned to the member
    ok(call("POST", f"{t.base}/{made[1]['id']}/acknowledge", t.member.headers))
    ok(call("POST", f"{t.base}/{made[2]['id']}/resolve", t.member.headers))
    ok(call("POST", f"{t.base}/{made[4]['id']}/assign", t.member.headers, {"user_id": str(t.member.id)}))
    return t, made


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [6, 5, 4, 3, 2, 1, 0]),
        ("status=triggered", [6, 5, 4, 3, 0]),
        ("status=acknowledged,resolved", [2, 1]),
        ("status=acknowledged&status=resolved", [2, 1]),
        ("severity=critical", [6, 3, 0]),
        ("severity=warning,info&service=api", [4, 2]),
        ("service=web", [5, 3, 1]),
        ("from=2030-06-01T12:02:00Z&to=2030-06-01T12:05:00Z", [4, 3, 2]),
        ("assignee=none&status=triggered", [6, 5, 3, 0]),
        ("assignee=me", [4]),
        ("service=nothing-here", []),
    ],
)
def test_filters(listed: tuple[Tenant, list[dict[str, Any]]], query: str, expected: list[int]) -> None:
    # Given the 7 incidents / When listed with the filter
    t, made = listed
    items = ok(call("GET", t.base, t.member.headers, query=query))

    # Then exactly the matching ones, most recently triggered first
    assert [item["id"] for item in items] == [str(made[n]["id"]) for n in expected]


def test_assignee_by_user_id(listed: tuple[Tenant, list[dict[str, Any]]]) -> None:
    t, made = listed
    items = ok(call("GET", t.base, t.read_key.headers, query=f"assignee={t.member.id}"))
    assert [item["id"] for item in items] == [str(made[4]["id"])]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("status=open", 422),
        ("severity=fatal", 422),
        ("assignee=someone", 422),
        ("from=2030-06-01T13:00:00Z&to=2030-06-01T12:00:00Z", 400),
        ("from=1700000000", 422),
        ("limit=0", 422),
    ],
)
def test_bad_filters_are_refused(listed: tuple[Tenant, list[dict[str, Any]]], query: str, status: int) -> None:
    t, _ = listed
    err = error(call("GET", t.base, t.member.headers, query=query), status)
    assert err["code"] in ("validation_error", "invalid_range")


def test_assignee_me_needs_a_person(listed: tuple[Tenant, list[dict[str, Any]]]) -> None:
    t, _ = listed
    err = error(call("GET", t.base, t.read_key.headers, query="assignee=me"), 400)
    assert err["details"]["loc"] == ["query", "assignee"]


def test_pages_cover_every_incident_once_newest_first(listed: tuple[Tenant, list[dict[str, Any]]]) -> None:
    # Given the 7 incidents / When listed 3 at a time, following next_cursor
    t, made = listed
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        result = call("GET", t.base, t.viewer.headers, query=f"limit=3{cursor}")
        seen += [item["id"] for item in ok(result)]
        pages += 1
        next_cursor = result.json()["meta"]["next_cursor"]
        if not next_cursor:
            break
        cursor = f"&cursor={next_cursor}"

    # Then 3 pages hold every incident exactly once, newest first
    assert pages == 3
    assert seen == [str(m["id"]) for m in reversed(made)]
