"""Similar incidents and the ask routes under the local runner (`make dev`), over real HTTP: without a Gemini key
they say so (503 ai_not_configured), with one (pointed at the stand-in) a question about logs runs and answers with
its query, and an incident's similar incidents come back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.ai import provider
from observai_local.functions import local_overrides
from observai_local.server import start_server

from tests.helpers.ai import opt_in
from tests.helpers.alert_eval import add_logs
from tests.helpers.gemini_standin import GeminiStandIn
from tests.helpers.http import client, error_of, ok_data
from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush
from tests.helpers.ingest import make_project
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.e2e

API_KEY = "AIzaLocal-runner-key-similar-ask-0123"


@pytest.fixture(autouse=True)
def fresh_models() -> Iterator[None]:
    provider.reset_models()
    yield
    provider.reset_models()


def test_similar_and_ask_over_http_without_then_with_a_key(
    monkeypatch: pytest.MonkeyPatch, database_url: str, db: psycopg.Connection[Any]
) -> None:
    # Given an opted-in organization with a project, a viewer, an open incident and error lines
    now = datetime.now(UTC).replace(microsecond=0)
    project = make_project(("read",), label="LocalAsk")
    viewer = make_user(db)
    add_membership(db, project.org_id, viewer.id, "viewer")
    opt_in(db, project.org_id)
    rule = arrange_rule(db, project.org_id, project.project_id, name="CheckoutErrors")
    alert = arrange_alert(db, rule, at=now - timedelta(minutes=5), summary="checkout failing", n="local")
    incident = flush(arrange_group(db, project.org_id, project.project_id), firing=[alert], now=now)
    add_logs(project, [{"time": now - timedelta(minutes=2), "service": "checkout", "severity_number": 17,
                        "body": "card declined by gateway"}])  # fmt: skip
    ask_path = f"/v1/projects/{project.project_id}/logs/ask"
    similar_path = f"/v1/projects/{project.project_id}/incidents/{incident['id']}/similar"

    # When `make dev` runs without GEMINI_API_KEY: Then both say the features are not configured
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    server, base_url = start_server("127.0.0.1", 0, overrides=local_overrides("test", database_url), quiet=True)
    try:
        with client(base_url, user=viewer) as http:
            assert error_of(http.post(ask_path, json={"question": "errors?"}), 503)["code"] == "ai_not_configured"
            assert error_of(http.get(similar_path), 503)["code"] == "ai_not_configured"
    finally:
        server.shutdown()
        server.server_close()

    # When it runs with a key (the API pointed at the stand-in)
    with GeminiStandIn(api_key=API_KEY) as gemini:
        monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
        monkeypatch.setenv("GEMINI_BASE_URL", gemini.base_url)
        server, base_url = start_server("127.0.0.1", 0, overrides=local_overrides("test", database_url), quiet=True)
        try:
            with client(base_url, user=viewer) as http:
                gemini.answer_json({"query": "service:checkout severity>=error", "from": None, "to": None,
                                    "explanation": "checkout errors of the last hour"})  # fmt: skip
                answer = ok_data(http.post(ask_path, json={"question": "why does checkout fail?"}))
                similar = ok_data(http.get(similar_path, params={"limit": 3}))
        finally:
            server.shutdown()
            server.server_close()
    # Then the question ran as the query it returns; the organization has no past incident to compare with
    assert answer["query"] == "service:checkout severity>=error"
    assert [line["body"] for line in answer["results"]] == ["card declined by gateway"]
    assert similar == []
    assert [r.kind for r in gemini.requests] == ["generateContent"]  # no other embedding to compare with: no call
