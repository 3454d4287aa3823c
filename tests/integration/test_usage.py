"""Usage and quotas: exact counting without a hot row, a roll-up that never double-counts, quotas as 429,
and GET /v1/orgs/{org_id}/usage through the real handler."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.db.connection import transaction
from observai.errors import RateLimited
from observai.http.exception_handlers import response_for
from observai.telemetry import usage, usage_report
from observai.telemetry.model import Signal
from observai.telemetry.usage import check_quota, plan_limits, roll_up_usage, usage_statement

from tests.helpers.inprocess import invoke
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.integration


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    usage.reset_caches()
    yield
    usage.reset_caches()


def make_org(db: psycopg.Connection, plan: str = "free") -> uuid.UUID:
    org = uuid.uuid4()
    db.execute(
        "insert into public.organizations (id, name, slug, plan) values (%s, 'Usage org', %s, %s)",
        (org, f"usage-{org.hex[:12]}", plan),
    )
    return org


def daily(db: psycopg.Connection, org: uuid.UUID) -> dict[tuple[date, str], tuple[int, int]]:
    rows = db.execute("select day, signal, events, bytes from public.usage_daily where org_id = %s", (org,))
    return {(r["day"], r["signal"]): (r["events"], r["bytes"]) for r in rows.fetchall()}


def pending(db: psycopg.Connection, org: uuid.UUID) -> int:
    return db.execute("select count(*) as n from public.usage_increments where org_id = %s", (org,)).fetchone()["n"]


def record_usage(cur: Any, org: Any, project: Any, per_signal: dict[Signal, tuple[int, int]]) -> None:
    """One request's usage, as the writer appends it in its transaction."""
    statement = usage_statement(org, project, per_signal)
    if statement is not None:
        cur.execute(statement)


def roll_up_everything() -> int:
    total = 0
    while moved := roll_up_usage(max_rows=1_000_000):
        total += moved
    return total


def test_record_then_roll_up_sums_exactly(db: psycopg.Connection) -> None:
    # Given an organization and three requests' usage, one with a signal that counted nothing
    org, project = make_org(db), uuid.uuid4()
    with transaction() as cur:
        record_usage(cur, org, project, {Signal.METRICS: (100, 4_000), Signal.LOGS: (10, 900), Signal.TRACES: (0, 0)})
    with transaction() as cur:
        record_usage(cur, org, project, {Signal.METRICS: (1, 40)})
    with transaction() as cur:
        record_usage(cur, org, project, {Signal.TRACES: (7, 700), Signal.LOGS: (2, 100)})

    # Then each request appended one row per non-empty signal (no row updated, no zero row)
    assert pending(db, org) == 5

    # When the roll-up runs
    roll_up_everything()

    # Then usage_daily holds the exact sums for today and the increments are gone
    d = today()
    assert daily(db, org) == {(d, "metrics"): (101, 4_040), (d, "logs"): (12, 1_000), (d, "traces"): (7, 700)}
    assert pending(db, org) == 0


def test_usage_rolls_back_with_the_writers_transaction(db: psycopg.Connection) -> None:
    # Given a write that fails after recording usage
    org = make_org(db)
    with pytest.raises(RuntimeError), transaction() as cur:
        record_usage(cur, org, uuid.uuid4(), {Signal.LOGS: (5, 50)})
        raise RuntimeError("the data write failed")
    # Then no usage was counted for it
    assert pending(db, org) == 0


def test_rolling_up_twice_never_double_counts(db: psycopg.Connection) -> None:
    # Given rolled-up usage
    org = make_org(db)
    with transaction() as cur:
        record_usage(cur, org, uuid.uuid4(), {Signal.LOGS: (3, 30)})
    roll_up_everything()
    first = daily(db, org)
    # When the roll-up runs again, and after new usage once more
    roll_up_everything()
    assert daily(db, org) == first
    with transaction() as cur:
        record_usage(cur, org, uuid.uuid4(), {Signal.LOGS: (4, 40)})
    roll_up_everything()
    # Then the new usage is added once to the same row
    assert daily(db, org) == {(today(), "logs"): (7, 70)}


