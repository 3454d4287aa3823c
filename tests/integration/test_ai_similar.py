"""Similar past incidents on the real database (pgvector) with the Gemini stand-in's bag-of-words embeddings:
the embedding text, the worker's embedding task (after the summary, not again for unchanged text), nearest ordering
through the HNSW index, on-the-fly embedding of an open incident, and tenant isolation (code, RLS and the route)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.ai import similar, similar_store, worker
from observai.config import get_settings
from observai.db.connection import tenant_transaction, transaction
from psycopg.rows import dict_row

from tests.helpers.ai import opt_in
from tests.helpers.alert_eval import add_logs
from tests.helpers.gemini_standin import GeminiStandIn
from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush, resolved
from tests.helpers.ingest import IngestProject, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration

API_KEY = "test-gemini-key"
NOW = datetime.now(UTC).replace(microsecond=0)
AT = NOW - timedelta(hours=3)

PAYMENT = {
    "rule": "CheckoutPaymentErrors",
    "title": "checkout payment gateway timeouts",
    "service": "checkout",
    "errors": ["payment gateway timeout after 30s calling stripe", "payment authorization failed: gateway timeout"],
    "note": "restarted the payment gateway pods and raised the gateway client timeout",
}
DATABASE = {
    "rule": "OrdersDatabaseConnections",
    "title": "orders database connection pool exhausted",
    "service": "orders",
    "errors": ["too many connections for role orders", "connection pool exhausted waiting for a connection"],
    "note": "raised the pool size and killed idle connections",
}
DISK = {
    "rule": "LogHostDiskFull",
    "title": "disk full on the log shipping host",
    "service": "logship",
    "errors": ["no space left on device writing segment", "write failed: disk quota exceeded"],
    "note": "rotated old segments and grew the volume",
}


@dataclass
class Tenant:
    project: IngestProject
    viewer: User
    stranger_project: IngestProject | None = None

    @property
    def org_id(self) -> UUID:
        return self.project.org_id


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture(scope="module")
def standin() -> Iterator[GeminiStandIn]:
    with GeminiStandIn() as server:
        yield server


@pytest.fixture
def gemini(standin: GeminiStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiStandIn]:
    from observai.ai.provider import reset_models

    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", standin.base_url)
    monkeypatch.setenv("AI_MAX_RETRIES", "0")
    reset_models()
    standin.reset()
    yield standin
    reset_models()


def tenant(db: psycopg.Connection[Any], label: str, *, enabled: bool = True) -> Tenant:
    project = make_project(("read",), label=label)
    viewer = make_user(db)
    add_membership(db, project.org_id, viewer.id, "viewer")
    if enabled:
        opt_in(db, project.org_id)
    return Tenant(project, viewer)


def arrange(
    db: psycopg.Connection[Any], t: Tenant, spec: dict[str, Any], *, at: datetime = AT, resolve: bool = True
) -> dict[str, Any]:
    """An incident as the alerting loop leaves it: its rule, alert and error lines; resolved by its alert resolving,
    with the resolution note a person wrote. Its summary task is taken as done (the summaries are not this file's)."""
    project = t.project
    rule = arrange_rule(db, project.org_id, project.project_id, name=f"{spec['rule']}-{uuid.uuid4().hex[:4]}")
    alert = arrange_alert(db, rule, at=at, service=spec["service"], summary=spec["title"], n=uuid.uuid4().hex[:6])
    group = arrange_group(db, project.org_id, project.project_id)
    incident = flush(group, firing=[alert], now=at)
    add_logs(
        project,
        [
            {"time": at + timedelta(seconds=10 + i), "service": spec["service"], "severity_number": 17, "body": body}
            for i, body in enumerate(spec["errors"] * 2)
        ],
    )
    if resolve:
        incident = flush(
            group, firing=[], resolved=[resolved(alert, at + timedelta(minutes=20))], now=at + timedelta(minutes=20)
        )
        db.execute("update public.incidents set resolution_note = %s where id = %s", (spec["note"], incident["id"]))
        db.execute("delete from public.ai_tasks where incident_id = %s and kind = 'summary'", (incident["id"],))
    return dict(incident)


def task_of(incident: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": 0,
        "org_id": incident["org_id"],
        "project_id": incident["project_id"],
        "incident_id": incident["id"],
        "kind": "embedding",
        "reason": "resolved",
    }


def embedded(db: psycopg.Connection[Any], incident_id: Any) -> dict[str, Any] | None:
    row = db.execute(
        "select model, dimensions, source_digest, updated_at from public.incident_embeddings where incident_id = %s",
        (incident_id,),
    ).fetchone()
    return dict(row) if row else None


def usage(db: psycopg.Connection[Any], org_id: UUID, feature: str = "embedding") -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.execute(
            "select feature, outcome, input_tokens, project_id from public.ai_usage where org_id = %s and feature = %s"
            " order by id",
            (org_id, feature),
        ).fetchall()
    ]


