"""The on-call schedules API in-process (SchedulesFunction's handler, real Postgres): CRUD (audited), overrides, who is
on call, the final timeline (90 days a request), /v1/me/oncall, validation (422 with the field), members only in
layers and overrides, who may write and read, tenant isolation on every route, and on_call after a delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from observai.db.connection import transaction
from observai.oncall.resolve import on_call

from tests.helpers.ingest import IngestProject, add_key, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration


@dataclass
class Org:
    project: IngestProject
    admin_key: IngestProject
    owner: User
    admin: User
    member: User
    viewer: User

    @property
    def path(self) -> str:
        return f"/v1/orgs/{self.project.org_id}/schedules"


def _org(database_url: str, label: str) -> Org:
    project = make_project(scopes=("read",), label=label)
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        users = {}
        for role in ("owner", "admin", "member", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
    return Org(project, add_key(project, ("admin",)), users["owner"], users["admin"], users["member"], users["viewer"])


@pytest.fixture(scope="module")
def org(database_url: str) -> Org:
    return _org(database_url, "Oncall")


@pytest.fixture(scope="module")
def stranger(database_url: str) -> Org:
    return _org(database_url, "Stranger")


def call(method: str, path: str, headers: dict[str, str], body: Any = None, query: str = "") -> Result:
    return invoke("schedules", method, path, headers=headers, json_body=body, query=query)


def weekly_layer(*users: User, **fields: Any) -> dict[str, Any]:
    return {
        "name": "primary",
        "users": [str(u.id) for u in users],
        "rotation": {"unit": "weeks", "length": 1},
        "start": "2026-01-05T10:00:00+01:00",
        "handoff_time": "10:00",
        **fields,
    }


def schedule_body(org: Org, **fields: Any) -> dict[str, Any]:
    return {
        "name": "Platform primary",
        "description": "weekly, Monday 10:00",
        "time_zone": "Europe/Berlin",
        "layers": [weekly_layer(org.member, org.viewer)],
        **fields,
    }


def create(org: Org, **fields: Any) -> dict[str, Any]:
    response = call("POST", org.path, org.admin.headers, schedule_body(org, **fields))
    assert response.status == 201, response.text
    return dict(response.data)


def _loc(result: Result) -> list[list[str]]:
    return [d["loc"] for d in result.error["details"]]


def q(**params: str) -> str:
    return "&".join(f"{k}={quote(v)}" for k, v in params.items())


# --- CRUD -----------------------------------------------------------------------------------------------------------


def test_crud_round_trip_audited(org: Org, db: psycopg.Connection[Any]) -> None:
    # Given an admin of the organization
    # When they create a schedule
    created = create(org)
    path = f"{org.path}/{created['id']}"

    # Then it is returned as stored, defaults filled in
    assert created["name"] == "Platform primary" and created["time_zone"] == "Europe/Berlin"
    assert created["layers"][0]["users"] == [str(org.member.id), str(org.viewer.id)]
    assert created["layers"][0]["restrictions"] == [] and created["layers"][0]["time_zone"] is None
    assert created["created_by"] == str(org.admin.id)

    # And every member reads it, a viewer too
    for user in (org.owner, org.member, org.viewer):
        got = call("GET", path, user.headers)
        assert got.status == 200 and got.data == created
    assert created["id"] in [s["id"] for s in call("GET", org.path, org.viewer.headers).data]

    # When the owner renames it and replaces its layers
    layers = [weekly_layer(org.member), weekly_layer(org.admin, name="office", rotation={"unit": "days", "length": 1})]
    patched = call("PATCH", path, org.owner.headers, {"name": "Renamed", "layers": layers})
    assert patched.status == 200, patched.text
    assert patched.data["name"] == "Renamed" and [la["name"] for la in patched.data["layers"]] == ["primary", "office"]
    assert patched.data["description"] == "weekly, Monday 10:00"
    assert call("GET", path, org.viewer.headers).data == patched.data

    # When it is deleted
    deleted = call("DELETE", path, org.admin.headers)
    assert deleted.status == 200 and deleted.data == {"id": created["id"], "deleted": True}

    # Then it is gone from every read, and on_call finds nobody on it (escalation policies may still name it)
    assert call("GET", path, org.viewer.headers).status == 404
    assert created["id"] not in [s["id"] for s in call("GET", org.path, org.viewer.headers).data]
    assert call("DELETE", path, org.admin.headers).status == 404
    with transaction() as cur:
        assert on_call(cur, uuid.UUID(created["id"]), datetime(2026, 2, 1, tzinfo=UTC)) is None

    # And each write is in the audit trail
    audit = db.execute(
        "select action, actor_id from public.audit_log where target_id = %s order by id", (created["id"],)
    ).fetchall()
    assert [(a["action"], a["actor_id"]) for a in audit] == [
        ("schedule.create", str(org.admin.id)),
        ("schedule.update", str(org.owner.id)),
        ("schedule.delete", str(org.admin.id)),
    ]


def test_list_is_paginated_newest_first(database_url: str) -> None:
    mine = _org(database_url, "Paged")
    ids = [create(mine)["id"] for _ in range(3)]
    first = call("GET", mine.path, mine.member.headers, query="limit=2")
    cursor = first.json()["meta"]["next_cursor"]
    second = call("GET", mine.path, mine.member.headers, query=f"limit=2&cursor={cursor}")
    assert [s["id"] for s in first.data + second.data] == list(reversed(ids))
    assert cursor and second.json()["meta"]["next_cursor"] is None


def test_at_most_100_schedules_per_organization(database_url: str, db: psycopg.Connection[Any]) -> None:
    # Given an organization with 99 schedules
    mine = _org(database_url, "Full")
    for i in range(99):
        db.execute(
            "insert into public.oncall_schedules (org_id, name, time_zone, layers) values (%s, %s, 'UTC', '[]')",
            (mine.project.org_id, f"s{i}"),
        )
    # Then the 100th is created and the 101st is a 409
    create(mine)
    refused = call("POST", mine.path, mine.admin.headers, schedule_body(mine))
    assert refused.status == 409 and refused.error["code"] == "schedule_limit_reached"
    assert "100" in refused.error["message"]


# --- validation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"time_zone": "Mars/Olympus"}, ["body", "time_zone"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "x\u0000y"}, ["body", "name"]),
        ({"layers": []}, ["body", "layers"]),
        ({"layers": "nope"}, ["body", "layers"]),
        ({"unknown": 1}, ["body", "unknown"]),
    ],
)
def test_invalid_schedules_are_422_with_the_field(org: Org, change: dict[str, Any], loc: list[str]) -> None:
    response = call("POST", org.path, org.admin.headers, schedule_body(org, **change))
    assert response.status == 422, response.text
    assert response.error["code"] == "validation_error"
    assert any(found[: len(loc)] == loc for found in _loc(response)), _loc(response)


@pytest.mark.parametrize(
    ("layer_change", "loc"),
    [
        ({"rotation": {"unit": "fortnights", "length": 1}}, ["body", "layers", "0", "rotation", "unit"]),
        ({"rotation": {"unit": "days", "length": 0}}, ["body", "layers", "0", "rotation", "length"]),
        ({"handoff_time": "25:00"}, ["body", "layers", "0", "handoff_time"]),
        ({"start": "2026-01-05 10:00"}, ["body", "layers", "0", "start"]),
        ({"start": "yesterday"}, ["body", "layers", "0", "start"]),
        ({"users": []}, ["body", "layers", "0", "users"]),
        ({"users": ["not-a-uuid"]}, ["body", "layers", "0", "users", "0"]),
        (
            {"restrictions": [{"type": "weekly", "days": ["mon"], "start": "9", "end": "17:00"}]},
            ["body", "layers", "0", "restrictions", "0"],
        ),
    ],
)
def test_invalid_layers_are_422_with_the_field(org: Org, layer_change: dict[str, Any], loc: list[str]) -> None:
    body = schedule_body(org, layers=[weekly_layer(org.member, **layer_change)])
    response = call("POST", org.path, org.admin.headers, body)
    assert response.status == 422, response.text
    assert any(found[: len(loc)] == loc for found in _loc(response)), _loc(response)


def test_only_members_may_be_on_call(org: Org, stranger: Org, db: psycopg.Connection[Any]) -> None:
    # Given a user of another organization and one of no organization
    outsider = make_user(db)
    for who in (stranger.member, outsider):
        # When an admin names them in a layer (second place of the second layer)
        body = schedule_body(org, layers=[weekly_layer(org.member), weekly_layer(org.viewer, who)])
        response = call("POST", org.path, org.admin.headers, body)
        # Then it is a 422 at that very place
        assert response.status == 422, response.text
        assert _loc(response) == [["body", "layers", "1", "users", "1"]]
        assert response.error["details"][0]["type"] == "not_a_member"
    # And the same for a PATCH and an override
    created = create(org)
    path = f"{org.path}/{created['id']}"
    patched = call("PATCH", path, org.admin.headers, {"layers": [weekly_layer(outsider)]})
    assert patched.status == 422 and _loc(patched) == [["body", "layers", "0", "users", "0"]]
    override = {"user_id": str(outsider.id), "start": "2026-02-01T00:00:00Z", "end": "2026-02-02T00:00:00Z"}
    refused = call("POST", f"{path}/overrides", org.admin.headers, override)
    assert refused.status == 422 and _loc(refused) == [["body", "user_id"]]


def test_invalid_overrides_and_time_parameters_are_422(org: Org) -> None:
    created = create(org)
    path = f"{org.path}/{created['id']}"
    user = str(org.member.id)
    for body, needle in [
        ({"user_id": user, "start": "2026-02-02T00:00:00Z", "end": "2026-02-01T00:00:00Z"}, "after start"),
        ({"user_id": user, "start": "2026-02-01T00:00:00Z", "end": "2026-05-02T00:00:01Z"}, "90 days"),
        ({"user_id": user, "start": "2026-02-01T00:00:00", "end": "2026-02-02T00:00:00Z"}, "timezone"),
        ({"user_id": user, "start": 1769904000, "end": "2026-02-02T00:00:00Z"}, "not a number"),
    ]:
        response = call("POST", f"{path}/overrides", org.admin.headers, body)
        assert response.status == 422, response.text
        assert needle in response.text
    # Time parameters: RFC 3339 or a 422 at the parameter
    for route, query, loc in [
        ("oncall", "at=noon", ["query", "at"]),
        ("oncall", "at=12345", ["query", "at"]),
        ("shifts", "from=2026-13-01T00:00:00Z", ["query", "from"]),
        ("shifts", q(**{"from": "2026-02-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}), ["query", "to"]),
        ("overrides", q(**{"from": "2026-02-02T00:00:00Z", "to": "2026-02-01T00:00:00Z"}), ["query", "to"]),
        ("shifts", "from=9999-12-31T00:00:00Z", ["query", "from"]),
    ]:
        response = call("GET", f"{path}/{route}", org.member.headers, query=query)
        assert response.status == 422, f"{route}?{query}: {response.text}"
        assert loc in _loc(response), _loc(response)


def test_shifts_span_at_most_90_days(org: Org) -> None:
    created = create(org)
    path = f"{org.path}/{created['id']}/shifts"
    ok = call(
        "GET", path, org.viewer.headers, query=q(**{"from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"})
    )
    assert ok.status == 200, ok.text
    refused = call(
        "GET", path, org.viewer.headers, query=q(**{"from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:01Z"})
    )
    assert refused.status == 422
    assert _loc(refused) == [["query", "to"]] and "90 days" in refused.error["details"][0]["message"]


# --- who is on call -------------------------------------------------------------------------------------------------


def test_shifts_oncall_and_overrides(org: Org, db: psycopg.Connection[Any]) -> None:
    # Given a weekly Monday 10:00 Berlin rotation of the member and the viewer
    created = create(org)
    path = f"{org.path}/{created['id']}"
    member, viewer = str(org.member.id), str(org.viewer.id)

    # When the viewer reads three weeks of shifts
    shifts = call(
        "GET",
        f"{path}/shifts",
        org.viewer.headers,
        query=q(**{"from": "2026-01-05T09:00:00Z", "to": "2026-01-26T09:00:00Z"}),
    )
    assert shifts.status == 200, shifts.text
    # Then they alternate each Monday 09:00 UTC (10:00 Berlin, winter)
    assert [(s["user_id"], s["start"], s["end"]) for s in shifts.data["shifts"]] == [
        (member, "2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z"),
        (viewer, "2026-01-12T09:00:00Z", "2026-01-19T09:00:00Z"),
        (member, "2026-01-19T09:00:00Z", "2026-01-26T09:00:00Z"),
    ]
    assert {s["source"] for s in shifts.data["shifts"]} == {"layer"}

    # When an admin puts the owner on call for a day in the second week
    override = {"user_id": str(org.owner.id), "start": "2026-01-14T00:00:00Z", "end": "2026-01-15T00:00:00Z"}
    added = call("POST", f"{path}/overrides", org.admin.headers, override)
    assert added.status == 201, added.text

    # Then /oncall names the owner during it (with their e-mail) and the viewer around it
    during = call("GET", f"{path}/oncall", org.member.headers, query=q(at="2026-01-14T12:00:00+00:00"))
    assert during.status == 200, during.text
    assert during.data["user_id"] == str(org.owner.id) and during.data["email"] == org.owner.email
    assert during.data["source"] == "override" and during.data["on_call"] is True
    assert (during.data["shift_start"], during.data["shift_end"]) == ("2026-01-14T00:00:00Z", "2026-01-15T00:00:00Z")
    after = call("GET", f"{path}/oncall", org.member.headers, query=q(at="2026-01-15T00:00:00Z"))
    assert after.data["user_id"] == viewer and after.data["shift_start"] == "2026-01-15T00:00:00Z"
    assert after.data["layer"] == "primary"
    # And before the layer starts nobody is
    before = call("GET", f"{path}/oncall", org.member.headers, query=q(at="2025-12-01T00:00:00Z"))
    assert before.data["on_call"] is False and before.data["user_id"] is None
    # And the timeline shows the override cut into the viewer's week
    week = call(
        "GET",
        f"{path}/shifts",
        org.viewer.headers,
        query=q(**{"from": "2026-01-12T09:00:00Z", "to": "2026-01-19T09:00:00Z"}),
    )
    assert [(s["user_id"], s["source"]) for s in week.data["shifts"]] == [
        (viewer, "layer"),
        (str(org.owner.id), "override"),
        (viewer, "layer"),
    ]
    # And on_call (the escalation engine's) agrees
    with transaction() as cur:
        assert on_call(cur, uuid.UUID(created["id"]), datetime(2026, 1, 14, 12, tzinfo=UTC)) == org.owner.id

    # When the overrides are listed, filtered by range and paginated
    second = {"user_id": member, "start": "2026-01-20T00:00:00Z", "end": "2026-01-21T00:00:00Z"}
    call("POST", f"{path}/overrides", org.admin.headers, second)
    listed = call("GET", f"{path}/overrides", org.viewer.headers, query="limit=1")
    cursor = listed.json()["meta"]["next_cursor"]
    rest = call("GET", f"{path}/overrides", org.viewer.headers, query=f"limit=1&cursor={cursor}")
    assert [o["start"] for o in listed.data + rest.data] == ["2026-01-14T00:00:00Z", "2026-01-20T00:00:00Z"]
    window = call(
        "GET",
        f"{path}/overrides",
        org.viewer.headers,
        query=q(**{"from": "2026-01-19T00:00:00Z", "to": "2026-01-25T00:00:00Z"}),
    )
    assert [o["user_id"] for o in window.data] == [member]

    # When the first override is deleted
    gone = call("DELETE", f"{path}/overrides/{added.data['id']}", org.owner.headers)
    assert gone.status == 200 and gone.data == {"id": added.data["id"], "deleted": True}
    assert call("DELETE", f"{path}/overrides/{added.data['id']}", org.owner.headers).status == 404
    # Then the viewer is on call again then
    again = call("GET", f"{path}/oncall", org.member.headers, query=q(at="2026-01-14T12:00:00Z"))
    assert again.data["user_id"] == viewer
    audit = db.execute(
        "select action from public.audit_log where target_id = %s order by id", (added.data["id"],)
    ).fetchall()
    assert [a["action"] for a in audit] == ["schedule.override.create", "schedule.override.delete"]


def test_oncall_defaults_to_now(org: Org) -> None:
    created = create(org, layers=[weekly_layer(org.member, start="2020-01-06T10:00:00+01:00")])
    response = call("GET", f"{org.path}/{created['id']}/oncall", org.viewer.headers)
    assert response.status == 200
    assert response.data["user_id"] == str(org.member.id)
    assert abs(datetime.fromisoformat(response.data["at"]) - datetime.now(UTC)) < timedelta(minutes=1)


def test_my_oncall_across_organizations(database_url: str, stranger: Org, db: psycopg.Connection[Any]) -> None:
    # Given a person in two organizations: on call now on one schedule, next week on another
    mine = _org(database_url, "Mine")
    me = mine.member
    add_membership(db, stranger.project.org_id, me.id, "viewer")
    now = datetime.now(UTC).replace(microsecond=0)
    daily_now = weekly_layer(me, start=(now - timedelta(hours=1)).isoformat(), rotation={"unit": "days", "length": 1})
    first = create(mine, layers=[daily_now])
    later = {
        **weekly_layer(stranger.owner, me, start=(now - timedelta(days=1)).isoformat(), handoff_time=None),
        "rotation": {"unit": "weeks", "length": 1},
    }
    second_response = call("POST", stranger.path, stranger.admin.headers, schedule_body(stranger, layers=[later]))
    assert second_response.status == 201, second_response.text
    second = second_response.data
    # And a schedule that does not name them
    create(mine, layers=[weekly_layer(mine.viewer)])

    # When they ask for their next shifts
    response = call("GET", "/v1/me/oncall", me.headers)
    assert response.status == 200, response.text

    # Then they are on call now, and the shifts of both organizations are listed in time order
    assert response.data["on_call_now"] is True
    shifts = response.data["shifts"]
    assert {s["schedule_id"] for s in shifts} == {first["id"], second["id"]}
    assert all(s["user_id"] == str(me.id) for s in shifts)
    assert [s["start"] for s in shifts] == sorted(s["start"] for s in shifts)
    on_second = [s for s in shifts if s["schedule_id"] == second["id"]]
    assert (
        on_second[0]["org_id"] == str(stranger.project.org_id) and on_second[0]["schedule_name"] == "Platform primary"
    )
    assert datetime.fromisoformat(response.data["end"]) - datetime.fromisoformat(response.data["start"]) == timedelta(
        days=30
    )
    # And `days` narrows the window
    short = call("GET", "/v1/me/oncall", me.headers, query="days=2")
    assert {s["schedule_id"] for s in short.data["shifts"]} == {first["id"]}
    assert call("GET", "/v1/me/oncall", me.headers, query="days=91").status == 422

    # And someone on call nowhere gets an empty list; an API key a 403
    nobody = call("GET", "/v1/me/oncall", mine.owner.headers)
    assert nobody.data["on_call_now"] is False and nobody.data["shifts"] == []
    assert call("GET", "/v1/me/oncall", mine.admin_key.headers).status == 403


# --- who may ---------------------------------------------------------------------------------------------------------


def _writes(org: Org, schedule_id: str, override_id: str) -> list[tuple[str, str, Any]]:
    path = f"{org.path}/{schedule_id}"
    override = {"user_id": str(org.member.id), "start": "2026-02-01T00:00:00Z", "end": "2026-02-02T00:00:00Z"}
    return [
        ("POST", org.path, schedule_body(org)),
        ("PATCH", path, {"name": "taken over"}),
        ("POST", f"{path}/overrides", override),
        ("DELETE", f"{path}/overrides/{override_id}", None),
        ("DELETE", path, None),
    ]


def _reads(org: Org, schedule_id: str) -> list[tuple[str, str, Any]]:
    path = f"{org.path}/{schedule_id}"
    return [
        ("GET", org.path, None),
        ("GET", path, None),
        ("GET", f"{path}/overrides", None),
        ("GET", f"{path}/oncall", None),
        ("GET", f"{path}/shifts", None),
    ]


def _arranged(org: Org) -> tuple[dict[str, Any], str]:
    created = create(org)
    override = {"user_id": str(org.member.id), "start": "2026-02-01T00:00:00Z", "end": "2026-02-02T00:00:00Z"}
    added = call("POST", f"{org.path}/{created['id']}/overrides", org.admin.headers, override)
    return created, added.data["id"]


def test_members_and_viewers_read_but_do_not_write(org: Org) -> None:
    created, override_id = _arranged(org)
    for user in (org.member, org.viewer):
        for method, route, body in _reads(org, created["id"]):
            assert call(method, route, user.headers, body).status == 200, f"{method} {route}"
        for method, route, body in _writes(org, created["id"], override_id):
            response = call(method, route, user.headers, body)
            assert response.status == 403, f"{method} {route}: {response.text}"
    # And nothing changed
    assert call("GET", f"{org.path}/{created['id']}", org.viewer.headers).data == created
    assert [o["id"] for o in call("GET", f"{org.path}/{created['id']}/overrides", org.viewer.headers).data] == [
        override_id
    ]


def test_api_keys_get_403(org: Org) -> None:
    created, override_id = _arranged(org)
    for method, route, body in [*_reads(org, created["id"]), *_writes(org, created["id"], override_id)]:
        response = call(method, route, org.admin_key.headers, body)
        assert response.status == 403, f"{method} {route}: {response.text}"
        assert response.error["code"] == "user_token_required"


def test_another_organization_gets_404_and_never_data(org: Org, stranger: Org) -> None:
    # Given a schedule with an override in the organization
    created, override_id = _arranged(org)
    routes = [*_reads(org, created["id"]), *_writes(org, created["id"], override_id)]
    # When the other organization's owner calls every route on it
    for method, route, body in routes:
        response = call(method, route, stranger.owner.headers, body)
        # Then each is a 404, as if the organization did not exist, with none of its data
        assert response.status == 404, f"{method} {route}: {response.text}"
        assert "Platform primary" not in response.text
        assert str(org.member.id) not in response.text
    # And the schedule's id under the stranger's own organization is not found either
    for method, route, body in [
        *_reads(stranger, created["id"])[1:],
        *_writes(stranger, created["id"], override_id)[1:],
    ]:
        response = call(method, route, stranger.owner.headers, body)
        assert response.status == 404, f"{method} {route}: {response.text}"
        assert str(org.member.id) not in response.text
    # And an override id of the organization under the stranger's own schedule is not found
    theirs = create(stranger)
    foreign = call("DELETE", f"{stranger.path}/{theirs['id']}/overrides/{override_id}", stranger.owner.headers)
    assert foreign.status == 404
    # And nothing changed
    assert call("GET", f"{org.path}/{created['id']}", org.viewer.headers).data == created
    assert len(call("GET", f"{org.path}/{created['id']}/overrides", org.viewer.headers).data) == 1


def test_a_member_who_left_is_never_on_call(database_url: str, db: psycopg.Connection[Any]) -> None:
    # Given a 24/7 layer of the owner under a weekly layer of the member and the viewer
    mine = _org(database_url, "Leavers")
    always = weekly_layer(mine.owner, name="backstop")
    created = create(mine, layers=[always, weekly_layer(mine.member, mine.viewer)])
    path = f"{mine.path}/{created['id']}"
    window = q(**{"from": "2026-01-05T09:00:00Z", "to": "2026-01-19T09:00:00Z"})
    # When the member leaves the organization
    db.execute(
        "delete from public.memberships where org_id = %s and user_id = %s", (mine.project.org_id, mine.member.id)
    )
    # Then their week is the backstop's, in the timeline, /oncall and on_call alike; the viewer's stays theirs
    shifts = call("GET", f"{path}/shifts", mine.viewer.headers, query=window).data["shifts"]
    assert [(s["user_id"], s["layer"]) for s in shifts] == [
        (str(mine.owner.id), "backstop"),
        (str(mine.viewer.id), "primary"),
    ]
    at = q(at="2026-01-06T00:00:00Z")
    assert call("GET", f"{path}/oncall", mine.viewer.headers, query=at).data["user_id"] == str(mine.owner.id)
    with transaction() as cur:
        assert on_call(cur, uuid.UUID(created["id"]), datetime(2026, 1, 6, tzinfo=UTC)) == mine.owner.id
        assert on_call(cur, uuid.UUID(created["id"]), datetime(2026, 1, 13, tzinfo=UTC)) == mine.viewer.id