def test_roll_up_is_bounded_and_resumes(db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 40 increments and batches of 10
    org = make_org(db)
    db.execute(
        "insert into public.usage_increments (org_id, project_id, day, signal, events, bytes)"
        " select %s, gen_random_uuid(), %s, 'metrics', 1, 10 from generate_series(1, 40)",
        (org, today()),
    )
    monkeypatch.setattr(usage, "ROLLUP_BATCH_SIZE", 10)
    roll_up_everything_else = roll_up_usage(max_rows=1_000_000)  # earlier tests' leftovers, if any
    assert roll_up_everything_else >= 0
    db.execute(
        "insert into public.usage_increments (org_id, project_id, day, signal, events, bytes)"
        " select %s, gen_random_uuid(), %s, 'metrics', 1, 10 from generate_series(1, 40)",
        (org, today()),
    )
    # When a run may move at most 25 rows
    assert roll_up_usage(max_rows=25) == 25
    # Then 15 are left for the next run, which finishes the work; the sum is exact
    assert pending(db, org) == 15
    assert roll_up_usage(max_rows=25) == 15
    assert daily(db, org) == {(today(), "metrics"): (80, 800)}


def test_overlapping_roll_up_skips(database_url: str, db: psycopg.Connection) -> None:
    # Given another roll-up holds the lock
    org = make_org(db)
    with transaction() as cur:
        record_usage(cur, org, uuid.uuid4(), {Signal.TRACES: (2, 20)})
    with psycopg.connect(database_url) as other:
        other.execute("select pg_advisory_xact_lock(%s)", (usage.ROLLUP_LOCK_KEY,))
        # When a second one starts / Then it moves nothing
        assert roll_up_usage() == 0
        assert pending(db, org) == 1
    roll_up_everything()
    assert daily(db, org) == {(today(), "traces"): (2, 20)}


def test_concurrent_roll_ups_never_double_count_even_without_the_lock(
    database_url: str, db: psycopg.Connection
) -> None:
    # Given 3,000 increments for one organization
    org = make_org(db)
    db.execute(
        "insert into public.usage_increments (org_id, project_id, day, signal, events, bytes)"
        " select %s, gen_random_uuid(), %s, (array['metrics', 'logs', 'traces'])[1 + g %% 3], g, 2 * g"
        " from generate_series(1, 3000) g",
        (org, today()),
    )
    expected_events, expected_bytes = sum(range(1, 3001)), 2 * sum(range(1, 3001))

    # When four workers run the roll-up statement at the same time, in small batches, bypassing the
    # advisory lock (only FOR UPDATE SKIP LOCKED and the single-statement move protect them)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                while conn.execute(usage._ROLLUP_SQL, {"limit": 50}).fetchone()[0]:
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # Then every increment was counted exactly once
    assert errors == []
    rows = daily(db, org)
    assert sum(e for e, _ in rows.values()) == expected_events
    assert sum(b for _, b in rows.values()) == expected_bytes
    assert pending(db, org) == 0


def test_quota_429_with_retry_after_and_a_clear_message(db: psycopg.Connection) -> None:
    # Given a free organization that used 999,990 events today
    org = make_org(db, "free")
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes) values (%s, %s, 'logs', 999990, 1000)",
        (org, today()),
    )
    # When a request of 10 events comes / Then it passes (exactly at the quota)
    check_quota(org, 10, 100)

    # When one more event comes
    now = datetime.now(UTC).replace(hour=23, minute=59, second=0)
    with pytest.raises(RateLimited) as info:
        check_quota(org, 1, 10, now=now)

    # Then 429 with Retry-After = seconds to 00:00 UTC and a message saying which quota and when it resets
    exc = info.value
    assert exc.message == "daily event quota of the free plan reached: 1,000,000 events; resets at 00:00 UTC"
    assert exc.retry_after_s == 60
    assert exc.details["plan"] == "free" and exc.details["limit"] == 1_000_000
    assert exc.details["used"] == 1_000_000 and exc.details["incoming"] == 1
    response = response_for(exc)
    assert response.status_code == 429 and response.headers["Retry-After"] == "60"
    assert response.body["error"]["code"] == "rate_limited"


