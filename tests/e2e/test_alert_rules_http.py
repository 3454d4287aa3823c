"""Alert rules over HTTP, through the local runner serving template.yaml's routes: a rule's life from creation to
deletion as a team would live it, and tenant isolation of every alert route with real and guessed ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.http import client, error_of, ok_data
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Team:
    owner: User
    viewer: User
    project_id: str
    read_key: str

    @property
    def rules(self) -> str:
        return f"/v1/projects/{self.project_id}/alert-rules"


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def _team(conn: psycopg.Connection[Any], runner_url: str, label: str) -> Team:
    owner, viewer = make_user(conn), make_user(conn)
    with client(runner_url, user=owner) as http:
        org = ok_data(http.post("/v1/orgs", json={"name": f"{label} {uuid.uuid4().hex[:6]}"}), 201)
        project = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": f"{label} project"}), 201)
        key = ok_data(
            http.post(f"/v1/projects/{project['id']}/api-keys", json={"name": "dashboards", "scopes": ["read"]}), 201
        )
    add_membership(conn, org["id"], viewer.id, "viewer")
    return Team(owner=owner, viewer=viewer, project_id=project["id"], read_key=key["key"])


@pytest.fixture(scope="module")
def team(conn: psycopg.Connection[Any], runner_url: str) -> Team:
    return _team(conn, runner_url, "Rules team")


@pytest.fixture(scope="module")
def outsiders(conn: psycopg.Connection[Any], runner_url: str) -> Team:
    return _team(conn, runner_url, "Outsiders")


RULE = {
    "name": "Checkout errors (secret)",
    "condition": {"kind": "log", "query": 'severity>=error AND "checkout failed"', "window": "10m", "threshold": 5},
    "for": "2m",
    "severity": "error",
    "annotations": {"summary": "{{ value | int }} checkout errors in {{ labels.service }}"},
}


def test_a_rule_from_creation_to_deletion(team: Team, runner_url: str) -> None:
    with client(runner_url, user=team.owner) as owner, client(runner_url, api_key=team.read_key) as dashboards:
        # Given the team's owner creates a rule
        rule = ok_data(owner.post(team.rules, json=RULE), 201)
        path = f"{team.rules}/{rule['id']}"
        assert rule["for"] == 120 and rule["condition"]["window"] == 600 and rule["version"] == 1

        # When the dashboards (a read key) look at it and at the project's alerts
        assert ok_data(dashboards.get(path)) == rule
        assert [r["id"] for r in ok_data(dashboards.get(team.rules, params={"kind": "log"}))] == [rule["id"]]
        assert ok_data(dashboards.get(f"/v1/projects/{team.project_id}/alerts")) == []

        # And the owner raises the threshold, then disables it
        raised = ok_data(owner.patch(path, json={"condition": {**RULE["condition"], "threshold": 10}}))
        disabled = ok_data(owner.patch(path, json={"enabled": False}))
        assert raised["version"] == 2 and disabled["version"] == 2 and disabled["enabled"] is False

        # And the dashboards try to change it with their read key: refused, a read key does not write rules
        assert error_of(dashboards.patch(path, json={"enabled": True}), 403)["code"] == "scope_missing"

        # When the owner deletes it
        assert ok_data(owner.delete(path)) == {"id": rule["id"], "deleted": True, "resolved_alerts": 0}

        # Then it is gone, but the version the alerts fired under is still there for the incident
        error_of(dashboards.get(path), 404)
        first = ok_data(dashboards.get(f"{path}/versions/1"))
        assert first["definition"]["condition"]["threshold"] == 5 and first["definition"]["for"] == 120
        assert [v["version"] for v in ok_data(dashboards.get(f"{path}/versions"))] == [2, 1]


def _routes(team: Team, rule_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    path = f"{team.rules}/{rule_id}"
    return [
        ("GET", team.rules, None),
        ("POST", team.rules, {**RULE, "name": "intruder"}),
        ("GET", path, None),
        ("PUT", path, {**RULE, "name": "pwned"}),
        ("PATCH", path, {"enabled": False}),
        ("DELETE", path, None),
        ("GET", f"{path}/versions", None),
        ("GET", f"{path}/versions/1", None),
        ("GET", f"{path}/history", None),
        ("GET", f"/v1/projects/{team.project_id}/alerts", None),
    ]


def _send(http: httpx.Client, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    return http.request(method, path, json=body)


def test_outsiders_get_404_on_every_alert_route(
    team: Team, outsiders: Team, runner_url: str, conn: psycopg.Connection[Any]
) -> None:
    # Given the team's rule, and the owner of another organization
    with client(runner_url, user=team.owner) as owner:
        rule = ok_data(owner.post(team.rules, json={**RULE, "name": f"Private {uuid.uuid4().hex[:6]}"}), 201)
    before = conn.execute(
        "select id, name, version, enabled, deleted_at from public.alert_rules where project_id = %s order by id",
        (team.project_id,),
    ).fetchall()
    guessed = Team(team.owner, team.viewer, str(uuid.uuid4()), team.read_key)

    with client(runner_url, user=outsiders.owner) as outsider, client(runner_url, user=team.viewer) as viewer:
        for method, path, body in _routes(team, rule["id"]) + _routes(guessed, str(uuid.uuid4())):
            # When the outsider calls the route with the team's real ids, or guessed ones
            response = _send(outsider, method, path, body)
            # Then it is a 404 that names nothing of the team
            assert error_of(response, 404)["code"] == "not_found", (method, path)
            assert rule["name"] not in response.text

        # And the team's viewer may read every route but write none
        for method, path, body in _routes(team, rule["id"]):
            response = _send(viewer, method, path, body)
            assert response.status_code == (200 if method == "GET" else 403), (method, path, response.text)

    # And nothing of the team's rules changed
    after = conn.execute(
        "select id, name, version, enabled, deleted_at from public.alert_rules where project_id = %s order by id",
        (team.project_id,),
    ).fetchall()
    assert after == before
