"""The alert routing API in-process (AlertRoutingFunction): the notification policy (default, versions, checks as
a whole with the field's loc), silences (CRUD, statuses, pagination, bad input), the notification log and alert
groups, and tenant isolation of every route (another org → 404, a viewer or read key cannot write)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.alerts.dispatch import sweep
from observai.alerts.routing import route_transitions

from tests.helpers.alert_rows import AlertBoard
from tests.helpers.ingest import IngestProject, add_key, iso, make_project, rows
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration


@dataclass
class Tenant:
    project: IngestProject  # a read key
    admin_key: IngestProject
    owner: User
    member: User
    viewer: User

    def path(self, tail: str) -> str:
        return f"/v1/projects/{self.project.project_id}/{tail}"


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    project = make_project(scopes=("read",), label="Routing API")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        users = {}
        for role in ("owner", "member", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
    return Tenant(project, add_key(project, ("admin",)), users["owner"], users["member"], users["viewer"])


@pytest.fixture(scope="module")
def stranger(database_url: str) -> tuple[User, IngestProject]:
    """Another organization: its owner and its project's admin key."""
    other = make_project(scopes=("read", "admin"), label="Routing stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
    return owner, other


def call(method: str, path: str, headers: dict[str, str], body: Any = None, query: str = "") -> Result:
    return invoke("alert_routing", method, path, headers=headers, json_body=body, query=query)


def soon(minutes: float) -> str:
    return iso(datetime.now(UTC) + timedelta(minutes=minutes))


# --- the policy ------------------------------------------------------------------------------------------------


def test_a_project_without_a_policy_has_the_default(database_url: str) -> None:
    project = make_project(scopes=("read",), label="Default policy")
    response = call("GET", f"/v1/projects/{project.project_id}/notification-policy", project.headers)
    assert response.status == 200, response.text
    data = response.data
    assert data["is_default"] is True and data["version"] == 0
    route = data["policy"]["route"]
    assert route["group_by"] == ["alertname"] and route["routes"] == []
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (30, 300, 14400)
    assert data["policy"]["send_resolved"] is True and data["policy"]["notify_resolved_after_silence"] is True


POLICY = {
    "route": {
        "receivers": {"contact_points": ["ops-email"], "escalation_policy": "ops"},
        "group_by": ["alertname", "service"],
        "group_wait": "45s",
        "routes": [
            {"name": "db", "matchers": ['service=~"db|db-replica"'], "continue": True, "group_interval": "10m"},
            {
                "matchers": [{"label": "team", "op": "=", "value": "web"}],
                "receivers": {"contact_points": ["web-slack"]},
                "mute_time_intervals": ["nights"],
            },
        ],
    },
    "mute_time_intervals": [
        {
            "name": "nights",
            "time_intervals": [{"times": [{"start_time": "22:00", "end_time": "24:00"}], "location": "Europe/Paris"}],
        }
    ],
    "inhibit_rules": [
        {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'], "equal": ["service"]}
    ],
    "send_resolved": True,
}


def test_put_then_get_the_policy_versioned_and_audited(tenant: Tenant, database_url: str) -> None:
    # When a member puts the policy twice
    first = call("PUT", tenant.path("notification-policy"), tenant.member.headers, POLICY)
    assert first.status == 200, first.text
    second = call("PUT", tenant.path("notification-policy"), tenant.member.headers, POLICY)

    # Then each PUT is a new version, and a viewer reads it back as stored (durations in seconds, text matchers
    # as objects, children's unset fields null: inherited)
    assert (first.data["version"], second.data["version"]) == (first.data["version"], first.data["version"] + 1)
    got = call("GET", tenant.path("notification-policy"), tenant.viewer.headers)
    assert got.status == 200 and got.data["is_default"] is False
    route = got.data["policy"]["route"]
    assert route["group_wait"] == 45 and route["receivers"]["escalation_policy"] == "ops"
    db_route = route["routes"][0]
    assert db_route["matchers"] == [{"label": "service", "op": "=~", "value": "db|db-replica"}]
    assert db_route["continue"] is True and db_route["group_interval"] == 600 and db_route["group_wait"] is None
    assert got.data["updated_by"] == str(tenant.member.id)

    # And every change is in the audit trail
    audits = rows(
        database_url,
        "select actor_id, details from public.audit_log where action = 'notification_policy.update'"
        " and target_id = %s order by id",
        (str(tenant.project.project_id),),
    )
    assert [a["details"]["version"] for a in audits][-2:] == [first.data["version"], second.data["version"]]
    assert audits[-1]["actor_id"] == str(tenant.member.id) and audits[-1]["details"]["routes"] == 3


def _deep(levels: int) -> dict[str, Any]:
    route: dict[str, Any] = {"matchers": ['a="1"']}
    for _ in range(levels - 1):
        route = {"matchers": ['a="1"'], "routes": [route]}
    return route


BAD_POLICIES = [
    (
        {"route": {"routes": [{}, {"matchers": [{"label": "service", "op": "=~", "value": "(api"}]}]}},
        ["body", "route", "routes", "1", "matchers", "0", "value"],
    ),
    (
        {"route": {"routes": [{}, {"matchers": ['service=~"(api"']}]}},
        ["body", "route", "routes", "1", "matchers", "0", "value"],
    ),
    (
        {"route": {"routes": [{"matchers": [{"label": "s", "op": "=~", "value": "a" * 257}]}]}},
        ["body", "route", "routes", "0", "matchers", "0", "value"],
    ),
    ({"route": {"routes": [{"matchers": [{"label": "s", "op": "~", "value": "a"}]}]}}, None),
    (
        {"route": {"routes": [{"mute_time_intervals": ["nope"]}]}},
        ["body", "route", "routes", "0", "mute_time_intervals", "0"],
    ),
    ({"route": {"group_by": ["...", "service"]}}, ["body", "route", "group_by"]),
    ({"route": {"group_wait": "5 minutes"}}, ["body", "route", "group_wait"]),
    ({"route": {"repeat_interval": "10s"}}, ["body", "route", "repeat_interval"]),
    ({"route": {"matchers": ['a="1"']}}, ["body", "route", "matchers"]),
    ({"route": {"routes": [{"name": "x"}, {"name": "x"}]}}, ["body", "route", "routes", "1", "name"]),
    ({"route": {"routes": [_deep(10)]}}, ["body", "route", *["routes", "0"] * 10]),
    ({"route": {"routes": [{} for _ in range(200)]}}, ["body", "route", "routes", "199"]),
    (
        {"mute_time_intervals": [{"name": "n", "time_intervals": [{"weekdays": ["funday"]}]}]},
        ["body", "mute_time_intervals", "0", "time_intervals", "0", "weekdays", "0"],
    ),
    (
        {"mute_time_intervals": [{"name": "n", "time_intervals": [{"location": "Mars/Olympus"}]}]},
        ["body", "mute_time_intervals", "0", "time_intervals", "0", "location"],
    ),
    (
        {"inhibit_rules": [{"source_matchers": [], "target_matchers": ['a="b"']}]},
        ["body", "inhibit_rules", "0", "source_matchers"],
    ),
    ({"route": {"continue": True}}, ["body", "route", "continue"]),
    ({"surprise": 1}, ["body", "surprise"]),
]


@pytest.mark.parametrize(("body", "loc"), BAD_POLICIES)
def test_a_bad_policy_is_a_422_naming_the_field(tenant: Tenant, body: dict[str, Any], loc: list[str] | None) -> None:
    before = call("GET", tenant.path("notification-policy"), tenant.member.headers).data["version"]
    response = call("PUT", tenant.path("notification-policy"), tenant.member.headers, body)
    assert response.status == 422, response.text
    assert response.error["code"] == "validation_error"
    locs = [d["loc"] for d in response.error["details"]]
    if loc is None:
        assert all(found[:5] == ["body", "route", "routes", "0", "matchers"] for found in locs), locs
    else:
        assert loc in locs, locs
    # And nothing changed
    assert call("GET", tenant.path("notification-policy"), tenant.member.headers).data["version"] == before


# --- silences --------------------------------------------------------------------------------------------------


def test_silence_lifecycle(tenant: Tenant, database_url: str) -> None:
    # When a member silences the api's alerts for an hour (the text form of a matcher is accepted)
    body = {
        "matchers": ['service=~"api|web"', {"label": "env", "value": "prod"}],
        "ends_at": soon(60),
        "comment": "deploy",
    }
    created = call("POST", tenant.path("silences"), tenant.member.headers, body)

    # Then it is active, with its matchers as objects, by the member
    assert created.status == 201, created.text
    silence = created.data
    assert silence["status"] == "active" and silence["created_by"] == str(tenant.member.id)
    assert silence["matchers"] == [
        {"label": "service", "op": "=~", "value": "api|web"},
        {"label": "env", "op": "=", "value": "prod"},
    ]
    one = tenant.path(f"silences/{silence['id']}")
    assert call("GET", one, tenant.viewer.headers).data == silence

    # When it is extended and its comment edited
    patched = call("PATCH", one, tenant.member.headers, {"ends_at": soon(120), "comment": "long deploy"})
    assert patched.status == 200, patched.text
    assert patched.data["comment"] == "long deploy" and patched.data["ends_at"] > silence["ends_at"]
    # And an active silence's start cannot move
    moved = call("PATCH", one, tenant.member.headers, {"starts_at": soon(5)})
    assert moved.status == 422 and moved.error["details"][0]["loc"] == ["body", "starts_at"]

    # When it is deleted, Then it is expired and kept
    expired = call("DELETE", one, tenant.member.headers)
    assert expired.status == 200 and expired.data["status"] == "expired" and expired.data["expired_at"]
    assert call("GET", one, tenant.viewer.headers).data["status"] == "expired"
    assert call("DELETE", one, tenant.member.headers).status == 200  # again: as it is
    # And an expired silence is not edited: a new one is made instead
    assert call("PATCH", one, tenant.member.headers, {"comment": "x"}).error["code"] == "silence_expired"

    # And each step is audited
    actions = [
        r["action"]
        for r in rows(
            database_url,
            "select action from public.audit_log where target_id = %s order by id",
            (silence["id"],),
        )
    ]
    assert actions == ["silence.create", "silence.update", "silence.expire"]


def test_silences_list_by_status_and_page(tenant: Tenant) -> None:
    # Given a pending silence and an active one (and the earlier tests' expired ones)
    pending = call(
        "POST", tenant.path("silences"), tenant.admin_key.headers,
        {"matchers": ['service="later"'], "starts_at": soon(30), "ends_at": soon(90)},
    )  # fmt: skip
    assert pending.status == 201, pending.text
    assert pending.data["status"] == "pending" and pending.data["created_by_key_id"] == str(tenant.admin_key.key_id)
    active = call(
        "POST", tenant.path("silences"), tenant.member.headers, {"matchers": ['service="now"'], "ends_at": soon(5)}
    )

    # When listed by status
    def ids(status: str) -> set[str]:
        listed = call("GET", tenant.path("silences"), tenant.viewer.headers, query=f"status={status}&limit=200")
        assert listed.status == 200, listed.text
        assert {s["status"] for s in listed.data} <= {status}
        return {s["id"] for s in listed.data}

    # Then each is where its status says
    assert pending.data["id"] in ids("pending") and active.data["id"] in ids("active")
    assert pending.data["id"] not in ids("active") | ids("expired")

    # And pages follow one another without repeats
    first = call("GET", tenant.path("silences"), tenant.viewer.headers, query="limit=1")
    cursor = first.json()["meta"]["next_cursor"]
    assert cursor
    second = call("GET", tenant.path("silences"), tenant.viewer.headers, query=f"limit=1&cursor={cursor}")
    assert second.data[0]["id"] != first.data[0]["id"]
    assert call("GET", tenant.path("silences"), tenant.viewer.headers, query="status=later").status == 422


BAD_SILENCES = [
    ({"matchers": [], "ends_at": "soon"}, ["body", "matchers"]),
    ({"matchers": ['service=~".*"'], "ends_at": "soon"}, ["body", "matchers"]),  # would silence everything
    ({"matchers": [{"label": "team", "op": "=", "value": ""}], "ends_at": "soon"}, ["body", "matchers"]),
    ({"matchers": ['service=~"(x"'], "ends_at": "soon"}, ["body", "matchers", "0", "value"]),
    ({"matchers": ['service="a"'], "ends_at": "past"}, ["body", "ends_at"]),
    ({"matchers": ['service="a"'], "starts_at": "later", "ends_at": "soon"}, ["body", "ends_at"]),
    ({"matchers": ['service="a"'], "ends_at": "2030-01-01T00:00:00"}, ["body", "ends_at"]),  # no time zone
    ({"matchers": ['service="a"'], "ends_at": "soon", "comment": "x" * 2001}, ["body", "comment"]),
]


@pytest.mark.parametrize(("body", "loc"), BAD_SILENCES)
def test_a_bad_silence_is_a_422_naming_the_field(tenant: Tenant, body: dict[str, Any], loc: list[str]) -> None:
    times = {"soon": soon(10), "later": soon(20), "past": soon(-10)}
    body = {k: times.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    response = call("POST", tenant.path("silences"), tenant.member.headers, body)
    assert response.status == 422, response.text
    assert loc in [d["loc"] for d in response.error["details"]], response.error


def test_expiring_a_silence_flushes_the_groups_it_muted(tenant: Tenant, db: psycopg.Connection) -> None:
    # Given a notified group whose second alert fires under a silence
    board = AlertBoard(db, tenant.project.org_id, tenant.project.project_id)
    board.put_policy({"route": {"group_wait": "0s", "group_interval": "1s"}})
    now = datetime.now(UTC)
    board.fire(now, "ApiSlow", service="one")
    route_transitions(now)
    sweep(now)
    silence = call(
        "POST", tenant.path("silences"), tenant.member.headers, {"matchers": ['service="two"'], "ends_at": soon(60)}
    )
    board.fire(now, "ApiSlow", service="two")
    route_transitions(now + timedelta(seconds=2))
    sweep(now + timedelta(seconds=2))
    group = board.group(alertname="ApiSlow")
    assert group["flush_seq"] == 1 and group["next_flush_at"] > now + timedelta(minutes=30)

    # When the silence is expired by hand
    call("DELETE", tenant.path(f"silences/{silence.data['id']}"), tenant.member.headers)

    # Then the group is due at its next group_interval tick (1 s after its last flush), not at the silence's end
    due = board.group(alertname="ApiSlow")["next_flush_at"]
    assert due <= max(now + timedelta(seconds=1), datetime.now(UTC))
    sweep(due + timedelta(seconds=5))
    assert board.group(alertname="ApiSlow")["flush_seq"] == 2


# --- the log and the groups ------------------------------------------------------------------------------------


def test_notification_log_and_alert_groups(tenant: Tenant, db: psycopg.Connection) -> None:
    # Given an alert notified in the tenant's project (the policy above: group_by alertname, service)
    board = AlertBoard(db, tenant.project.org_id, tenant.project.project_id)
    call("PUT", tenant.path("notification-policy"), tenant.member.headers, {"route": {"group_wait": "0s"}})
    now = datetime.now(UTC)
    board.fire(now, "QueueBacklog", service="worker")
    route_transitions(now)
    sweep(now)
    group = board.group(alertname="QueueBacklog")

    # When a viewer reads the groups, Then the active group is there with its alert
    groups = call("GET", tenant.path("alert-groups"), tenant.viewer.headers, query="limit=200")
    assert groups.status == 200, groups.text
    (listed,) = [g for g in groups.data if g["id"] == str(group["id"])]
    assert listed["notifications"] == 1 and listed["status"] == "active"
    (alert,) = listed["alerts"]
    assert alert["labels"]["service"] == "worker" and alert["state"] == "firing" and alert["notified_state"] == "firing"

    # And the log, filtered by the group, then by its incident
    log = call("GET", tenant.path("notification-log"), tenant.project.headers, query=f"group_id={group['id']}")
    assert log.status == 200, log.text
    (entry,) = log.data
    assert entry["reason"] == "first" and entry["seq"] == 1 and entry["firing"][0]["labels"]["service"] == "worker"
    by_incident = call(
        "GET", tenant.path("notification-log"), tenant.viewer.headers, query=f"incident_id={entry['incident_id']}"
    )
    assert [e["id"] for e in by_incident.data] == [entry["id"]]
    assert call("GET", tenant.path("notification-log"), tenant.viewer.headers, query="cursor=nope").status == 400


# --- tenant isolation of every route ---------------------------------------------------------------------------

ROUTES = [
    ("GET", "notification-policy", None, False),
    ("PUT", "notification-policy", {"route": {}}, True),
    ("POST", "silences", {"matchers": ['service="x"'], "ends_at": "soon"}, True),
    ("GET", "silences", None, False),
    ("GET", "silences/{silence}", None, False),
    ("PATCH", "silences/{silence}", {"comment": "x"}, True),
    ("DELETE", "silences/{silence}", None, True),
    ("GET", "notification-log", None, False),
    ("GET", "alert-groups", None, False),
]


@pytest.fixture(scope="module")
def silence_id(tenant: Tenant) -> str:
    created = call(
        "POST", tenant.path("silences"), tenant.member.headers, {"matchers": ['service="iso"'], "ends_at": soon(600)}
    )
    return str(created.data["id"])


@pytest.mark.parametrize(("method", "tail", "body", "writes"), ROUTES)
def test_every_route_is_isolated(
    tenant: Tenant,
    stranger: tuple[User, IngestProject],
    silence_id: str,
    method: str,
    tail: str,
    body: Any,
    writes: bool,
) -> None:
    path = tenant.path(tail.format(silence=silence_id))
    if body and "ends_at" in body:
        body = {**body, "ends_at": soon(60)}
    owner, other_key = stranger

    # Another organization's owner, and another project's key, get 404: the project is not revealed
    for headers in (owner.headers, other_key.headers):
        response = call(method, path, headers, body)
        assert response.status == 404, (method, path, response.text)
        assert response.error["code"] == "not_found"

    # The stranger's own silence is not reachable through this project either
    if "{silence}" in tail:
        own = call("POST", f"/v1/projects/{other_key.project_id}/silences", other_key.headers,
                   {"matchers": ['service="theirs"'], "ends_at": soon(60)})  # fmt: skip
        assert own.status == 201, own.text
        leaked = call(method, tenant.path(tail.format(silence=own.data["id"])), tenant.owner.headers, body)
        assert leaked.status == 404, leaked.text

    # A viewer and a read key read, and may not write
    for headers in (tenant.viewer.headers, tenant.project.headers):
        response = call(method, path, headers, body)
        if writes:
            assert response.status == 403, (method, path, response.text)
        else:
            assert response.status == 200, (method, path, response.text)

    # No credentials: 401
    assert call(method, path, {}, body).status == 401


def test_expiring_a_silence_flushes_a_group_that_never_notified(tenant: Tenant, db: psycopg.Connection) -> None:
    # Given a group whose only alert fires under a silence (nothing notified, its timer at the silence's end)
    board = AlertBoard(db, tenant.project.org_id, tenant.project.project_id)
    board.put_policy({"route": {"group_wait": "0s"}})
    silence = call(
        "POST", tenant.path("silences"), tenant.member.headers, {"matchers": ['service="muted"'], "ends_at": soon(90)}
    )
    now = datetime.now(UTC)
    board.fire(now, "MutedOnly", service="muted")
    route_transitions(now)
    sweep(now)
    assert board.group(alertname="MutedOnly")["flush_seq"] == 0
    assert board.group(alertname="MutedOnly")["next_flush_at"] > now + timedelta(minutes=80)

    # When the silence is expired by hand, Then the group flushes at once and notifies the alert
    call("DELETE", tenant.path(f"silences/{silence.data['id']}"), tenant.member.headers)
    assert board.group(alertname="MutedOnly")["next_flush_at"] <= datetime.now(UTC)
    sweep(datetime.now(UTC))
    assert board.group(alertname="MutedOnly")["flush_seq"] == 1


def test_alert_groups_say_why_an_alert_is_muted(db: psycopg.Connection) -> None:
    # Given a project with an inhibition rule, a silence, and three alerts: inhibited, silenced, neither
    project = make_project(scopes=("read",), label="Muted why")
    board = AlertBoard(db, project.org_id, project.project_id)
    board.put_policy(
        {
            "route": {"group_by": ["service"]},
            "inhibit_rules": [
                {
                    "source_matchers": ['severity="critical"'],
                    "target_matchers": ['severity="warning"'],
                    "equal": ["service"],
                }
            ],
        }
    )
    now = datetime.now(UTC)
    silence_id = board.silence(
        [{"label": "service", "op": "=", "value": "batch"}], now - timedelta(minutes=1), now + timedelta(hours=1)
    )
    board.fire(now, "Down", service="api", severity="critical")
    board.fire(now, "Slow", service="api", severity="warning")
    board.fire(now, "Slow", service="batch", severity="warning")
    route_transitions(now)

    # When the groups are read
    groups = call("GET", f"/v1/projects/{project.project_id}/alert-groups", project.headers)
    assert groups.status == 200, groups.text

    # Then each alert says whether it is silenced (by which silence) or inhibited
    muted = {
        (a["labels"]["alertname"], a["labels"]["service"]): (a["silenced_by"], a["inhibited"])
        for g in groups.data
        for a in g["alerts"]
    }
    assert muted == {
        ("Down", "api"): ([], False),
        ("Slow", "api"): ([], True),
        ("Slow", "batch"): ([str(silence_id)], False),
    }
