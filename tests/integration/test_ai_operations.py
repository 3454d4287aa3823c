"""AI operations: the per-organization opt-in (GET/PUT /v1/orgs/{org_id}/ai through the real OrgsFunction handler:
roles, audit, tenant isolation, off by default), the access checks every AI route makes (no key → 503
ai_not_configured, not opted in → 409 ai_disabled), token metering (its own transaction: it survives the caller's
rollback), the monthly budget per plan (429 ai_budget_exhausted until the first of next month), and the AI section
of the usage report."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.ai import access, metering, provider
from observai.ai.access import AiNotConfigured
from observai.ai.metering import AiBudgetExhausted
from observai.ai.model import AiUnavailable
from observai.config import Settings, get_settings
from observai.db.connection import tenant_transaction, transaction
from observai.errors import Conflict, NotFound
from observai.http.exception_handlers import response_for

from tests.helpers.gemini_standin import GeminiStandIn
from tests.helpers.ingest import make_project
from tests.helpers.inprocess import invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration

API_KEY = "AIzaOps-test-key-abcdefghijklmnop"
FREE_BUDGET = 250_000


@pytest.fixture(autouse=True)
def no_key_by_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_BASE_URL", raising=False)
    provider.reset_models()
    yield
    provider.reset_models()


def make_org(db: psycopg.Connection[Any], plan: str = "free") -> uuid.UUID:
    org = uuid.uuid4()
    db.execute(
        "insert into public.organizations (id, name, slug, plan) values (%s, 'AI org', %s, %s)",
        (org, f"ai-{org.hex[:12]}", plan),
    )
    return org


def member(db: psycopg.Connection[Any], org: uuid.UUID, role: str) -> User:
    user = make_user(db)
    add_membership(db, org, user.id, role)
    return user


def ai_route(method: str, org: uuid.UUID, user: User, body: Any = None) -> Any:
    return invoke("orgs", method, f"/v1/orgs/{org}/ai", headers=user.headers, json_body=body)


def usage_rows(db: psycopg.Connection[Any], org: uuid.UUID) -> list[dict[str, Any]]:
    return db.execute(
        "select feature, model, input_tokens, output_tokens, outcome, project_id from public.ai_usage"
        " where org_id = %s order by id",
        (org,),
    ).fetchall()


def add_usage(db: psycopg.Connection[Any], org: uuid.UUID, at: datetime, tokens: int, feature: str = "summary") -> None:
    db.execute(
        "insert into public.ai_usage (org_id, at, feature, model, input_tokens, output_tokens, outcome)"
        " values (%s, %s, %s, 'gemini-2.5-flash', %s, %s, 'ok')",
        (org, at, feature, tokens - tokens // 4, tokens // 4),
    )


# -- the opt-in route ---------------------------------------------------------------------------------------------


def test_ai_is_off_by_default_and_says_whether_a_key_is_configured(
    db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a free organization and a viewer of it, on a deployment without a key
    org = make_org(db)
    viewer = member(db, org, "viewer")

    # When the viewer reads the AI settings
    result = ai_route("GET", org, viewer)

    # Then off, not available, the models and the free plan's budget, nothing used
    assert result.status == 200, result.text
    data = result.data
    assert data["enabled"] is False and data["available"] is False
    assert data["generation_model"] == "gemini-2.5-flash" and data["embedding_model"] == "gemini-embedding-001"
    assert data["plan"] == "free" and data["monthly_token_budget"] == FREE_BUDGET
    assert data["tokens_used_this_month"] == 0 and data["updated_at"] is None

    # When the deployment has a key (and other model names: settings)
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("AI_GENERATION_MODEL", "gemini-2.5-pro")
    result = ai_route("GET", org, viewer)
    # Then available, and the key itself is nowhere in the answer
    assert result.data["available"] is True and result.data["generation_model"] == "gemini-2.5-pro"
    assert API_KEY not in result.text


@pytest.mark.parametrize(("role", "status"), [("owner", 200), ("admin", 200), ("member", 403), ("viewer", 403)])
def test_only_owners_and_admins_turn_it_on(db: psycopg.Connection[Any], role: str, status: int) -> None:
    org = make_org(db)
    user = member(db, org, role)
    result = ai_route("PUT", org, user, {"enabled": True})
    assert result.status == status, result.text
    enabled = db.execute("select enabled from public.org_ai_settings where org_id = %s", (org,)).fetchone()
    assert (enabled is not None and enabled["enabled"]) is (status == 200)


def test_turning_it_on_and_off_is_audited_once_per_change(db: psycopg.Connection[Any]) -> None:
    # Given an admin of an organization
    org = make_org(db)
    admin = member(db, org, "admin")

    # When they turn it on, on again (no change), then off
    on = ai_route("PUT", org, admin, {"enabled": True})
    again = ai_route("PUT", org, admin, {"enabled": True})
    off = ai_route("PUT", org, admin, {"enabled": False})

    # Then each answer is the settings as they are now
    assert on.status == again.status == off.status == 200
    assert on.data["enabled"] is True and again.data["enabled"] is True and off.data["enabled"] is False
    assert on.data["updated_by"] == str(admin.id) and on.data["updated_at"] is not None
    # And the audit log has the two changes, by whom, with the previous value
    rows = db.execute(
        "select action, actor_id, details, target_id from public.audit_log where org_id = %s and action like 'org.ai%%'"
        " order by id",
        (org,),
    ).fetchall()
    assert [(r["action"], r["details"]) for r in rows] == [
        ("org.ai.update", {"enabled": True, "previous": False}),
        ("org.ai.update", {"enabled": False, "previous": True}),
    ]
    assert {r["actor_id"] for r in rows} == {str(admin.id)} and {r["target_id"] for r in rows} == {str(org)}
    # And a member reads the result
    assert ai_route("GET", org, member(db, org, "member")).data["enabled"] is False


def test_another_organization_is_not_found_whatever_the_role_there(db: psycopg.Connection[Any]) -> None:
    # Given two organizations, and the owner of the first
    mine, theirs = make_org(db), make_org(db)
    owner = member(db, mine, "owner")
    ai_route("PUT", mine, owner, {"enabled": True})

    # When they read or change the other's AI settings / Then 404, as for any organization they are not in
    assert ai_route("GET", theirs, owner).status == 404
    assert ai_route("PUT", theirs, owner, {"enabled": True}).status == 404
    assert db.execute("select 1 from public.org_ai_settings where org_id = %s", (theirs,)).fetchone() is None
    # And an unknown organization looks the same
    assert ai_route("GET", uuid.uuid4(), owner).status == 404


@pytest.mark.parametrize(
    "body", [{"enabled": "yes"}, {"enabled": 1}, {}, {"enabled": True, "model": "gpt"}, {"enabled": None}]
)
def test_bad_bodies_are_422(db: psycopg.Connection[Any], body: Any) -> None:
    org = make_org(db)
    result = ai_route("PUT", org, member(db, org, "owner"), body)
    assert result.status == 422, result.text
    assert result.error["code"] == "validation_error"


def test_without_a_token_401(db: psycopg.Connection[Any]) -> None:
    assert invoke("orgs", "GET", f"/v1/orgs/{make_org(db)}/ai").status == 401


# -- access checks of the AI routes ---------------------------------------------------------------------------------


def test_require_enabled_says_not_configured_then_disabled(db: psycopg.Connection[Any]) -> None:
    org = make_org(db)
    without_key, with_key = Settings(), Settings(gemini_api_key=API_KEY)

    # No key on the deployment: 503 ai_not_configured (whatever the organization chose)
    with transaction() as cur, pytest.raises(AiNotConfigured) as info:
        access.require_enabled(cur, org, without_key)
    response = response_for(info.value)
    assert response.status_code == 503 and response.body["error"]["code"] == "ai_not_configured"
    assert API_KEY not in str(response.body)

    # A key, but the organization has not opted in: 409 ai_disabled
    with transaction() as cur, pytest.raises(Conflict) as conflict:
        access.require_enabled(cur, org, with_key)
    response = response_for(conflict.value)
    assert response.status_code == 409 and response.body["error"]["code"] == "ai_disabled"

    # Opted in: nothing raised
    db.execute("insert into public.org_ai_settings (org_id, enabled) values (%s, true)", (org,))
    with transaction() as cur:
        access.require_enabled(cur, org, with_key)
        assert access.is_enabled(cur, org)


def test_members_and_the_organizations_api_keys_read_the_opt_in_others_do_not(db: psycopg.Connection[Any]) -> None:
    # Given an organization that opted in (with a project and a read key) and another one that did too
    project = make_project(("read",))
    other = make_project(("read",))
    db.execute(
        "insert into public.org_ai_settings (org_id, enabled) values (%s, true), (%s, true)",
        (project.org_id, other.org_id),
    )
    key_claims = {
        "role": "authenticated",
        "api_key": {
            "id": str(project.key_id),
            "org_id": str(project.org_id),
            "project_id": str(project.project_id),
            "scopes": ["read"],
        },
    }
    # When the key reads through RLS / Then its own organization's opt-in, never the other's
    with tenant_transaction(key_claims) as cur:
        assert access.is_enabled(cur, project.org_id) is True
        assert access.is_enabled(cur, other.org_id) is False
        # And its organization's budget, not the other's
        assert metering.month_budget(cur, project.org_id, datetime.now(UTC)).monthly_tokens == FREE_BUDGET
        with pytest.raises(NotFound):
            metering.month_budget(cur, other.org_id, datetime.now(UTC))
    # And a user of neither organization sees neither
    stranger = make_user(db)
    claims = {"sub": str(stranger.id), "role": "authenticated", "aud": "authenticated", "email": stranger.email}
    with tenant_transaction(claims) as cur:
        assert access.is_enabled(cur, project.org_id) is False
        with pytest.raises(NotFound):
            metering.check_budget(cur, project.org_id, datetime.now(UTC))


def test_a_model_failure_becomes_a_503_with_its_reason() -> None:
    response = response_for(access.unavailable_error(AiUnavailable("circuit_open")))
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert response.body["error"]["code"] == "ai_unavailable"
    assert response.body["error"]["details"] == {"reason": "circuit_open"}
    assert response_for(access.unavailable_error(AiUnavailable("not_configured"))).body["error"]["code"] == (
        "ai_not_configured"
    )


# -- metering ---------------------------------------------------------------------------------------------------------


def test_metering_survives_the_callers_rollback(db: psycopg.Connection[Any]) -> None:
    # Given an organization
    org, project = make_org(db), uuid.uuid4()

    # When a caller records a call inside its transaction, then rolls back
    with pytest.raises(RuntimeError), transaction() as cur:
        cur.execute("insert into public.org_ai_settings (org_id, enabled) values (%s, true)", (org,))
        metering.record(
            org, project, "summary", model="gemini-2.5-flash", input_tokens=900, output_tokens=100, outcome="invalid"
        )
        raise RuntimeError("the answer failed validation")
    # And another records one outside any transaction
    metering.record(org, None, "ask_logs", model="gemini-2.5-flash", input_tokens=50, output_tokens=0, outcome="failed")

    # Then both calls are metered; the caller's own write is gone
    assert usage_rows(db, org) == [
        {
            "feature": "summary",
            "model": "gemini-2.5-flash",
            "input_tokens": 900,
            "output_tokens": 100,
            "outcome": "invalid",
            "project_id": project,
        },
        {
            "feature": "ask_logs",
            "model": "gemini-2.5-flash",
            "input_tokens": 50,
            "output_tokens": 0,
            "outcome": "failed",
            "project_id": None,
        },
    ]
    assert db.execute("select 1 from public.org_ai_settings where org_id = %s", (org,)).fetchone() is None


def test_metering_from_inside_a_tenants_transaction_commits_apart(db: psycopg.Connection[Any]) -> None:
    # Given a member's transaction (role authenticated: it could not insert usage itself) that rolls back
    org = make_org(db)
    user = member(db, org, "member")
    claims = {"sub": str(user.id), "role": "authenticated", "aud": "authenticated", "email": user.email}
    with pytest.raises(RuntimeError), tenant_transaction(claims) as cur:
        assert not access.is_enabled(cur, org)
        metering.record(org, None, "ask_metrics", model="m", input_tokens=3, output_tokens=4, outcome="ok")
        raise RuntimeError("the request failed later")
    # Then the call is metered all the same
    assert [(r["feature"], r["input_tokens"], r["output_tokens"]) for r in usage_rows(db, org)] == [
        ("ask_metrics", 3, 4)
    ]


def test_metering_never_fails_the_caller_when_the_database_is_down(
    db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, captured_logs: Any
) -> None:
    # Given a database that cannot be reached (a port nobody listens on)
    org = make_org(db)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT_S", "1")
    # When a call is recorded / Then nothing is raised; a warning says what was not metered
    metering.record(org, None, "summary", model="m", input_tokens=10, output_tokens=1, outcome="ok")
    assert "AI usage not metered" in captured_logs.getvalue()
    monkeypatch.undo()
    assert usage_rows(db, org) == []


def test_metering_refuses_unknown_features_and_outcomes(db: psycopg.Connection[Any]) -> None:
    org = make_org(db)
    with pytest.raises(ValueError):
        metering.record(org, None, "chat", model="m", input_tokens=1, output_tokens=1, outcome="ok")
    with pytest.raises(ValueError):
        metering.record(org, None, "summary", model="m", input_tokens=1, output_tokens=1, outcome="maybe")
    assert usage_rows(db, org) == []


def test_a_metered_call_through_the_stand_in(db: psycopg.Connection[Any]) -> None:
    # Given an organization that opted in, and the model answering with known token counts
    org = make_org(db)
    db.execute("insert into public.org_ai_settings (org_id, enabled) values (%s, true)", (org,))
    from pydantic import BaseModel

    class Short(BaseModel):
        answer: str

    with GeminiStandIn() as gemini:
        settings = Settings(gemini_api_key=API_KEY, gemini_base_url=gemini.base_url)
        gemini.answer_json({"answer": "42"}, input_tokens=321, output_tokens=12)
        # When a feature does what every AI feature does: access, budget, call, record
        now = datetime.now(UTC)
        with transaction() as cur:
            access.require_enabled(cur, org, settings)
            metering.check_budget(cur, org, now)
        generation = provider.language_model(settings).generate_json(system="s", prompt="p", schema=Short)
        metering.record(
            org,
            None,
            "summary",
            model=generation.model,
            input_tokens=generation.input_tokens,
            output_tokens=generation.output_tokens,
            outcome="ok",
        )
    # Then the tokens the model reported are metered
    assert [(r["input_tokens"], r["output_tokens"], r["outcome"]) for r in usage_rows(db, org)] == [(321, 12, "ok")]


# -- the budget -------------------------------------------------------------------------------------------------------


def test_the_budget_of_the_plan_refuses_calls_until_next_month(db: psycopg.Connection[Any]) -> None:
    # Given a free organization that used 249,999 tokens this month (and a lot last month, which does not count)
    org = make_org(db, "free")
    now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    add_usage(db, org, datetime(2026, 11, 30, 12, tzinfo=UTC), 5_000_000)
    add_usage(db, org, datetime(2026, 12, 1, 0, 0, tzinfo=UTC), 200_000)
    add_usage(db, org, datetime(2026, 12, 20, tzinfo=UTC), 49_999, feature="embedding")
    with transaction() as cur:
        # When a call is checked / Then it may go
        metering.check_budget(cur, org, now)
    # When one more token is used
    add_usage(db, org, datetime(2026, 12, 31, 22, tzinfo=UTC), 1, feature="ask_metrics")
    with transaction() as cur, pytest.raises(AiBudgetExhausted) as info:
        metering.check_budget(cur, org, now)

    # Then 429 ai_budget_exhausted, Retry-After until 2027-01-01 00:00 UTC (one hour), and a clear message
    exc = info.value
    response = response_for(exc)
    assert response.status_code == 429 and response.headers["Retry-After"] == "3600"
    assert response.body["error"]["code"] == "ai_budget_exhausted"
    assert exc.message == (
        "the AI token budget of the free plan is used up for this month: 250,000 tokens;"
        " it resets on 2027-01-01 00:00 UTC"
    )
    assert exc.details == {
        "plan": "free",
        "monthly_tokens": FREE_BUDGET,
        "used_tokens": FREE_BUDGET,
        "resets_at": "2027-01-01T00:00:00+00:00",
    }
    # And in January the budget is whole again
    with transaction() as cur:
        metering.check_budget(cur, org, datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC))


@pytest.mark.parametrize(("plan", "budget"), [("free", 250_000), ("pro", 10_000_000), ("enterprise", 100_000_000)])
def test_each_plan_has_its_budget(db: psycopg.Connection[Any], plan: str, budget: int) -> None:
    org = make_org(db, plan)
    with transaction() as cur:
        assert metering.month_budget(cur, org, datetime.now(UTC)).monthly_tokens == budget


def test_a_member_is_refused_through_rls_too(db: psycopg.Connection[Any]) -> None:
    # Given a free organization that used its budget, and one of its members
    org = make_org(db, "free")
    add_usage(db, org, datetime.now(UTC), FREE_BUDGET)
    user = member(db, org, "member")
    claims = {"sub": str(user.id), "role": "authenticated", "aud": "authenticated", "email": user.email}
    with tenant_transaction(claims) as cur, pytest.raises(AiBudgetExhausted):
        metering.check_budget(cur, org, datetime.now(UTC))


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (datetime(2026, 12, 6, 8, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),
        (datetime(2028, 2, 29, 23, 59, tzinfo=UTC), datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
    ],
)
def test_month_bounds(now: datetime, start: datetime, end: datetime) -> None:
    assert metering.month_bounds(now) == (start, end)


# -- the usage report -------------------------------------------------------------------------------------------------


def test_the_usage_report_shows_the_months_tokens_per_feature(db: psycopg.Connection[Any]) -> None:
    # Given an organization's calls this month (and last month's, and another organization's)
    org, other = make_org(db, "pro"), make_org(db)
    now = datetime.now(UTC)
    for feature, inp, out, outcome in [
        ("summary", 1000, 200, "ok"),
        ("summary", 800, 50, "invalid"),
        ("summary", 0, 0, "failed"),
        ("embedding", 300, 0, "ok"),
    ]:
        metering.record(
            org, None, feature, model="gemini-2.5-flash", input_tokens=inp, output_tokens=out, outcome=outcome
        )
    metering.record(other, None, "summary", model="m", input_tokens=7, output_tokens=7, outcome="ok")
    add_usage(db, org, metering.month_bounds(now)[0] - timedelta(hours=1), 99_999)  # last month
    viewer = member(db, org, "viewer")

    # When a viewer reads the usage report
    result = invoke("orgs", "GET", f"/v1/orgs/{org}/usage", headers=viewer.headers)

    # Then its ai section has this month's tokens, per feature, against the pro plan's budget
    assert result.status == 200, result.text
    ai = result.data["ai"]
    assert (ai["input_tokens"], ai["output_tokens"], ai["total_tokens"]) == (2100, 250, 2350)
    assert ai["monthly_token_budget"] == 10_000_000 and ai["remaining_tokens"] == 10_000_000 - 2350
    assert ai["features"] == [
        {"feature": "embedding", "calls": 1, "failed_calls": 0, "input_tokens": 300, "output_tokens": 0},
        {"feature": "summary", "calls": 3, "failed_calls": 1, "input_tokens": 1800, "output_tokens": 250},
    ]
    assert ai["month_start"].startswith(f"{now:%Y-%m}-01T00:00:00")
    # And the AI settings say the same
    assert ai_route("GET", org, viewer).data["tokens_used_this_month"] == 2350
    # And the other organization's report has only its own
    other_viewer = member(db, other, "viewer")
    other_ai = invoke("orgs", "GET", f"/v1/orgs/{other}/usage", headers=other_viewer.headers).data["ai"]
    assert other_ai["total_tokens"] == 14 and other_ai["monthly_token_budget"] == FREE_BUDGET


def test_settings_read_the_key_from_the_environment_never_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    settings = get_settings()
    assert provider.is_configured(settings)
    assert API_KEY not in repr(settings) and API_KEY not in str(settings.model_dump())