def test_byte_quota(db: psycopg.Connection) -> None:
    org = make_org(db, "free")
    db.execute(
        "insert into public.usage_increments (org_id, project_id, day, signal, events, bytes)"
        " values (%s, gen_random_uuid(), %s, 'logs', 1, %s)",
        (org, today(), 1024**3 - 100),
    )
    with pytest.raises(RateLimited, match=r"^daily byte quota of the free plan reached: 1 GiB; resets at 00:00 UTC$"):
        check_quota(org, 1, 101)


def test_quota_reads_are_cached_and_count_what_this_container_admitted(
    db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a free organization with no usage, and a clock we control
    clock = [1000.0]
    monkeypatch.setattr(usage, "_monotonic", lambda: clock[0])
    org = make_org(db, "free")
    check_quota(org, 400_000, 0)  # read once: 0 used

    # When other containers' usage appears in the database within the 30 s window
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes) values (%s, %s, 'metrics', 500000, 0)",
        (org, today()),
    )
    clock[0] += 10
    # Then this container does not see it yet (no query per request), but counts its own admissions
    check_quota(org, 400_000, 0)  # 800,000 by its own count
    with pytest.raises(RateLimited):
        check_quota(org, 300_000, 0)  # 1,100,000 by its own count
    # And after 30 s it reads the database again: now it sees the others' 500,000 (this container's
    # admitted requests wrote nothing in this test, so the database's figure replaces its own count)
    clock[0] += 21
    with pytest.raises(RateLimited) as info:
        check_quota(org, 500_001, 0)
    assert info.value.details["used"] == 500_000
    check_quota(org, 500_000, 0)


def test_enterprise_is_unlimited_and_plan_limits_are_read(db: psycopg.Connection) -> None:
    org = make_org(db, "enterprise")
    check_quota(org, 10**12, 10**15)
    limits = plan_limits(org)
    assert limits.model_dump() == {
        "plan": "enterprise",
        "events_per_day": None,
        "bytes_per_day": None,
        "max_series": 10_000_000,
        "max_cardinality_per_metric": 500_000,
        "retention_days": 90,
        "logs_info_retention_days": 30,
        "logs_debug_retention_days": 14,
    }
    free = plan_limits(make_org(db, "free"))
    assert (free.events_per_day, free.bytes_per_day, free.max_series, free.max_cardinality_per_metric) == (
        1_000_000,
        1024**3,
        10_000,
        1_000,
    )


# ---------------------------------------------------------------------------------------------
# GET /v1/orgs/{org_id}/usage


def create_org_as(user_headers: dict[str, str]) -> str:
    result = invoke("orgs", "POST", "/v1/orgs", headers=user_headers, json_body={"name": "Usage Co"})
    assert result.status == 201, result.text
    return result.data["id"]


def test_usage_route_reports_rolled_up_and_pending_usage(db: psycopg.Connection) -> None:
    # Given an organization with usage yesterday (rolled up) and today (partly rolled up, partly pending)
    owner = make_user(db)
    org = create_org_as(owner.headers)
    d = today()
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes) values"
        " (%s, %s, 'metrics', 1000, 50000), (%s, %s, 'logs', 5, 500)",
        (org, d - timedelta(days=1), org, d),
    )
    with transaction() as cur:
        record_usage(cur, uuid.UUID(org), uuid.uuid4(), {Signal.LOGS: (7, 700), Signal.TRACES: (3, 300)})

    # When the owner asks for the default range (the last 30 days)
    result = invoke("orgs", "GET", f"/v1/orgs/{org}/usage", headers=owner.headers)

    # Then per day and signal: daily + pending, the plan and its limits, and today's totals against them
    assert result.status == 200, result.text
    data = result.data
    assert (data["from_day"], data["to_day"]) == (str(d - timedelta(days=29)), str(d))
    assert data["days"] == [
        {"day": str(d - timedelta(days=1)), "signal": "metrics", "events": 1000, "bytes": 50000},
        {"day": str(d), "signal": "logs", "events": 12, "bytes": 1200},
        {"day": str(d), "signal": "traces", "events": 3, "bytes": 300},
    ]
    assert data["plan"] == "free" and data["limits"]["events_per_day"] == 1_000_000
    assert data["limits"]["bytes_per_day"] == 1024**3 and data["limits"]["retention_days"] == 7
    today_ = data["today"]
    assert (today_["events"], today_["bytes"]) == (15, 1500)
    assert today_["events_remaining"] == 1_000_000 - 15
    assert today_["resets_at"].startswith(str(d + timedelta(days=1)))
    assert {t["signal"]: t["events"] for t in data["totals"]} == {"metrics": 1000, "logs": 12, "traces": 3}

    # And a range that excludes today still reports today's totals, with only the asked days listed
    past = invoke(
        "orgs",
        "GET",
        f"/v1/orgs/{org}/usage",
        headers=owner.headers,
        query=f"from={d - timedelta(days=3)}&to={d - timedelta(days=1)}",
    )
    assert past.status == 200, past.text
    assert [x["day"] for x in past.data["days"]] == [str(d - timedelta(days=1))]
    assert past.data["today"]["events"] == 15


