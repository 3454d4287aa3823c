"""Hostile input to the AI routes over HTTP, as an attacker sends it: NUL and lone surrogates in strings, 1e308 and
2^64 in numbers, 10,000-deep JSON, another tenant's ids. Always a 4xx in the envelope, never a 500, and nothing
written: the organization's opt-in stays as it was, no summary, usage or task row appears."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.helpers.http import client, envelope, ok_data
from tests.helpers.users import User, make_user

pytestmark = pytest.mark.e2e

NUL = "why\u0000did it fail"
SURROGATE = '"why \\ud800 did it fail"'  # a lone surrogate, as JSON text can spell it
DEEP = "[" * 10_000 + "]" * 10_000


@pytest.fixture
def owner(db) -> User:
    return make_user(db)


@pytest.fixture
def http(runner_url: str, owner: User) -> httpx.Client:
    with client(runner_url, user=owner) as c:
        yield c


@pytest.fixture
def workspace(http: httpx.Client) -> dict[str, Any]:
    org = ok_data(http.post("/v1/orgs", json={"name": f"Hostile AI {uuid.uuid4().hex[:6]}"}), 201)
    project = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "hostile-ai"}), 201)
    return {"org": org, "project": project, "base": f"/v1/projects/{project['id']}"}


def _rows(db, workspace: dict[str, Any]) -> dict[str, Any]:
    org_id = workspace["org"]["id"]
    return {
        table: db.execute(f"select count(*) as n from public.{table} where org_id = %s", (org_id,)).fetchone()["n"]
        for table in ("org_ai_settings", "ai_usage", "incident_summaries", "ai_tasks")
    }


def test_hostile_bodies_and_parameters_are_4xx_never_500_and_write_nothing(
    http: httpx.Client, workspace: dict[str, Any], db
) -> None:
    org, base = workspace["org"], workspace["base"]
    incident = uuid.uuid4()
    before, opt_in = _rows(db, workspace), ok_data(http.get(f"/v1/orgs/{org['id']}/ai"))
    bodies = {
        f"{base}/logs/ask": [
            json.dumps({"question": NUL}),
            '{"question": ' + SURROGATE + "}",
            json.dumps({"question": "errors?", "from": 1e308}),
            json.dumps({"question": "x" * 100_000}),
            DEEP,
        ],
        f"{base}/metrics/ask": [
            json.dumps({"question": NUL}),
            '{"question": ' + SURROGATE + "}",
            json.dumps({"question": "latency?", "to": 2**64}),
            DEEP,
        ],
        f"{base}/incidents/{incident}/summary": [DEEP, '{"x": ' + SURROGATE + "}"],
    }
    for path, payloads in bodies.items():
        for body in payloads:
            # When the body is posted
            response = http.post(path, content=body.encode("utf-8", "surrogatepass"),
                                 headers={"content-type": "application/json"})  # fmt: skip
            # Then a 4xx in the envelope, never a 500
            assert 400 <= response.status_code < 500, (path, body[:80], response.status_code, response.text[:300])
            assert envelope(response)["error"]["code"], (path, body[:80])
    puts = [json.dumps({"enabled": 1e308}), json.dumps({"enabled": 2**64}), '{"enabled": ' + SURROGATE + "}", DEEP]
    for body in puts:
        response = http.put(f"/v1/orgs/{org['id']}/ai", content=body.encode("utf-8", "surrogatepass"),
                            headers={"content-type": "application/json"})  # fmt: skip
        assert 400 <= response.status_code < 500, (body[:80], response.status_code, response.text[:300])
    for query in (f"limit={2**64}", "limit=1e308", "limit=%00"):
        response = http.get(f"{base}/incidents/{incident}/similar?{query}")
        assert 400 <= response.status_code < 500, (query, response.status_code, response.text[:300])
    # And nothing was written: the opt-in is as it was, no usage, summary or task
    assert _rows(db, workspace) == before
    assert ok_data(http.get(f"/v1/orgs/{org['id']}/ai")) == opt_in


def test_another_tenants_ids_are_404_and_change_nothing(
    runner_url: str, db, workspace: dict[str, Any], http: httpx.Client
) -> None:
    # Given the owner of another organization
    stranger = make_user(db)
    org, base = workspace["org"], workspace["base"]
    before, opt_in = _rows(db, workspace), ok_data(http.get(f"/v1/orgs/{org['id']}/ai"))
    incident = uuid.uuid4()
    with client(runner_url, user=stranger) as other:
        # When they turn this organization's AI on, ask about its logs, or read its incidents' summaries
        attempts = [
            other.put(f"/v1/orgs/{org['id']}/ai", json={"enabled": True}),
            other.get(f"/v1/orgs/{org['id']}/ai"),
            other.post(f"{base}/logs/ask", json={"question": "what failed?"}),
            other.post(f"{base}/metrics/ask", json={"question": "latency?"}),
            other.post(f"{base}/incidents/{incident}/summary"),
            other.get(f"{base}/incidents/{incident}/summary"),
            other.get(f"{base}/incidents/{incident}/similar"),
        ]
    # Then each is refused without saying whether anything exists, and nothing changed
    assert [a.status_code for a in attempts] == [404] * 7, [a.text[:200] for a in attempts]
    assert _rows(db, workspace) == before
    assert ok_data(http.get(f"/v1/orgs/{org['id']}/ai")) == opt_in