def claims_of(user: User) -> dict[str, Any]:
    from observai.auth.principal import Principal

    return Principal(kind="user", user_id=user.id, email=user.email).rls_claims()


def embed_requests(gemini: GeminiStandIn) -> list[Any]:
    return [r for r in gemini.requests if r.kind in ("batchEmbedContents", "embedContent")]


def get_similar(headers: dict[str, str], project_id: Any, incident_id: Any, query: str = "limit=5") -> Result:
    path = f"/v1/projects/{project_id}/incidents/{incident_id}/similar"
    return invoke("similar_incidents", "GET", path, headers=headers, query=query)


@pytest.fixture(scope="module")
def world(conn: psycopg.Connection[Any], standin: GeminiStandIn) -> dict[str, Any]:
    """Org A: three resolved, embedded incidents and an open one like the payment one. Org B: a resolved, embedded
    incident whose text is the very same as A's payment incident."""
    a, b = tenant(conn, "Alpha"), tenant(conn, "Beta")
    incidents = {
        "payment": arrange(conn, a, PAYMENT),
        "database": arrange(conn, a, DATABASE),
        "disk": arrange(conn, a, DISK),
        "b_payment": arrange(conn, b, PAYMENT),
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GEMINI_API_KEY", API_KEY)
        env.setenv("GEMINI_BASE_URL", standin.base_url)
        for incident in incidents.values():
            similar.embed_incident(task_of(incident), NOW)
    incidents["open"] = arrange(
        conn, a, {**PAYMENT, "title": "checkout payment gateway timeouts again"}, at=NOW - timedelta(minutes=30),
        resolve=False,
    )  # fmt: skip
    return {"a": a, "b": b, **incidents}


# --- the embedding text and task ---------------------------------------------------------------------------------


def test_the_text_holds_title_rules_services_errors_and_note_redacted(conn: psycopg.Connection[Any]) -> None:
    # Given a resolved incident whose error lines carry an e-mail address and a bearer token
    t = tenant(conn, "Text")
    spec = {**DISK, "errors": ["login failed for bob@example.com with Bearer abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"]}
    incident = arrange(conn, t, spec)

    # When its embedding text is built
    with transaction() as cur:
        text = similar.incident_text(cur, incident["id"])

    # Then it names what the incident was, with the secrets redacted, and is bounded
    assert "disk full on the log shipping host" in text and "LogHostDiskFull" in text and "logship" in text
    assert "rotated old segments" in text and "login failed" in text
    assert "bob@example.com" not in text and "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ" not in text
    assert "REDACTED" in text
    assert len(text) <= similar.MAX_TEXT


def test_a_resolved_incident_is_embedded_once_and_again_when_its_note_changes(
    conn: psycopg.Connection[Any], gemini: GeminiStandIn
) -> None:
    # Given a resolved incident of an organization that opted in
    t = tenant(conn, "Embed")
    incident = arrange(conn, t, DATABASE)

    # When the embedding task runs twice
    similar.embed_incident(task_of(incident), NOW)
    first = embedded(conn, incident["id"])
    similar.embed_incident(task_of(incident), NOW + timedelta(minutes=1))

    # Then the model was asked once (unchanged digest: nothing), the vector stored at the setting's dimension, metered
    assert first is not None and first["dimensions"] == get_settings().ai_embedding_dimensions == 768
    assert first["model"] == get_settings().ai_embedding_model
    assert len(embed_requests(gemini)) == 1
    assert "raised the pool size" in embed_requests(gemini)[0].texts[0]
    assert embedded(conn, incident["id"]) == first
    metered = usage(conn, t.org_id)
    assert [(m["outcome"], m["project_id"]) for m in metered] == [("ok", t.project.project_id)]
    assert metered[0]["input_tokens"] >= 0

    # When the resolution note changes, and the task runs again
    conn.execute(
        "update public.incidents set resolution_note = 'failover to the replica' where id = %s", (incident["id"],)
    )
    similar.embed_incident(task_of(incident), NOW + timedelta(minutes=2))

    # Then it was embedded again: a new digest, a second metered call
    again = embedded(conn, incident["id"])
    assert again is not None and again["source_digest"] != first["source_digest"]
    assert len(embed_requests(gemini)) == 2 and "failover to the replica" in embed_requests(gemini)[1].texts[0]
    assert len(usage(conn, t.org_id)) == 2


def test_nothing_leaves_for_an_organization_that_did_not_opt_in_nor_for_an_open_incident(
    conn: psycopg.Connection[Any], gemini: GeminiStandIn
) -> None:
    # Given a resolved incident of an organization that did not opt in, and an open one of one that did
    off = tenant(conn, "Off", enabled=False)
    on = tenant(conn, "On")
    closed = arrange(conn, off, DISK)
    still_open = arrange(conn, on, DISK, resolve=False)

    # When their embedding tasks run
    similar.embed_incident(task_of(closed), NOW)
    similar.embed_incident(task_of(still_open), NOW)

    # Then the model saw nothing and nothing was stored or metered
    assert embed_requests(gemini) == []
    assert embedded(conn, closed["id"]) is None and embedded(conn, still_open["id"]) is None
    assert usage(conn, off.org_id) == [] and usage(conn, on.org_id) == []


def test_the_worker_embeds_after_the_summary(conn: psycopg.Connection[Any], gemini: GeminiStandIn) -> None:
    # Given an incident that resolved (its hook enqueued a summary and an embedding task)
    t = tenant(conn, "Worker")
    rule = arrange_rule(conn, t.project.org_id, t.project.project_id, name="WorkerRule")
    at = NOW - timedelta(minutes=10)
    alert = arrange_alert(conn, rule, at=at, service="checkout", summary="worker test", n="w1")
    group = arrange_group(conn, t.project.org_id, t.project.project_id)
    flush(group, firing=[alert], now=at)
    incident = flush(group, firing=[], resolved=[resolved(alert, NOW)], now=NOW)
    kinds = {r["kind"]: r["id"] for r in conn.execute(
        "select kind, id from public.ai_tasks where incident_id = %s", (incident["id"],)
    ).fetchall()}  # fmt: skip
    assert set(kinds) == {"summary", "embedding"}
    assert worker.HANDLERS["embedding"] is not None

    # When the worker runs the embedding task while the summary is pending
    clock = NOW
    worker.run(lambda: clock, ids=[kinds["embedding"]], handlers={"embedding": worker.HANDLERS["embedding"]})

    # Then it waits behind the summary: nothing embedded, the task due again a minute later
    assert embedded(conn, incident["id"]) is None and embed_requests(gemini) == []
    task = conn.execute("select due_at from public.ai_tasks where id = %s", (kinds["embedding"],)).fetchone()
    assert task is not None and task["due_at"] == clock + timedelta(seconds=similar.SUMMARY_WAIT_S)

    # When the summary is done and the embedding task is due again
    conn.execute("delete from public.ai_tasks where id = %s", (kinds["summary"],))
    clock = NOW + timedelta(seconds=similar.SUMMARY_WAIT_S)
    worker.run(lambda: clock, ids=[kinds["embedding"]], handlers={"embedding": worker.HANDLERS["embedding"]})

    # Then the incident is embedded and the task is gone
    assert embedded(conn, incident["id"]) is not None and len(embed_requests(gemini)) == 1
    assert conn.execute("select 1 from public.ai_tasks where id = %s", (kinds["embedding"],)).fetchone() is None


# --- nearest -----------------------------------------------------------------------------------------------------


def test_nearest_orders_by_similarity_same_org_only_and_embeds_an_open_incident_on_the_fly(
    conn: psycopg.Connection[Any], world: dict[str, Any], gemini: GeminiStandIn
) -> None:
    a = world["a"]
    # When the nearest incidents of the open payment incident are asked for (it has no embedding yet)
    with transaction() as cur:
        found = similar.nearest(cur, a.org_id, world["open"]["id"], limit=5, settings=get_settings(), now=NOW)

    # Then the payment incident comes first, then the others of org A, never itself nor org B's twin
    ids = [f.incident_id for f in found]
    assert ids[0] == world["payment"]["id"]
    assert set(ids) == {world["payment"]["id"], world["database"]["id"], world["disk"]["id"]}
    assert world["b_payment"]["id"] not in ids and world["open"]["id"] not in ids
    similarities = [f.similarity for f in found]
    assert similarities == sorted(similarities, reverse=True) and all(0 <= s <= 1 for s in similarities)
    assert similarities[0] > similarities[1]
    assert found[0].resolution_note == PAYMENT["note"] and found[0].number == world["payment"]["number"]

    # And the open incident was embedded on the fly: one metered call, nothing stored
    assert len(embed_requests(gemini)) == 1 and "checkout" in embed_requests(gemini)[0].texts[0]
    assert embedded(conn, world["open"]["id"]) is None
    assert usage(conn, a.org_id)[-1]["outcome"] == "ok"

    # And a resolved incident is compared by its stored embedding (no call)
    with transaction() as cur:
        again = similar.nearest(cur, a.org_id, world["payment"]["id"], limit=2, settings=get_settings(), now=NOW)
    assert len(again) == 2 and world["payment"]["id"] not in [f.incident_id for f in again]
    assert len(embed_requests(gemini)) == 1


def test_nearest_gives_nothing_without_a_model_rather_than_failing(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no Gemini key on this deployment
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    # When the open incident's neighbours are asked for (the summaries' context does this): an empty list
    with transaction() as cur:
        assert similar.nearest(cur, world["a"].org_id, world["open"]["id"], settings=get_settings(), now=NOW) == []
        # and another organization's id gives nothing either
        assert similar.nearest(cur, world["b"].org_id, world["payment"]["id"], settings=get_settings()) == []


def test_the_nearest_query_can_read_the_hnsw_index(world: dict[str, Any]) -> None:
    # Given the nearest query for the configured dimension, as the route runs it (as the caller: RLS on)
    a = world["a"]
    model = get_settings().ai_embedding_model
    with transaction() as cur:
        vector = similar_store.stored_vector(cur, world["payment"]["id"], model=model, dimensions=768)
    assert vector is not None
    params = {"q": vector, "org": a.org_id, "model": model, "self": world["payment"]["id"], "want": 20, "limit": 5}
    with tenant_transaction(claims_of(a.viewer)) as cur:
        # With a handful of rows the planner rightly reads the organization's rows and sorts them (exact); these
        # switches make it show the plan it takes for an organization with many incidents
        cur.execute("set local enable_seqscan = off; set local enable_bitmapscan = off; set local enable_sort = off")
        cur.execute(psycopg.sql.SQL("explain ") + similar_store.nearest_sql(768), params)
        plan = "\n".join(row["QUERY PLAN"] for row in cur.fetchall())
        cur.execute(similar_store.nearest_sql(768), params)
        by_index = [row["incident_id"] for row in cur.fetchall()]
    # Then Postgres reads the neighbours in distance order from the partial HNSW index of 768 dimensions
    assert "Index Scan using incident_embeddings_768_hnsw_idx" in plan, plan
    # And finds what the exact scan finds
    with transaction() as cur:
        cur.execute(similar_store.nearest_sql(768, exact=True), {**params, "cap": 1_000})
        exact = [row["incident_id"] for row in cur.fetchall()]
    assert by_index == exact and set(exact) == {world["database"]["id"], world["disk"]["id"]}


def test_through_the_index_or_exactly_the_same_neighbours(world: dict[str, Any]) -> None:
    # Given the open payment incident's vector (as the route makes it) and org A's three embedded incidents
    a = world["a"]
    model = get_settings().ai_embedding_model
    with transaction() as cur:
        vector = similar_store.stored_vector(cur, world["payment"]["id"], model=model, dimensions=768)
    assert vector is not None
    found: dict[str, list[Any]] = {}
    with tenant_transaction(claims_of(a.viewer)) as cur:
        for name, exact_up_to, limit in (("exact", 10_000, 2), ("index", 0, 2), ("index, short", 0, 5)):
            rows = similar_store.nearest(
                cur, org_id=a.org_id, incident_id=world["payment"]["id"], query_vector=vector, dimensions=768,
                model=model, limit=limit, exact_up_to=exact_up_to,
            )  # fmt: skip
            found[name] = [row["incident_id"] for row in rows]
    # Then the HNSW path finds what the exact scan finds, and a short page from the index falls back to exact
    assert found["index"] == found["exact"] and len(found["exact"]) == 2
    assert found["index, short"][:2] == found["exact"]
    assert set(found["index, short"]) == {world["database"]["id"], world["disk"]["id"]}


def test_row_level_security_hides_other_organizations_embeddings(world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    seen: dict[str, set[UUID]] = {}
    for name, t in (("a", a), ("b", b)):
        with tenant_transaction(claims_of(t.viewer)) as cur:
            cur.execute("select incident_id from public.incident_embeddings where incident_id = any(%s)",
                        ([world[k]["id"] for k in ("payment", "database", "disk", "b_payment")],))  # fmt: skip
            seen[name] = {r["incident_id"] for r in cur.fetchall()}
    assert seen["a"] == {world["payment"]["id"], world["database"]["id"], world["disk"]["id"]}
    assert seen["b"] == {world["b_payment"]["id"]}


# --- the route ---------------------------------------------------------------------------------------------------


def test_the_route_lists_same_org_incidents_for_viewers_and_read_keys(
    world: dict[str, Any], gemini: GeminiStandIn
) -> None:
    a = world["a"]
    for headers in (a.viewer.headers, a.project.headers):
        # When a viewer (or a read key) asks for the payment incident's similar incidents
        result = get_similar(headers, a.project.project_id, world["payment"]["id"], "limit=20")
        # Then org A's other incidents come, nearest first, never org B's identical one
        assert result.status == 200, result.text
        items = result.data
        assert items[0]["incident_id"] in {str(world["database"]["id"]), str(world["disk"]["id"])}
        assert str(world["b_payment"]["id"]) not in {i["incident_id"] for i in items}
        assert set(items[0]) == {"incident_id", "project_id", "number", "title", "resolved_at", "resolution_note",
                                 "similarity"}  # fmt: skip
    # And the open incident (embedded now) gets the payment incident first
    result = get_similar(a.viewer.headers, a.project.project_id, world["open"]["id"], "limit=1")
    assert result.status == 200, result.text
    assert [i["incident_id"] for i in result.data] == [str(world["payment"]["id"])]
    assert result.data[0]["resolution_note"] == PAYMENT["note"]


def test_the_route_hides_other_tenants_and_checks_its_input(world: dict[str, Any], gemini: GeminiStandIn) -> None:
    a, b = world["a"], world["b"]
    # Another organization's person or key: 404, whatever the incident
    assert get_similar(b.viewer.headers, a.project.project_id, world["payment"]["id"]).status == 404
    assert get_similar(b.project.headers, a.project.project_id, world["payment"]["id"]).status == 404
    # Org B's incident under org A's project: 404 (not found, nothing revealed)
    assert get_similar(a.viewer.headers, a.project.project_id, world["b_payment"]["id"]).status == 404
    # limit is 1..20
    for bad in ("limit=0", "limit=21", "limit=x"):
        assert get_similar(a.viewer.headers, a.project.project_id, world["payment"]["id"], bad).status == 422
    assert embed_requests(gemini) == []


def test_the_route_says_when_ai_is_off_or_not_configured(
    conn: psycopg.Connection[Any], world: dict[str, Any], gemini: GeminiStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An organization that has not opted in: 409 ai_disabled
    off = tenant(conn, "Off2", enabled=False)
    incident = arrange(conn, off, DISK)
    result = get_similar(off.viewer.headers, off.project.project_id, incident["id"])
    assert (result.status, result.error["code"]) == (409, "ai_disabled")

    # No key on the deployment: an incident that needs embedding now is a 503 ai_not_configured...
    monkeypatch.delenv("GEMINI_API_KEY")
    a = world["a"]
    result = get_similar(a.viewer.headers, a.project.project_id, world["open"]["id"])
    assert (result.status, result.error["code"]) == (503, "ai_not_configured")
    # ... and one embedded already still finds its neighbours (no model call needed)
    assert get_similar(a.viewer.headers, a.project.project_id, world["payment"]["id"]).status == 200
    assert embed_requests(gemini) == []


def test_the_model_failing_is_a_503_and_metered(
    world: dict[str, Any], gemini: GeminiStandIn, conn: psycopg.Connection[Any]
) -> None:
    a = world["a"]
    before = len(usage(conn, a.org_id))
    gemini.fail(500)
    result = get_similar(a.viewer.headers, a.project.project_id, world["open"]["id"])
    assert (result.status, result.error["code"]) == (503, "ai_unavailable")
    assert [u["outcome"] for u in usage(conn, a.org_id)[before:]] == ["failed"]


def test_a_spent_budget_stops_the_on_the_fly_embedding(conn: psycopg.Connection[Any], gemini: GeminiStandIn) -> None:
    # Given an organization with a past incident embedded, that then spent its month's tokens, and an open incident
    t = tenant(conn, "Spent")
    similar.embed_incident(task_of(arrange(conn, t, DATABASE)), NOW)
    incident = arrange(conn, t, DISK, resolve=False)
    gemini.reset()
    conn.execute(
        "insert into public.ai_usage (org_id, feature, model, input_tokens, output_tokens, outcome)"
        " values (%s, 'summary', 'gemini-2.5-flash', 250000, 0, 'ok')",
        (t.org_id,),
    )
    # When its similar incidents are asked for: 429, no model call; nearest (the summaries') gives nothing
    result = get_similar(t.viewer.headers, t.project.project_id, incident["id"])
    assert (result.status, result.error["code"]) == (429, "ai_budget_exhausted")
    with transaction() as cur:
        assert similar.nearest(cur, t.org_id, incident["id"], settings=get_settings()) == []
    assert embed_requests(gemini) == []


def test_a_note_written_after_resolution_embeds_the_incident_again(
    conn: psycopg.Connection[Any], gemini: GeminiStandIn
) -> None:
    # Given a resolved, embedded incident of an organization that opted in
    t = tenant(conn, "Note")
    incident = arrange(conn, t, DATABASE)
    similar.embed_incident(task_of(incident), NOW)
    before = embedded(conn, incident["id"])
    assert before is not None
    member = make_user(conn)
    add_membership(conn, t.org_id, member.id, "member")

    # When a member writes the post-mortem's conclusion as its resolution note
    note = "root cause: a connection leak in the orders worker, fixed in release 813"
    path = f"/v1/projects/{t.project.project_id}/incidents/{incident['id']}"
    result = invoke("incidents", "PATCH", path, headers=member.headers, json_body={"resolution_note": note})

    # Then the incident keeps its state with the new note, and an embedding task is enqueued in that transaction
    assert result.status == 200, result.text
    assert (result.data["status"], result.data["resolution_note"]) == ("resolved", note)
    task = conn.execute(
        "select * from public.ai_tasks where incident_id = %s and kind = 'embedding'", (incident["id"],)
    ).fetchone()
    assert task is not None and task["reason"] == "note_changed"

    # And when the worker's embedding handler runs, the incident is embedded again from the new text
    worker.HANDLERS["embedding"](dict(task), NOW)
    after = embedded(conn, incident["id"])
    assert after is not None and after["source_digest"] != before["source_digest"]
    assert note in embed_requests(gemini)[-1].texts[0]


def test_a_spent_budget_moves_the_embedding_to_next_month(conn: psycopg.Connection[Any], gemini: GeminiStandIn) -> None:
    # Given a resolved incident of an organization that spent its month's tokens
    t = tenant(conn, "SpentTask")
    incident = arrange(conn, t, DISK)
    conn.execute(
        "insert into public.ai_usage (org_id, feature, model, input_tokens, output_tokens, outcome)"
        " values (%s, 'summary', 'gemini-2.5-flash', 250000, 0, 'ok')",
        (t.org_id,),
    )
    # When its embedding task runs
    similar.embed_incident(task_of(incident), NOW)
    # Then nothing was sent, and the task is due when the budget resets (the first of next month, UTC)
    assert embed_requests(gemini) == [] and embedded(conn, incident["id"]) is None
    task = conn.execute(
        "select due_at from public.ai_tasks where incident_id = %s and kind = 'embedding'", (incident["id"],)
    ).fetchone()
    first_of_next_month = (NOW.replace(day=28) + timedelta(days=4)).replace(day=1, hour=0, minute=0, second=0)
    assert task is not None and first_of_next_month <= task["due_at"] <= first_of_next_month + timedelta(seconds=1)


def test_a_slow_read_of_error_lines_gives_no_messages_and_leaves_the_transaction_usable(
    conn: psycopg.Connection[Any],
) -> None:
    # Given an incident's window holding 100,000 info lines, then three error lines
    t = tenant(conn, "Noisy")
    start = NOW - timedelta(hours=2)
    conn.execute(
        "insert into public.logs (org_id, project_id, time, severity_number, service, body, attributes, resource)"
        " select %s, %s, %s + g * interval '50 ms', case when g > 100000 then 17 else 9 end, 'noisy',"
        " case when g > 100000 then 'upstream reset ' || g else 'all good ' || g end, '{}', '{}'"
        " from generate_series(1, 100003) g",
        (t.org_id, t.project.project_id, start),
    )
    with transaction() as cur:
        cur.execute("select current_setting('statement_timeout') as t")
        before = cur.fetchone()
        # When its most frequent error messages are read within a budget too small to scan that far
        found = similar_store.top_error_messages(
            cur, t.project.project_id, ["noisy"], start, NOW, top=5, width=300, budget_ms=1
        )
        # Then none, and the transaction goes on with its own statement timeout
        cur.execute("select current_setting('statement_timeout') as t")
        after = cur.fetchone()
        # And with the default budget, the same read completes and finds them
        complete = similar_store.top_error_messages(cur, t.project.project_id, ["noisy"], start, NOW, top=5, width=300)
    assert found == [] and before == after
    assert complete == [{"message": "upstream reset N", "n": 3}]