def test_usage_route_viewer_reads_other_org_member_gets_404(db: psycopg.Connection) -> None:
    # Given an organization, one of its viewers, and a member of another organization
    owner, viewer, stranger = make_user(db), make_user(db), make_user(db)
    org = create_org_as(owner.headers)
    add_membership(db, org, viewer.id, "viewer")
    create_org_as(stranger.headers)

    # When the viewer asks / Then 200
    assert invoke("orgs", "GET", f"/v1/orgs/{org}/usage", headers=viewer.headers).status == 200
    # When the stranger asks / Then 404: the organization's existence is not revealed
    result = invoke("orgs", "GET", f"/v1/orgs/{org}/usage", headers=stranger.headers)
    assert result.status == 404 and result.error["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("from=2024-01-01&to=2025-01-02", 400, "more than 366 days"),
        ("from=2025-02-01&to=2025-01-01", 400, "'from' must not be after 'to'"),
        ("from=yesterday", 422, None),
    ],
)
def test_usage_route_rejects_bad_ranges(db: psycopg.Connection, query: str, status: int, message: str | None) -> None:
    owner = make_user(db)
    org = create_org_as(owner.headers)
    result = invoke("orgs", "GET", f"/v1/orgs/{org}/usage", headers=owner.headers, query=query)
    assert result.status == status, result.text
    if message:
        assert message in result.error["message"]


def test_usage_route_accepts_exactly_366_days(db: psycopg.Connection) -> None:
    owner = make_user(db)
    org = create_org_as(owner.headers)
    result = invoke(
        "orgs", "GET", f"/v1/orgs/{org}/usage", headers=owner.headers, query="from=2024-01-01&to=2024-12-31"
    )
    assert result.status == 200, result.text
    assert result.data["days"] == []


@pytest.mark.parametrize(
    ("query", "first_day"),
    [("to=0001-01-01", "0001-01-01"), ("to=0001-01-29", "0001-01-01"), ("to=0001-01-30", "0001-01-01")],
)
def test_usage_route_defaults_from_to_the_first_calendar_day_at_most(
    db: psycopg.Connection, query: str, first_day: str
) -> None:
    # Given a `to` within 29 days of the calendar's first day (Schemathesis: ?to=0001-01-01 overflowed, a 500)
    owner = make_user(db)
    org = create_org_as(owner.headers)
    # When asking for the default range up to it
    result = invoke("orgs", "GET", f"/v1/orgs/{org}/usage", headers=owner.headers, query=query)
    # Then 200: the range starts on 0001-01-01, not before
    assert result.status == 200, result.text
    assert result.data["from_day"] == first_day and result.data["days"] == []


def test_usage_range_resolution_at_the_calendar_edges() -> None:
    span = usage_report.DEFAULT_REPORT_DAYS - 1
    assert usage_report.resolve_range(None, date.min, date(2026, 1, 1)) == (date.min, date.min)
    edge = date.min + timedelta(days=span)
    assert usage_report.resolve_range(None, edge, date(2026, 1, 1)) == (date.min, edge)
    assert usage_report.resolve_range(None, date.max, date(2026, 1, 1)) == (date.max - timedelta(days=span), date.max)
