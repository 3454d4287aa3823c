"""Tenant isolation over HTTP: nobody outside an organization learns or changes anything in it.

Every route that takes an organization, project, member or API key id is tried by an outsider (a user
who owns another organization), with the real ids and with guessed random ones; by an API key of
another organization; and by a viewer of the organization (reads allowed, writes refused).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.http import client, envelope, error_of, ok_data
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Tenant:
    owner: User
    org: dict[str, Any]
    project: dict[str, Any]
    key: dict[str, Any]  # includes the plaintext "key"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # placeholders: {org_id} {project_id} {key_id} {user_id}
    body: dict[str, Any] | None = None
    write: bool = True

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/v1/orgs/{org_id}", write=False),
    Route("PATCH", "/v1/orgs/{org_id}", {"name": "pwned"}),
    Route("PATCH", "/v1/orgs/{org_id}", {"plan": "enterprise"}),
    Route("DELETE", "/v1/orgs/{org_id}"),
    Route("GET", "/v1/orgs/{org_id}/projects", write=False),
    Route("POST", "/v1/orgs/{org_id}/projects", {"name": "intruder"}),
    Route("GET", "/v1/projects/{project_id}", write=False),
    Route("PATCH", "/v1/projects/{project_id}", {"name": "pwned"}),
    Route("DELETE", "/v1/projects/{project_id}"),
    Route("GET", "/v1/orgs/{org_id}/members", write=False),
    Route("POST", "/v1/orgs/{org_id}/members", {"user_id": "{caller_id}", "role": "owner"}),
    Route("PATCH", "/v1/orgs/{org_id}/members/{user_id}", {"role": "viewer"}),
    Route("DELETE", "/v1/orgs/{org_id}/members/{user_id}"),
    Route("POST", "/v1/orgs/{org_id}/invitations", {"email": "{new_email}", "role": "admin"}),
    Route("GET", "/v1/orgs/{org_id}/audit-log", write=False),
    Route("GET", "/v1/projects/{project_id}/api-keys", write=False),
    Route("POST", "/v1/projects/{project_id}/api-keys", {"name": "stolen", "scopes": ["ingest", "read", "admin"]}),
    Route("DELETE", "/v1/projects/{project_id}/api-keys/{key_id}"),
    Route("POST", "/v1/projects/{project_id}/api-keys/{key_id}/rotate", {"grace_period_seconds": 0}),
    Route("GET", "/v1/projects/{project_id}/logs?q=secret", write=False),
    Route("GET", "/v1/projects/{project_id}/logs/histogram", write=False),
    Route("GET", "/v1/orgs/{org_id}/schedules", write=False),
    Route(
        "POST",
        "/v1/orgs/{org_id}/schedules",
        {
            "name": "intruder",
            "time_zone": "UTC",
            "layers": [
                {
                    "name": "l",
                    "users": ["00000000-0000-0000-0000-000000000001"],
                    "rotation": {"unit": "days", "length": 1},
                    "start": "2026-01-01T00:00:00Z",
                }
            ],
        },
    ),
    Route("GET", "/v1/projects/{project_id}/escalation-policies", write=False),
    Route(
        "POST",
        "/v1/projects/{project_id}/escalation-policies",
        {"name": "intruder", "steps": [{"targets": [{"type": "user", "id": "00000000-0000-0000-0000-000000000001"}]}]},
    ),
    Route("GET", "/v1/projects/{project_id}/anomaly-detectors", write=False),
    Route("POST", "/v1/projects/{project_id}/anomaly-detectors", {"name": "intruder", "query": {"name": "cpu"}}),
    Route("GET", "/v1/projects/{project_id}/anomalies", write=False),
    Route("GET", "/v1/projects/{project_id}/anomaly-groups", write=False),
    Route("GET", "/v1/orgs/{org_id}/ai", write=False),
    Route("PUT", "/v1/orgs/{org_id}/ai", {"enabled": True}),
    Route("GET", "/v1/orgs/{org_id}/usage", write=False),
]
IDS = [f"{r.method} {r.path}" + (" plan" if r.body and "plan" in r.body else "") for r in ROUTES]

# What a viewer of the organization gets: reads they may do are 200, the rest 403 (written out, not derived).
VIEWER_STATUS = {
    "GET /v1/orgs/{org_id}": 200,
    "GET /v1/orgs/{org_id}/projects": 200,
    "GET /v1/projects/{project_id}": 200,
    "GET /v1/orgs/{org_id}/members": 200,
    "GET /v1/orgs/{org_id}/audit-log": 403,  # audit.read: admins and owners
    "GET /v1/projects/{project_id}/api-keys": 403,  # api_key.read: members and up
    "GET /v1/projects/{project_id}/logs?q=secret": 200,  # telemetry.read: viewers and up
    "GET /v1/projects/{project_id}/logs/histogram": 200,
    "GET /v1/orgs/{org_id}/schedules": 200,  # every member reads on-call schedules
    "GET /v1/projects/{project_id}/escalation-policies": 200,  # viewers and up read escalation policies
    "GET /v1/projects/{project_id}/anomaly-detectors": 200,  # telemetry.read: viewers and up
    "GET /v1/projects/{project_id}/anomalies": 200,
    "GET /v1/projects/{project_id}/anomaly-groups": 200,
    "GET /v1/orgs/{org_id}/ai": 200,  # every member reads the AI opt-in; owners and admins change it
    "GET /v1/orgs/{org_id}/usage": 200,
}


@pytest.fixture(autouse=True)
def _no_api_key_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY_CACHE_TTL_S", "0")


def _tenant(conn: psycopg.Connection[Any], runner_url: str, label: str) -> Tenant:
    owner = make_user(conn, f"{label}-{uuid.uuid4().hex[:8]}@example.test")
    with client(runner_url, user=owner) as http:
        org = ok_data(http.post("/v1/orgs", json={"name": f"{label} Secret Org {uuid.uuid4().hex[:6]}"}), 201)
        project = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": f"{label} secret project"}), 201)
        key = ok_data(
            http.post(f"/v1/projects/{project['id']}/api-keys", json={"name": f"{label} key", "scopes": ["read"]}),
            201,
        )
    return Tenant(owner=owner, org=org, project=project, key=key)


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture(scope="module")
def tenant_a(conn: psycopg.Connection[Any], runner_url: str) -> Tenant:
    return _tenant(conn, runner_url, "alpha")


@pytest.fixture(scope="module")
def tenant_b(conn: psycopg.Connection[Any], runner_url: str) -> Tenant:
    return _tenant(conn, runner_url, "beta")


def fill(route: Route, *, org_id: Any, project_id: Any, key_id: Any, user_id: Any, caller_id: Any) -> tuple[str, Any]:
    values = {
        "org_id": str(org_id),
        "project_id": str(project_id),
        "key_id": str(key_id),
        "user_id": str(user_id),
        "caller_id": str(caller_id),
        "new_email": f"invitee-{uuid.uuid4().hex[:8]}@example.test",
    }
    path = route.path.format(**values)
    body = None
    if route.body is not None:
        body = {k: v.format(**values) if isinstance(v, str) else v for k, v in route.body.items()}
    return path, body


def send(http: httpx.Client, route: Route, path: str, body: Any) -> httpx.Response:
    return http.request(route.method, path, json=body if route.body is not None else None)


def real_ids(tenant: Tenant, caller: User) -> dict[str, Any]:
    return {
        "org_id": tenant.org["id"],
        "project_id": tenant.project["id"],
        "key_id": tenant.key["id"],
        "user_id": tenant.owner.id,
        "caller_id": caller.id,
    }


def fingerprint(conn: psycopg.Connection[Any], tenant: Tenant) -> dict[str, Any]:
    """Everything of the tenant an attack could change."""
    org_id = tenant.org["id"]
    return {
        "org": conn.execute(
            "select name, slug, plan, updated_at from public.organizations where id = %s", (org_id,)
        ).fetchall(),
        "projects": conn.execute(
            "select id, name, slug, updated_at from public.projects where org_id = %s order by id", (org_id,)
        ).fetchall(),
        "members": conn.execute(
            "select user_id, role from public.memberships where org_id = %s order by user_id", (org_id,)
        ).fetchall(),
        "keys": conn.execute(
            "select id, revoked_at, expires_at from public.api_keys where org_id = %s order by id", (org_id,)
        ).fetchall(),
        "invitations": conn.execute(
            "select count(*) as n from public.invitations where org_id = %s", (org_id,)
        ).fetchone(),
        "schedules": conn.execute(
            "select count(*) as n, max(updated_at) as last from public.oncall_schedules where org_id = %s", (org_id,)
        ).fetchone(),
        "escalation_policies": conn.execute(
            "select count(*) as n, max(updated_at) as last from public.escalation_policies where org_id = %s",
            (org_id,),
        ).fetchone(),
        "anomaly_detectors": conn.execute(
            "select count(*) as n, max(updated_at) as last from public.anomaly_detectors where org_id = %s", (org_id,)
        ).fetchone(),
        "ai": conn.execute(
            "select enabled, updated_at from public.org_ai_settings where org_id = %s", (org_id,)
        ).fetchall(),
        "audit": conn.execute(
            "select max(id) as last, count(*) as n from public.audit_log where org_id = %s", (org_id,)
        ).fetchone(),
    }


def assert_leaks_nothing(response: httpx.Response, tenant: Tenant) -> None:
    text = response.text
    for secret in (
        tenant.org["name"],
        tenant.org["slug"],
        tenant.project["name"],
        tenant.project["slug"],
        tenant.owner.email,
        tenant.key["prefix"],
        tenant.key["name"],
    ):
        assert secret not in text, f"{secret!r} leaked in {text}"


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_outsider_gets_404_on_every_route(
    route: Route, tenant_a: Tenant, tenant_b: Tenant, conn: psycopg.Connection[Any], runner_url: str
) -> None:
    # Given A's organization and an outsider: a user who owns another organization (B's)
    outsider = make_user(conn)
    add_membership(conn, tenant_b.org["id"], outsider.id, "owner")
    before = fingerprint(conn, tenant_a)
    with client(runner_url, user=outsider) as http:
        # When the outsider calls the route on A's real ids, and on guessed random ids
        real = send(http, route, *fill(route, **real_ids(tenant_a, outsider)))
        guessed = send(
            http,
            route,
            *fill(
                route,
                org_id=uuid.uuid4(),
                project_id=uuid.uuid4(),
                key_id=uuid.uuid4(),
                user_id=uuid.uuid4(),
                caller_id=outsider.id,
            ),
        )
    # Then both are 404 in the envelope, never a 200 and never A's data
    real_error = error_of(real, 404)
    guessed_error = error_of(guessed, 404)
    assert_leaks_nothing(real, tenant_a)
    # And A's real ids answer exactly like ids that do not exist: existence is not revealed
    assert real_error["code"] == guessed_error["code"]
    assert real_error["message"] == guessed_error["message"]
    # And nothing of A changed
    assert fingerprint(conn, tenant_a) == before


@pytest.mark.parametrize("route", [r for r in ROUTES if "{key_id}" in r.path], ids=lambda r: r.id)
def test_owner_of_another_project_cannot_reach_a_key_through_their_own_project(
    route: Route, tenant_a: Tenant, tenant_b: Tenant, conn: psycopg.Connection[Any], runner_url: str
) -> None:
    # Given B's owner, who may manage keys of B's project, and the id of A's key
    before = fingerprint(conn, tenant_a)
    ids = {**real_ids(tenant_b, tenant_b.owner), "key_id": tenant_a.key["id"]}
    # When B addresses A's key under B's own project
    with client(runner_url, user=tenant_b.owner) as http:
        response = send(http, route, *fill(route, **ids))
    # Then the key is not found there, and A's key is untouched
    assert error_of(response, 404)["code"] == "not_found"
    assert_leaks_nothing(response, tenant_a)
    assert fingerprint(conn, tenant_a) == before


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_api_key_of_one_tenant_cannot_use_another_tenants_routes(
    route: Route, tenant_a: Tenant, tenant_b: Tenant, conn: psycopg.Connection[Any], runner_url: str
) -> None:
    # Given A's API key (x-api-key) and B's organization
    before = fingerprint(conn, tenant_b)
    path, body = fill(route, **real_ids(tenant_b, tenant_a.owner))
    # When the key is used on B's route, also as a bearer token
    for headers in ({"x-api-key": tenant_a.key["key"]}, {"Authorization": f"Bearer {tenant_a.key['key']}"}):
        with client(runner_url, headers=headers) as http:
            response = send(http, route, path, body)
        # Then it is refused (organization management needs a user token), with nothing of B's
        assert error_of(response, (403, 404))["code"] in ("user_token_required", "not_found")
        assert_leaks_nothing(response, tenant_b)
    assert fingerprint(conn, tenant_b) == before


def test_api_key_sees_only_its_own_tenant(tenant_a: Tenant, tenant_b: Tenant, runner_url: str) -> None:
    # Given A's API key
    # When it asks who it is
    me = ok_data(httpx.get(f"{runner_url}/v1/whoami", headers={"x-api-key": tenant_a.key["key"]}))
    # Then it is bound to A's organization and project only
    assert me["org_id"] == tenant_a.org["id"] and me["project_id"] == tenant_a.project["id"]
    assert tenant_b.org["id"] not in str(me)


def test_outsider_lists_only_their_own_organizations(
    tenant_a: Tenant, tenant_b: Tenant, conn: psycopg.Connection[Any], runner_url: str
) -> None:
    # Given an outsider in B's organization
    outsider = make_user(conn)
    add_membership(conn, tenant_b.org["id"], outsider.id, "member")
    with client(runner_url, user=outsider) as http:
        # When they list organizations and ask who they are
        orgs = http.get("/v1/orgs")
        me = ok_data(http.get("/v1/whoami"))
    # Then only B's organization is there, nothing of A's
    assert [o["id"] for o in ok_data(orgs)] == [tenant_b.org["id"]]
    assert [m["org_id"] for m in me["memberships"]] == [tenant_b.org["id"]]
    assert_leaks_nothing(orgs, tenant_a)


@pytest.mark.parametrize(
    "route",
    ROUTES,
    ids=IDS,
)
def test_viewer_reads_but_cannot_write(
    route: Route, tenant_a: Tenant, conn: psycopg.Connection[Any], runner_url: str
) -> None:
    # Given a viewer of A's organization
    viewer = make_user(conn)
    add_membership(conn, tenant_a.org["id"], viewer.id, "viewer")
    before = fingerprint(conn, tenant_a)
    expected = VIEWER_STATUS.get(route.id, 403)
    assert not route.write or expected == 403
    # When the viewer calls the route on A's real ids
    with client(runner_url, user=viewer) as http:
        response = send(http, route, *fill(route, **real_ids(tenant_a, viewer)))
    # Then reads they are allowed answer 200 and everything else 403 in the envelope (never 404: they are a member)
    if expected == 200:
        ok_data(response)
    else:
        assert error_of(response, 403)["code"] == "forbidden"
        assert envelope(response)["error"]["details"]["action"]
    # And nothing of A changed
    after = fingerprint(conn, tenant_a)
    before["members"] = [m for m in before["members"] if m["user_id"] != viewer.id]
    after["members"] = [m for m in after["members"] if m["user_id"] != viewer.id]
    assert after == before


def test_viewer_may_leave(tenant_a: Tenant, conn: psycopg.Connection[Any], runner_url: str) -> None:
    # Given a viewer of A's organization
    viewer = make_user(conn)
    add_membership(conn, tenant_a.org["id"], viewer.id, "viewer")
    with client(runner_url, user=viewer) as http:
        # When they remove themselves
        left = http.delete(f"/v1/orgs/{tenant_a.org['id']}/members/{viewer.id}")
        # Then they are out, and the organization is now hidden from them
        assert ok_data(left)["id"] == str(viewer.id)
        assert error_of(http.get(f"/v1/orgs/{tenant_a.org['id']}"), 404)


def test_removed_member_loses_access_at_once(tenant_a: Tenant, conn: psycopg.Connection[Any], runner_url: str) -> None:
    # Given a member who could read the organization
    member = make_user(conn)
    add_membership(conn, tenant_a.org["id"], member.id, "member")
    with client(runner_url, user=member) as http:
        ok_data(http.get(f"/v1/projects/{tenant_a.project['id']}"))
        # When the owner removes them
        with client(runner_url, user=tenant_a.owner) as owner:
            ok_data(owner.delete(f"/v1/orgs/{tenant_a.org['id']}/members/{member.id}"))
        # Then their still-valid token no longer reaches anything of the organization
        assert error_of(http.get(f"/v1/projects/{tenant_a.project['id']}"), 404)
        assert error_of(http.get(f"/v1/projects/{tenant_a.project['id']}/api-keys"), 404)
