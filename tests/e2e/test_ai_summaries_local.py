"""Incident summaries under the local runner (`make dev`), over real HTTP, with the Gemini API played by the local
stand-in: a member makes a summary, a viewer reads it; without a key the summary says unavailable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from observai.ai import provider
from observai_local.functions import local_overrides
from observai_local.server import start_server

from tests.helpers.ai import Arranged, incident_with_telemetry, member, opt_in
from tests.helpers.gemini_standin import GeminiStandIn, StandInRequest
from tests.helpers.http import client, ok_data

pytestmark = pytest.mark.e2e

NOW = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
API_KEY = "AIzaLocal-summaries-key-0123456789abcd"


def cited(request: StandInRequest) -> dict[str, Any]:
    ids = re.findall(r'id="((?:log|alert|trace):[^"]+)"', request.prompt)[:2]
    part = {"text": "Checkout payments timed out.", "citations": ids}
    return {"summary": part, "probable_cause": part, "impact": part, "next_steps": [part]}


@pytest.fixture
def arranged(db: psycopg.Connection[Any]) -> Arranged:
    arranged = incident_with_telemetry(db, NOW, label="AiLocal")
    opt_in(db, arranged.org_id)
    return arranged


@pytest.fixture(autouse=True)
def fresh_models() -> Iterator[None]:
    provider.reset_models()
    yield
    provider.reset_models()


def summary_path(arranged: Arranged) -> str:
    return f"/v1/projects/{arranged.project_id}/incidents/{arranged.incident_id}/summary"


def test_a_member_makes_a_summary_and_a_viewer_reads_it_over_http(
    monkeypatch: pytest.MonkeyPatch, database_url: str, db: psycopg.Connection[Any], arranged: Arranged
) -> None:
    user, _ = member(db, arranged.org_id, "member")
    viewer, _ = member(db, arranged.org_id, "viewer")
    with GeminiStandIn(responder=cited, api_key=API_KEY) as gemini:
        monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
        monkeypatch.setenv("GEMINI_BASE_URL", gemini.base_url)
        server, base_url = start_server("127.0.0.1", 0, overrides=local_overrides("test", database_url), quiet=True)
        try:
            with client(base_url, user=user) as http:
                made = http.post(summary_path(arranged))
                assert made.status_code == 201, made.text
                summary = ok_data(made, 201)
            with client(base_url, user=viewer) as http:
                read = ok_data(http.get(summary_path(arranged)))
        finally:
            server.shutdown()
            server.server_close()
    assert summary["status"] == "ok" and summary["answer"]["summary"]["citations"]
    assert read["id"] == summary["id"] and read["stale"] is False
    assert len(gemini.requests) == 1 and API_KEY not in made.text


def test_without_a_key_the_summary_says_unavailable_over_http(
    monkeypatch: pytest.MonkeyPatch, database_url: str, db: psycopg.Connection[Any], arranged: Arranged
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    user, _ = member(db, arranged.org_id, "member")
    server, base_url = start_server("127.0.0.1", 0, overrides=local_overrides("test", database_url), quiet=True)
    try:
        with client(base_url, user=user) as http:
            made = ok_data(http.post(summary_path(arranged)), 201)
    finally:
        server.shutdown()
        server.server_close()
    assert (made["status"], made["reason"], made["answer"]) == ("unavailable", "not_configured", None)
