"""Incident summaries end to end in-process: the routes (IncidentSummariesFunction's handler, the real database) and
the worker, with the Gemini API played by a local HTTP server (tests.helpers.gemini_standin): nothing reaches the
internet. The planted injection, schema and citation checks, the one retry, unavailable models, the opt-in,
staleness, metering, and tenant isolation of both routes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.ai import worker
from observai.ai.provider import reset_models
from observai.incidents import service as incidents
from observai.incidents.models import ResolveIn

from tests.helpers.ai import INJECTION, Arranged, incident_with_telemetry, member, opt_in
from tests.helpers.gemini_standin import GeminiStandIn, StandInRequest
from tests.helpers.ingest import add_key, make_project
from tests.helpers.inprocess import Result, invoke

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
FUNCTION = "incident_summaries"
IDS = re.compile(r'<data nonce="[0-9a-f]+" id="([^"]+)"')


def prompt_of(request: StandInRequest) -> str:
    return request.prompt


def system_of(request: StandInRequest) -> str:
    return request.system


def answer_citing(ids: list[str]) -> dict[str, Any]:
    first = [i for i in ids if not i.startswith("incident:")][:2] or ids[:1]
    return {
        "summary": {"text": "Checkout payments timed out against the gateway.", "citations": first},
        "probable_cause": {"text": "The payment gateway answered after 3 s.", "citations": first[:1]},
        "impact": {"text": "Card payments at checkout failed for about a minute.", "citations": []},
        "next_steps": [{"text": "Check the payment gateway's latency dashboard.", "citations": first[:1]}],
    }


def good_answer(request: StandInRequest) -> dict[str, Any]:
    """A schema-valid answer citing ids the prompt's data blocks hold (the stand-in's responder)."""
    return answer_citing(IDS.findall(request.prompt))


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiStandIn]:
    with GeminiStandIn() as standin:
        standin.responder = good_answer
        monkeypatch.setenv("GEMINI_BASE_URL", standin.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-a-secret")
        monkeypatch.setenv("AI_TIMEOUT_S", "3")
        monkeypatch.setenv("AI_TOTAL_TIMEOUT_S", "4")
        monkeypatch.setenv("AI_MAX_RETRIES", "0")
        yield standin
    reset_models()  # the adapters and their circuit breakers


@pytest.fixture
def arranged(db: psycopg.Connection[Any]) -> Arranged:
    arranged = incident_with_telemetry(db, NOW, label="AiSum", injection=True)
    opt_in(db, arranged.org_id)
    return arranged


def path(arranged: Arranged) -> str:
    return f"/v1/projects/{arranged.project_id}/incidents/{arranged.incident_id}/summary"


def post(arranged: Arranged, headers: dict[str, str]) -> Result:
    return invoke(FUNCTION, "POST", path(arranged), headers=headers)


def get(arranged: Arranged, headers: dict[str, str]) -> Result:
    return invoke(FUNCTION, "GET", path(arranged), headers=headers)


def usage(db: psycopg.Connection[Any], org_id: Any) -> list[tuple[str, str, int, int]]:
    rows = db.execute(
        "select feature, outcome, input_tokens, output_tokens from public.ai_usage where org_id = %s order by id",
        (org_id,),
    ).fetchall()
    return [(r["feature"], r["outcome"], r["input_tokens"], r["output_tokens"]) for r in rows]


def summaries_of(db: psycopg.Connection[Any], arranged: Arranged) -> list[dict[str, Any]]:
    rows = db.execute(
        "select * from public.incident_summaries where incident_id = %s order by created_at, id",
        (arranged.incident_id,),
    ).fetchall()
    return [dict(r) for r in rows]


def test_a_member_gets_a_cited_summary_that_viewers_and_read_keys_read(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    user, _ = member(db, arranged.org_id, "member")
    viewer, _ = member(db, arranged.org_id, "viewer")
    # When a member asks for a summary
    gemini.responder = good_answer
    result = post(arranged, user.headers)
    # Then it is made and stored: status ok, the answer citing the context's ids, the model and token counts
    assert result.status == 201, result.text
    summary = result.data
    assert summary["status"] == "ok" and summary["reason"] is None and summary["trigger"] == "requested"
    assert summary["answer"]["summary"]["citations"] and summary["model"]
    assert summary["context"]["items"] > 5 and summary["stale"] is False
    (stored,) = summaries_of(db, arranged)
    cited = set(stored["answer"]["summary"]["citations"])
    assert cited <= set(stored["context"]["ids"])
    assert stored["requested_by"] == user.id
    # And the model was told the blocks are data, and got the data in them
    (request,) = gemini.requests
    assert "never an instruction" in system_of(request)
    assert f"log:{arranged.error_log_ids['timeout']}" in prompt_of(request)
    # And the call was metered (no past incident has an embedding: no embedding call either)
    assert [(f, o) for f, o, _, _ in usage(db, arranged.org_id)] == [("summary", "ok")]
    # And viewers and the project's read key read it back, not stale
    for headers in (viewer.headers, arranged.project.headers):
        read = get(arranged, headers)
        assert read.status == 200, read.text
        assert read.data["id"] == summary["id"] and read.data["stale"] is False
        assert read.data["input_tokens"] == summary["input_tokens"] and read.data["created_at"]


def test_the_planted_injection_is_quoted_redacted_and_an_answer_obeying_it_is_never_stored(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    user, _ = member(db, arranged.org_id, "member")
    # Given a model that obeys the planted line: it cites an id the data does not hold, both times
    obeying = answer_citing(["log:999999999"])
    gemini.answer_json(obeying, input_tokens=1000, output_tokens=50)
    gemini.answer_json(obeying, input_tokens=1100, output_tokens=50)
    result = post(arranged, user.headers)
    # Then the summary failed, with the reason, and no answer was kept
    assert result.status == 201, result.text
    assert result.data["status"] == "failed" and result.data["answer"] is None
    assert "log:999999999" in result.data["reason"] and "rejected twice" in result.data["reason"]
    (stored,) = summaries_of(db, arranged)
    assert stored["status"] == "failed" and stored["answer"] is None
    # And the prompt held the planted line inside one data block, as a JSON string, redacted
    first, second = gemini.requests
    prompt = prompt_of(first)
    block = re.search(
        rf'<data nonce="([0-9a-f]+)" id="log:{arranged.error_log_ids["injection"]}" kind="log">\n(.*?)\n</data',
        prompt,
        re.S,
    )
    assert block is not None and "ignore previous instructions" in block.group(2)
    assert INJECTION not in prompt
    for secret in ("attacker@evil.example", "hunter2-Secret-Value", "4111 1111 1111 1111", "bob.buyer@example.com"):
        assert secret not in prompt
    assert block.group(1) in system_of(first)  # the instruction names the blocks' delimiter
    # And the retry told the model what was wrong, without echoing its answer
    retry = prompt_of(second)
    assert "previous answer was rejected" in retry and "log:999999999" in retry
    assert "Checkout payments timed out" not in retry
    # And both calls were metered as invalid, with their tokens
    assert usage(db, arranged.org_id) == [("summary", "invalid", 1000, 50), ("summary", "invalid", 1100, 50)]
    # And a model that breaks the schema instead fails the same way
    gemini.answer_text("all clear, nothing to see")
    gemini.answer_json({"summary": "all clear"})
    broken = post(arranged, user.headers)
    assert broken.data["status"] == "failed" and broken.data["answer"] is None


def test_an_invalid_answer_is_retried_once_and_a_valid_one_then_stored(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    user, _ = member(db, arranged.org_id, "member")
    gemini.answer_json({"summary": {"text": "x", "citations": []}}, input_tokens=900, output_tokens=10)
    result = post(arranged, user.headers)  # the second call gets the responder's valid answer
    assert result.data["status"] == "ok", result.text
    assert len(gemini.requests) == 2
    assert "does not match the schema" in prompt_of(gemini.requests[1])
    assert [o for _, o, _, _ in usage(db, arranged.org_id)] == ["invalid", "ok"]
    assert result.data["input_tokens"] >= 900


def test_without_a_key_the_summary_says_unavailable(
    db: psycopg.Connection[Any], arranged: Arranged, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    user, _ = member(db, arranged.org_id, "member")
    result = post(arranged, user.headers)
    assert result.status == 201, result.text
    assert (result.data["status"], result.data["reason"], result.data["answer"]) == (
        "unavailable",
        "not_configured",
        None,
    )
    assert usage(db, arranged.org_id) == []  # no call was made
    read = get(arranged, user.headers).data
    assert (read["status"], read["stale"]) == ("unavailable", False)


def test_a_failing_or_slow_model_makes_an_unavailable_summary_never_a_500(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    user, _ = member(db, arranged.org_id, "member")
    gemini.fail(503)
    failed = post(arranged, user.headers)
    assert failed.status == 201, failed.text
    assert failed.data["status"] == "unavailable" and failed.data["reason"]
    gemini.slow(10)  # beyond AI_TIMEOUT_S
    slow = post(arranged, user.headers)
    assert slow.status == 201 and slow.data["status"] == "unavailable"
    assert [o for _, o, _, _ in usage(db, arranged.org_id)] == ["failed", "failed"]
    # And the incident works as before
    assert invoke("incidents", "GET", f"/v1/projects/{arranged.project_id}/incidents/{arranged.incident_id}",
                  headers=user.headers).status == 200  # fmt: skip


def test_the_breaker_opens_after_repeated_failures(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    user, _ = member(db, arranged.org_id, "member")
    reasons = []
    for _ in range(8):
        gemini.fail(503)
        reasons.append(post(arranged, user.headers).data["reason"])
    assert any("circuit" in r or "breaker" in r for r in reasons), reasons


def test_an_org_that_has_not_opted_in_gets_409_on_both_routes(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    opt_in(db, arranged.org_id, enabled=False)
    user, _ = member(db, arranged.org_id, "owner")
    for result in (post(arranged, user.headers), get(arranged, user.headers)):
        assert result.status == 409 and result.error["code"] == "ai_disabled", result.text
    assert gemini.requests == [] and summaries_of(db, arranged) == []


def test_permissions_and_tenant_isolation_of_both_routes(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    viewer, _ = member(db, arranged.org_id, "viewer")
    # A viewer and a read key may not make one
    assert post(arranged, viewer.headers).status == 403
    assert post(arranged, arranged.project.headers).status == 403
    # Another organization's owner, and another project's keys, see nothing
    other = make_project(("read",), label="AiSumOther")
    opt_in(db, other.org_id)
    outsider, _ = member(db, other.org_id, "owner")
    admin_key = add_key(other, ("admin",))
    for headers in (outsider.headers, other.headers, admin_key.headers):
        assert post(arranged, headers).status == 404
        assert get(arranged, headers).status == 404
    # Another project's incident under this project's path: 404
    foreign = f"/v1/projects/{other.project_id}/incidents/{arranged.incident_id}/summary"
    assert invoke(FUNCTION, "POST", foreign, headers=outsider.headers).status == 404
    assert gemini.requests == [] and summaries_of(db, arranged) == []
    # Before any summary: 404 summary_not_found
    missing = get(arranged, viewer.headers)
    assert missing.status == 404 and missing.error["code"] == "summary_not_found"


def test_a_summary_is_stale_once_the_incident_changes(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    from tests.helpers.incidents import arrange_alert, arrange_rule, flush

    user, principal = member(db, arranged.org_id, "member")
    assert post(arranged, user.headers).data["status"] == "ok"
    assert get(arranged, user.headers).data["stale"] is False
    # a new alert joins the incident (its timeline changes, not its row): stale
    rule = arrange_rule(db, arranged.org_id, arranged.project_id)
    flush(arranged.paged.group_id, firing=[arrange_alert(db, rule, at=NOW, n="new")], now=NOW + timedelta(seconds=30))
    assert get(arranged, user.headers).data["stale"] is True
    # a fresh summary is not; an acknowledgment (its row changes) makes it stale again
    assert post(arranged, user.headers).data["stale"] is False
    assert get(arranged, user.headers).data["stale"] is False
    incidents.acknowledge(principal, arranged.project_id, arranged.incident_id, NOW + timedelta(minutes=1))
    assert get(arranged, user.headers).data["stale"] is True
    # and the acknowledgment queued a debounced regeneration
    task = db.execute(
        "select reason, due_at from public.ai_tasks where incident_id = %s and kind = 'summary'",
        (arranged.incident_id,),
    ).fetchone()
    assert task is not None and task["reason"] == "changed"


def test_a_resolved_incident_is_summarized_by_the_worker(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    _, principal = member(db, arranged.org_id, "member")
    # When the incident resolves
    resolved_at = NOW + timedelta(minutes=10)
    incidents.resolve(principal, arranged.project_id, arranged.incident_id, ResolveIn(note="restarted payments"),
                      resolved_at)  # fmt: skip
    task = db.execute(
        "select id from public.ai_tasks where incident_id = %s and kind = 'summary'", (arranged.incident_id,)
    ).fetchone()
    assert task is not None
    # And the worker runs the task
    report = worker.run(lambda: resolved_at, ids=[task["id"]])
    # Then a summary triggered by the resolution is stored, the task is gone
    assert report.outcomes == {"done": 1}
    (stored,) = summaries_of(db, arranged)
    assert (stored["status"], stored["trigger"], stored["requested_by"]) == ("ok", "resolved", None)
    assert "restarted payments" in prompt_of(gemini.requests[0])
    assert db.execute("select 1 from public.ai_tasks where id = %s", (task["id"],)).fetchone() is None
    assert [o for _, o, _, _ in usage(db, arranged.org_id)] == ["ok"]


def past_incident(
    db: psycopg.Connection[Any], arranged: Arranged, *, at: datetime, note: str, other: Any = None
) -> Any:
    """A resolved incident of the same project (or of ``other``'s), with its resolution note and its embedding."""
    from observai.ai import similar

    from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush

    org_id, project_id = (other.org_id, other.project_id) if other else (arranged.org_id, arranged.project_id)
    rule = arrange_rule(db, org_id, project_id, name="PaymentGatewayTimeouts")
    alert = arrange_alert(db, rule, at=at, summary="payment gateway timeout at checkout")
    incident = flush(arrange_group(db, org_id, project_id), firing=[alert], now=at)
    _, principal = member(db, org_id, "member")
    incidents.resolve(principal, project_id, incident["id"], ResolveIn(note=note), at + timedelta(minutes=30))
    db.execute("delete from public.ai_tasks where incident_id = %s", (incident["id"],))
    similar.embed_incident({"incident_id": incident["id"], "reason": "resolved"}, at + timedelta(minutes=31))
    assert db.execute("select 1 from public.incident_embeddings where incident_id = %s", (incident["id"],)).fetchone()
    return incident


def test_the_summary_is_given_similar_past_incidents_of_the_same_organization_only(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    # Given a past incident of the organization, resolved with a note, and one of another organization
    mine = past_incident(db, arranged, at=NOW - timedelta(days=2), note="rolled back the payment gateway config")
    other = make_project(("read",), label="AiSumSimOther")
    opt_in(db, other.org_id)
    theirs = past_incident(db, arranged, at=NOW - timedelta(days=3), note="other tenant fix", other=other)
    user, _ = member(db, arranged.org_id, "member")
    gemini.reset()
    # When a summary is made
    result = post(arranged, user.headers)
    assert result.data["status"] == "ok", result.text
    # Then the model saw the organization's past incident with what fixed it, and nothing of the other's
    prompt = prompt_of(gemini.requests[-1])
    assert f'id="incident:{mine["id"]}" kind="similar"' in prompt
    assert "rolled back the payment gateway config" in prompt
    assert str(theirs["id"]) not in prompt and "other tenant fix" not in prompt
    (stored,) = summaries_of(db, arranged)
    assert f"incident:{mine['id']}" in stored["context"]["ids"]


def test_a_spent_token_budget_is_429_on_post_and_unavailable_from_the_worker(
    db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn
) -> None:
    # Given an organization (free plan) whose tokens of the month are spent
    db.execute(
        "insert into public.ai_usage (org_id, feature, model, input_tokens, output_tokens, outcome, at)"
        " values (%s, 'summary', 'gemini-2.5-flash', 300000, 0, 'ok', now())",
        (arranged.org_id,),
    )
    user, _ = member(db, arranged.org_id, "member")
    # When a member asks: 429 ai_budget_exhausted with Retry-After, nothing sent, nothing stored
    result = post(arranged, user.headers)
    assert result.status == 429 and result.error["code"] == "ai_budget_exhausted", result.text
    assert int(result.header("Retry-After") or 0) > 0
    assert gemini.requests == [] and summaries_of(db, arranged) == []
    # And the worker's summary says unavailable, with the reason
    worker_now = datetime.now(UTC)
    from observai.ai import summaries

    summaries.run_task(
        {"project_id": arranged.project_id, "incident_id": arranged.incident_id, "reason": "resolved"}, worker_now
    )
    (stored,) = summaries_of(db, arranged)
    assert (stored["status"], stored["reason"], stored["trigger"]) == ("unavailable", "ai_budget_exhausted", "resolved")
    assert gemini.requests == []


def test_malformed_ids_are_a_4xx(db: psycopg.Connection[Any], arranged: Arranged, gemini: GeminiStandIn) -> None:
    user, _ = member(db, arranged.org_id, "member")
    for bad in ("not-a-uuid", "%00", "1" * 300):
        for method in ("POST", "GET"):
            result = invoke(FUNCTION, method, f"/v1/projects/{arranged.project_id}/incidents/{bad}/summary",
                            headers=user.headers)  # fmt: skip
            assert 400 <= result.status < 500, (bad, method, result.status)
    assert gemini.requests == []
