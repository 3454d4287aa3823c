"""Hostile bodies to the paging and anomaly routes over HTTP, as an attacker sends them: NUL and lone surrogates in
strings, 1e308 and 2^64 in numbers, 10,000-deep JSON, another tenant's ids. Always a 4xx in the envelope, never a
500, and nothing written: the good contact point, policy, schedule and detector beside them are still there, as
they were."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.helpers.http import client, envelope, ok_data
from tests.helpers.users import User, make_user

pytestmark = pytest.mark.e2e

NUL = "bad\u0000name"
SURROGATE = '"bad\\ud800name"'  # a lone surrogate, as JSON text can spell it
DEEP = "[" * 10_000 + "]" * 10_000


@pytest.fixture
def owner(db) -> User:
    return make_user(db)


@pytest.fixture
def http(runner_url: str, owner: User) -> httpx.Client:
    with client(runner_url, user=owner) as c:
        yield c


@pytest.fixture
def workspace(http: httpx.Client, owner: User) -> dict[str, Any]:
    org = ok_data(http.post("/v1/orgs", json={"name": f"Hostile {uuid.uuid4().hex[:6]}"}), 201)
    project = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "hostile"}), 201)
    base = f"/v1/projects/{project['id']}"
    good = {
        "contact_point": ok_data(
            http.post(f"{base}/contact-points", json={"name": "ops", "kind": "email",
                                                      "settings": {"addresses": ["ops@example.test"]}}), 201
        ),
        "policy": ok_data(
            http.post(f"{base}/escalation-policies", json={
                "name": "oncall", "steps": [{"wait_minutes": 5, "targets": [{"type": "user", "id": str(owner.id)}]}]}),
            201,
        ),
        "schedule": ok_data(
            http.post(f"/v1/orgs/{org['id']}/schedules", json={
                "name": "primary", "time_zone": "Europe/Berlin",
                "layers": [{"name": "l", "users": [str(owner.id)], "rotation": {"unit": "days", "length": 1},
                            "start": "2026-01-01T09:00:00Z"}]}),
            201,
        ),
        "detector": ok_data(
            http.post(f"{base}/anomaly-detectors", json={
                "name": "cpu", "query": {"name": "cpu", "aggregation": "avg"}, "interval_s": 60}),
            201,
        ),
    }  # fmt: skip
    return {"org": org, "project": project, "base": base, "good": good}


def _hostile_bodies(owner: User) -> dict[str, list[str]]:
    """Per route (relative to the project, or the organization for schedules): raw bodies, as text."""
    other = str(uuid.uuid4())
    me = [{"type": "user", "id": str(owner.id)}]
    return {
        "contact-points": [
            json.dumps({"name": NUL, "kind": "email", "settings": {"addresses": ["a@example.test"]}}),
            '{"name": ' + SURROGATE + ', "kind": "email", "settings": {"addresses": ["a@example.test"]}}',
            json.dumps({"name": "x", "kind": "pagerduty", "settings": {"routing_key": "k" * 32, "severity_map": {
                "critical": 1e308}}}),
            DEEP,
        ],
        "escalation-policies": [
            json.dumps({"name": "p2", "steps": [{"wait_minutes": 1e308, "targets": me}]}),
            json.dumps({"name": "p3", "steps": [{"wait_minutes": 2**64, "targets": me}]}),
            json.dumps({"name": "p4", "steps": [{"wait_minutes": 1, "targets": [{"type": "schedule", "id": other}]}]}),
            json.dumps({"name": "p5", "repeat": 2**64, "steps": [{"wait_minutes": 1, "targets": []}]}),
            DEEP,
        ],
        "anomaly-detectors": [
            json.dumps({"name": NUL, "query": {"name": "cpu"}, "interval_s": 60}),
            json.dumps({"name": "d", "query": {"name": "cpu"}, "interval_s": 2**64}),
            json.dumps({"name": "d", "query": {"name": "cpu"}, "interval_s": 60, "settings": {"deviations": 1e308}}),
            DEEP,
        ],
        "anomaly-detectors/backtest": [
            json.dumps({"detector": {}, "points": [{"time": "2026-01-01T00:00:00Z", "value": 1e308}] * 3}),
            json.dumps({"detector": {"window": 2**64}, "points": []}),
            '{"detector": {}, "points": [{"time": ' + SURROGATE + ', "value": 1}]}',
            DEEP,
        ],
        "schedules": [
            json.dumps({"name": NUL, "time_zone": "UTC", "layers": []}),
            json.dumps({"name": "s", "time_zone": "Mars/Olympus", "layers": [{"name": "l", "users": [other],
                        "rotation": {"unit": "days", "length": 2**64}, "start": "2026-01-01T00:00:00Z"}]}),
            DEEP,
        ],
    }  # fmt: skip


def test_hostile_bodies_are_4xx_never_500_and_write_nothing(
    http: httpx.Client, owner: User, workspace: dict[str, Any], db
) -> None:
    org, base = workspace["org"], workspace["base"]
    counts_before, rows_before = _counts(db, workspace), _reads(http, workspace)
    for route, bodies in _hostile_bodies(owner).items():
        path = f"/v1/orgs/{org['id']}/{route}" if route == "schedules" else f"{base}/{route}"
        for body in bodies:
            # When the body is posted
            response = http.post(path, content=body.encode("utf-8", "surrogatepass"),
                                 headers={"content-type": "application/json"})  # fmt: skip
            # Then a 4xx in the envelope, never a 500
            assert 400 <= response.status_code < 500, (route, body[:80], response.status_code, response.text[:300])
            assert envelope(response)["error"]["code"], (route, body[:80])
    # And nothing was written; the good rows beside them are as they were
    assert _counts(db, workspace) == counts_before
    assert _reads(http, workspace) == rows_before


def test_another_tenants_ids_are_404_and_change_nothing(
    runner_url: str, db, workspace: dict[str, Any], http: httpx.Client
) -> None:
    # Given the owner of another organization
    stranger = make_user(db)
    good, org, base = workspace["good"], workspace["org"], workspace["base"]
    rows_before = _reads(http, workspace)
    with client(runner_url, user=stranger) as other:
        # When they read, change or delete this organization's rows by id
        attempts = [
            other.patch(f"{base}/contact-points/{good['contact_point']['id']}", json={"name": "mine"}),
            other.delete(f"{base}/escalation-policies/{good['policy']['id']}"),
            other.patch(f"/v1/orgs/{org['id']}/schedules/{good['schedule']['id']}", json={"name": "mine"}),
            other.delete(f"{base}/anomaly-detectors/{good['detector']['id']}"),
            other.get(f"{base}/anomaly-detectors/{good['detector']['id']}/bands"),
            other.post(f"{base}/contact-points/{good['contact_point']['id']}/test"),
        ]
    # Then each is refused without saying whether the row exists, and nothing changed
    assert [a.status_code for a in attempts] == [404] * 6, [a.text[:200] for a in attempts]
    assert _reads(http, workspace) == rows_before


def _reads(http: httpx.Client, workspace: dict[str, Any]) -> list[Any]:
    good, org, base = workspace["good"], workspace["org"], workspace["base"]
    return [
        ok_data(http.get(f"{base}/contact-points/{good['contact_point']['id']}")),
        ok_data(http.get(f"{base}/escalation-policies/{good['policy']['id']}")),
        ok_data(http.get(f"/v1/orgs/{org['id']}/schedules/{good['schedule']['id']}")),
        ok_data(http.get(f"{base}/anomaly-detectors/{good['detector']['id']}")),
    ]


def _counts(db, workspace: dict[str, Any]) -> dict[str, int]:
    project_id, org_id = workspace["project"]["id"], workspace["org"]["id"]
    counts = {
        table: db.execute(f"select count(*) as n from public.{table} where project_id = %s", (project_id,)).fetchone()[
            "n"
        ]
        for table in ("contact_points", "escalation_policies", "anomaly_detectors", "notification_deliveries")
    }
    counts["oncall_schedules"] = db.execute(
        "select count(*) as n from public.oncall_schedules where org_id = %s", (org_id,)
    ).fetchone()["n"]
    return counts
