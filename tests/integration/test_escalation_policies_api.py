"""The escalation policies API in-process (EscalationPoliciesFunction's handler, real Postgres): CRUD audited,
pagination, validation (422 naming the field, targets checked against the organization and the project), unique
names and the 50-policy limit (409), who may write and read, and tenant isolation on every route."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers.ingest import IngestProject, add_key, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

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
    contact_point: UUID  # a live contact point of the project
    schedule: UUID  # an on-call schedule of the organization

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project.project_id}/escalation-policies"


def insert_contact_point(db: psycopg.Connection[Any], project: IngestProject, name: str = "pd") -> UUID:
    row = db.execute(
        "insert into public.contact_points (org_id, project_id, name, kind) values (%s, %s, %s, 'pagerduty')"
        " returning id",
        (project.org_id, project.project_id, name),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def insert_schedule(db: psycopg.Connection[Any], org_id: UUID) -> UUID:
    row = db.execute(
        "insert into public.oncall_schedules (org_id, name, time_zone, layers) values (%s, 'Primary', 'UTC', %s)"
        " returning id",
        (org_id, Jsonb([])),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    project = make_project(scopes=("ingest",), label="Escalation API")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        users = {}
        for role in ("owner", "admin", "member", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
        point = insert_contact_point(db, project)
        schedule = insert_schedule(db, project.org_id)
    return Tenant(
        project,
        add_key(project, ("read",)),
        add_key(project, ("admin",)),
        users["owner"],
        users["admin"],
        users["member"],
        users["viewer"],
        point,
        schedule,
    )


@dataclass
class Stranger:
    owner: User
    project: IngestProject  # read and admin keys of the other organization's project
    contact_point: UUID
    schedule: UUID


@pytest.fixture(scope="module")
def stranger(database_url: str) -> Stranger:
    other = make_project(scopes=("read", "admin"), label="Stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
        point = insert_contact_point(db, other)
        schedule = insert_schedule(db, other.org_id)
    return Stranger(owner, other, point, schedule)


def call(method: str, path: str, headers: dict[str, str], body: Any = None, query: str | None = None) -> Result:
    return invoke("escalation_policies", method, path, headers=headers, json_body=body, query=query or "")


def body_for(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    return {
        "name": f"policy-{uuid.uuid4().hex[:8]}",
        "steps": [
            {"wait_minutes": 5, "targets": [{"type": "contact_point", "id": str(tenant.contact_point)}]},
            {
                "wait_minutes": 15,
                "targets": [
                    {"type": "schedule", "id": str(tenant.schedule)},
                    {"type": "user", "id": str(tenant.member.id)},
                ],
            },
        ],
        **fields,
    }


def create(tenant: Tenant, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    response = call("POST", tenant.path, headers or tenant.admin.headers, body_for(tenant, **fields))
    assert response.status == 201, response.text
    return dict(response.data)


def locs(response: Result) -> list[list[str]]:
    return [d["loc"] for d in response.error["details"]]


# --- CRUD ----------------------------------------------------------------------------------------------------------


def test_crud_round_trip_audited(tenant: Tenant, db: psycopg.Connection[Any]) -> None:
    # Given an admin of the project
    # When they create a policy: a contact point, then the on-call schedule and a member, repeated twice
    body = body_for(tenant, description="  Checkout on-call  ", repeat=2, ack_timeout_minutes=30)
    created = call("POST", tenant.path, tenant.admin.headers, body)
    assert created.status == 201, created.text

    # Then it is saved as sent (description trimmed)
    policy = created.data
    assert policy["name"] == body["name"] and policy["description"] == "Checkout on-call"
    assert policy["steps"] == body["steps"] and policy["repeat"] == 2 and policy["ack_timeout_minutes"] == 30
    assert policy["project_id"] == str(tenant.project.project_id) and policy["created_by"] == str(tenant.admin.id)
    path = f"{tenant.path}/{policy['id']}"

    # And a viewer reads it, alone and in the list; so does a read key
    assert call("GET", path, tenant.viewer.headers).data == policy
    assert call("GET", path, tenant.reader.headers).data == policy
    assert policy["id"] in [p["id"] for p in call("GET", tenant.path, tenant.viewer.headers).data]

    # When the admin key renames it, replaces its steps and turns the ack timeout off
    patched = call(
        "PATCH",
        path,
        tenant.admin_key.headers,
        {
            "name": "checkout-primary",
            "steps": [{"wait_minutes": 10, "targets": [{"type": "user", "id": str(tenant.owner.id)}]}],
            "ack_timeout_minutes": None,
        },
    )
    assert patched.status == 200, patched.text
    assert patched.data["name"] == "checkout-primary" and patched.data["ack_timeout_minutes"] is None
    assert patched.data["steps"] == [{"wait_minutes": 10, "targets": [{"type": "user", "id": str(tenant.owner.id)}]}]
    assert patched.data["repeat"] == 2 and patched.data["description"] == "Checkout on-call"  # left out: kept
    assert call("GET", path, tenant.viewer.headers).data == patched.data

    # When the owner deletes it
    deleted = call("DELETE", path, tenant.owner.headers)
    assert deleted.status == 200, deleted.text
    assert deleted.data == {"id": policy["id"], "deleted": True}

    # Then it is gone from every read and cannot be changed or deleted again; its name is free again
    assert call("GET", path, tenant.viewer.headers).status == 404
    assert policy["id"] not in [p["id"] for p in call("GET", tenant.path, tenant.viewer.headers).data]
    assert call("PATCH", path, tenant.admin.headers, {"repeat": 1}).status == 404
    assert call("DELETE", path, tenant.admin.headers).status == 404
    assert create(tenant, name="checkout-primary")["name"] == "checkout-primary"

    # And every write is in the audit trail with its actor
    audit = db.execute(
        "select action, actor_type, actor_id, details from public.audit_log where target_id = %s order by id",
        (policy["id"],),
    ).fetchall()
    assert [a["action"] for a in audit] == [
        "escalation_policy.create",
        "escalation_policy.update",
        "escalation_policy.delete",
    ]
    assert [a["actor_type"] for a in audit] == ["user", "api_key", "user"]
    assert audit[1]["details"]["changed"] == ["ack_timeout_minutes", "name", "steps"]
    assert audit[1]["details"]["previous_name"] == body["name"]


def test_list_is_paginated_newest_first(database_url: str) -> None:
    # Given a project of its own with three policies (created by its admin key), paging its contact point
    project = make_project(scopes=("admin", "read"), label="Paged policies")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        point = insert_contact_point(db, project)
    path = f"/v1/projects/{project.project_id}/escalation-policies"
    steps = [{"targets": [{"type": "contact_point", "id": str(point)}]}]
    ids = []
    for n in range(3):
        created = call("POST", path, project.headers, {"name": f"p{n}", "steps": steps})
        assert created.status == 201, created.text
        ids.append(created.data["id"])

    # When a read key lists them two at a time
    first = call("GET", path, project.headers, query="limit=2")
    assert first.status == 200, first.text
    cursor = first.json()["meta"]["next_cursor"]
    second = call("GET", path, project.headers, query=f"limit=2&cursor={cursor}")

    # Then the pages hold all three, newest first, and the last page ends the list
    assert [p["id"] for p in first.data + second.data] == list(reversed(ids))
    assert cursor and second.json()["meta"]["next_cursor"] is None
    # And a forged cursor is a 400 naming the parameter
    bad = call("GET", path, project.headers, query="cursor=bm9wZQ")
    assert bad.status == 400 and bad.error["details"]["loc"] == ["query", "cursor"]


# --- validation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"steps": []}, ["body", "steps"]),
        (
            {"steps": [{"wait_minutes": 1, "targets": [{"type": "user", "id": str(uuid.uuid4())}]}] * 21},
            ["body", "steps"],
        ),
        ({"steps": [{"wait_minutes": 1441, "targets": [{"type": "user", "id": str(uuid.uuid4())}]}]}, None),
        ({"steps": [{"wait_minutes": 1, "targets": []}]}, ["body", "steps", "0", "targets"]),
        ({"steps": [{"targets": [{"type": "team", "id": str(uuid.uuid4())}]}]}, None),
        ({"steps": [{"targets": [{"type": "user", "id": "not-a-uuid"}]}]}, None),
        ({"repeat": 6}, ["body", "repeat"]),
        ({"ack_timeout_minutes": 0}, ["body", "ack_timeout_minutes"]),
        ({"ack_timeout_minutes": 10081}, ["body", "ack_timeout_minutes"]),
        ({"name": "has space"}, ["body", "name"]),
        ({"name": "x" * 64}, ["body", "name"]),
        ({"description": "d" * 1001}, ["body", "description"]),
        ({"surprise": 1}, ["body", "surprise"]),
    ],
)
def test_bad_fields_are_422_naming_the_field(tenant: Tenant, change: dict[str, Any], loc: list[str] | None) -> None:
    response = call("POST", tenant.path, tenant.admin.headers, {**body_for(tenant), **change})
    assert response.status == 422, response.text
    assert response.error["code"] == "validation_error"
    if loc is not None:
        assert loc in locs(response)
    else:
        assert all(path[:3] == ["body", "steps", "0"] for path in locs(response))


def test_a_repeating_policy_needs_a_wait(tenant: Tenant) -> None:
    body = body_for(tenant, repeat=1)
    for step in body["steps"]:
        step["wait_minutes"] = 0
    refused = call("POST", tenant.path, tenant.admin.headers, body)
    assert refused.status == 422 and "wait_minutes" in refused.text
    # And a PATCH that would make one loop is refused too
    policy = create(tenant, repeat=1)
    steps = [{"wait_minutes": 0, "targets": [{"type": "user", "id": str(tenant.owner.id)}]}]
    patched = call("PATCH", f"{tenant.path}/{policy['id']}", tenant.admin.headers, {"steps": steps})
    assert patched.status == 422 and locs(patched) == [["body", "steps"]]


def test_targets_must_belong_to_the_organization_and_project(tenant: Tenant, stranger: Stranger) -> None:
    # Given a step naming the stranger's owner, schedule and contact point, and a user who does not exist
    steps = [
        {"wait_minutes": 5, "targets": [{"type": "contact_point", "id": str(tenant.contact_point)}]},
        {
            "wait_minutes": 5,
            "targets": [
                {"type": "user", "id": str(stranger.owner.id)},
                {"type": "schedule", "id": str(stranger.schedule)},
                {"type": "contact_point", "id": str(stranger.contact_point)},
                {"type": "user", "id": str(uuid.uuid4())},
            ],
        },
    ]
    # When an admin creates the policy
    refused = call("POST", tenant.path, tenant.admin.headers, {"name": "foreign", "steps": steps})

    # Then each foreign target is a 422 at its own location, with why
    assert refused.status == 422, refused.text
    details = {tuple(d["loc"]): d["type"] for d in refused.error["details"]}
    assert details == {
        ("body", "steps", "1", "targets", "0", "id"): "not_a_member",
        ("body", "steps", "1", "targets", "1", "id"): "unknown_schedule",
        ("body", "steps", "1", "targets", "2", "id"): "unknown_contact_point",
        ("body", "steps", "1", "targets", "3", "id"): "not_a_member",
    }
    # And a PATCH is checked the same way
    policy = create(tenant)
    patched = call("PATCH", f"{tenant.path}/{policy['id']}", tenant.admin.headers, {"steps": steps})
    assert patched.status == 422 and len(patched.error["details"]) == 4


def test_a_deleted_contact_point_is_not_a_target(tenant: Tenant, db: psycopg.Connection[Any]) -> None:
    point = insert_contact_point(db, tenant.project, f"gone-{uuid.uuid4().hex[:6]}")
    db.execute("update public.contact_points set deleted_at = now() where id = %s", (point,))
    steps = [{"targets": [{"type": "contact_point", "id": str(point)}]}]
    refused = call("POST", tenant.path, tenant.admin.headers, {"name": "gone-cp", "steps": steps})
    assert refused.status == 422 and refused.error["details"][0]["type"] == "unknown_contact_point"


def test_names_are_unique_among_live_policies(tenant: Tenant) -> None:
    first = create(tenant)
    taken = call("POST", tenant.path, tenant.admin.headers, body_for(tenant, name=first["name"]))
    assert taken.status == 409 and taken.error["code"] == "escalation_policy_name_taken"
    other = create(tenant)
    renamed = call("PATCH", f"{tenant.path}/{other['id']}", tenant.admin.headers, {"name": first["name"]})
    assert renamed.status == 409 and renamed.error["code"] == "escalation_policy_name_taken"


def test_at_most_50_policies_per_project(tenant: Tenant, database_url: str) -> None:
    # Given a project with 50 policies (created by its admin key)
    project = make_project(scopes=("admin", "read"), label="Full policies")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        point = insert_contact_point(db, project)
    path = f"/v1/projects/{project.project_id}/escalation-policies"
    steps = [{"targets": [{"type": "contact_point", "id": str(point)}]}]
    for n in range(50):
        assert call("POST", path, project.headers, {"name": f"p{n}", "steps": steps}).status == 201

    # When a 51st is created: 409, and after deleting one there is room again
    refused = call("POST", path, project.headers, {"name": "p50", "steps": steps})
    assert refused.status == 409 and refused.error["code"] == "escalation_policy_limit_reached"
    victim = call("GET", path, project.headers, query="limit=1").data[0]["id"]
    assert call("DELETE", f"{path}/{victim}", project.headers).status == 200
    assert call("POST", path, project.headers, {"name": "p50", "steps": steps}).status == 201


# --- who may ---------------------------------------------------------------------------------------------------


def test_members_viewers_and_read_keys_read_but_never_write(tenant: Tenant) -> None:
    policy = create(tenant)
    path = f"{tenant.path}/{policy['id']}"
    for headers in (tenant.member.headers, tenant.viewer.headers, tenant.reader.headers):
        assert call("POST", tenant.path, headers, body_for(tenant)).status == 403
        assert call("PATCH", path, headers, {"repeat": 1}).status == 403
        assert call("DELETE", path, headers).status == 403
        assert call("GET", path, headers).status == 200
    # An ingest-only key neither reads nor writes
    assert call("GET", tenant.path, tenant.project.headers).status == 403
    assert call("POST", tenant.path, tenant.project.headers, body_for(tenant)).status == 403
    # Without credentials: 401
    assert call("GET", tenant.path, {}).status == 401


def test_tenant_isolation_on_every_route(tenant: Tenant, stranger: Stranger) -> None:
    # Given a policy of the tenant
    policy = create(tenant)
    path = f"{tenant.path}/{policy['id']}"
    # When another organization's owner, or another project's admin and read key, try every route: 404
    for headers in (stranger.owner.headers, stranger.project.headers):
        assert call("POST", tenant.path, headers, body_for(tenant)).status == 404
        assert call("GET", tenant.path, headers).status == 404
        assert call("GET", path, headers).status == 404
        assert call("PATCH", path, headers, {"repeat": 1}).status == 404
        assert call("DELETE", path, headers).status == 404
    # And the tenant's policy is not reachable through the stranger's own project either
    other_path = f"/v1/projects/{stranger.project.project_id}/escalation-policies/{policy['id']}"
    assert call("GET", other_path, stranger.owner.headers).status == 404
    assert call("PATCH", other_path, stranger.owner.headers, {"repeat": 1}).status == 404
    assert call("DELETE", other_path, stranger.owner.headers).status == 404
    # And nothing changed
    assert call("GET", path, tenant.viewer.headers).data == policy


def test_bad_ids_and_bodies(tenant: Tenant) -> None:
    assert call("GET", f"{tenant.path}/not-a-uuid", tenant.viewer.headers).status == 422
    assert call("PATCH", f"{tenant.path}/{uuid.uuid4()}", tenant.admin.headers, {}).status == 422
    assert call("PATCH", f"{tenant.path}/{uuid.uuid4()}", tenant.admin.headers, {"name": None}).status == 422
    assert call("PATCH", f"{tenant.path}/{uuid.uuid4()}", tenant.admin.headers, {"repeat": 1}).status == 404
    nul = call("POST", tenant.path, tenant.admin.headers, body_for(tenant, description="a\u0000b"))
    assert nul.status == 422
    assert json.dumps(nul.error)  # the envelope, never a 500
