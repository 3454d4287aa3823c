"""Per-organization daily usage (events and bytes per signal), plan limits and quotas.

Counting without a hot row: the writer sends ``usage_statement`` with its own COMMIT, which
appends one small ``usage_increments`` row per request and signal (no row is ever updated by two
requests, so concurrent requests never wait on each other, and usage commits or rolls back with the
data: it is exact). ``roll_up_usage`` (run hourly by the partition-upkeep job) moves increments into
``usage_daily``. Today's usage is always ``usage_daily(today) + increments not yet rolled up``, read in
ONE statement (one snapshot), so a concurrent roll-up is never counted twice nor missed.

Quotas: ``check_quota`` reads an organization's usage at most once every ``USAGE_CACHE_TTL_S`` (30 s)
per container, and adds what this container admitted since. So a quota is a soft bound: a burst can
exceed the daily quota by at most ~30 s of the traffic other containers admit for that organization.
``plan_limits`` (max series, cardinality per metric, retention) is cached ``PLAN_CACHE_TTL_S`` (60 s).

The report (``GET /v1/orgs/{org_id}/usage``) is observai.telemetry.usage_report's: ingestion imports this module
and never needs the report's models.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from observai.db.batched_move import move_in_batches
from observai.db.connection import execute_autocommit, transaction
from observai.db.literals import uuid_literal
from observai.errors import NotFound, RateLimited
from observai.telemetry.signal import Signal

USAGE_CACHE_TTL_S = 30.0
PLAN_CACHE_TTL_S = 60.0
# Roll-up: pg_try_advisory_xact_lock key, rows per transaction.
ROLLUP_LOCK_KEY = 0x0B5A1_0003
ROLLUP_BATCH_SIZE = 20_000

GIB = 1024**3


# ---------------------------------------------------------------------------------------------
# Models


class PlanLimits(BaseModel):
    """A plan's limits; None means unlimited."""

    model_config = ConfigDict(defer_build=True)

    plan: str
    events_per_day: int | None = Field(description="Events per UTC day, all signals together; null: unlimited")
    bytes_per_day: int | None = Field(description="Bytes per UTC day (request bodies, decompressed); null: unlimited")
    max_series: int | None = Field(description="Distinct metric series per project")
    max_cardinality_per_metric: int | None = Field(description="Distinct series per metric name")
    retention_days: int = Field(description="Days spans, metric points and WARN+ logs are kept")
    logs_info_retention_days: int = Field(description="Days INFO logs (and logs without a severity) are kept")
    logs_debug_retention_days: int = Field(description="Days TRACE and DEBUG logs are kept")


# ---------------------------------------------------------------------------------------------
# Time


def utc_now() -> datetime:
    return datetime.now(UTC)


def next_utc_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def seconds_to_utc_midnight(now: datetime | None = None) -> int:
    now = now or utc_now()
    return max(1, int((next_utc_midnight(now) - now).total_seconds() + 0.999))


# ---------------------------------------------------------------------------------------------
# Recording (the writer, inside its transaction)


def usage_statement(org_id: UUID, project_id: UUID, per_signal: Mapping[Signal, tuple[int, int]]) -> sql.SQL | None:
    """The statement appending today's (UTC, the database's clock) usage of one request, (events, bytes) per
    signal, values written in; None when nothing counted. The writer sends it with the COMMIT of the transaction
    that stores the data: usage commits with it. Signals with nothing to count are skipped; one statement
    whatever the number of signals.

    Every value is of a type whose text cannot carry SQL (UUIDs, a Signal's name, integers), so the statement is
    written directly, a few microseconds instead of ~40 through psycopg's quoting (a call per ingest request)."""
    rows = [(Signal(s).value, int(e), int(b)) for s, (e, b) in per_signal.items() if e or b]
    if not rows:
        return None
    if any(e < 0 or b < 0 for _, e, b in rows):
        raise ValueError("usage cannot be negative")
    org, project = uuid_literal(org_id), uuid_literal(project_id)
    values = ", ".join(
        f"({org}, {project}, (now() at time zone 'UTC')::date, '{signal}', {events}, {size})"
        for signal, events, size in rows
    )
    return sql.SQL(
        f"insert into public.usage_increments (org_id, project_id, day, signal, events, bytes) values {values}"
    )


# ---------------------------------------------------------------------------------------------
# Limits and quotas (the writer, before it writes)

PLAN_SQL = """
select p.plan, p.events_per_day, p.bytes_per_day, p.max_series, p.max_cardinality_per_metric, p.retention_days,
       p.logs_info_retention_days, p.logs_debug_retention_days
from public.organizations o join public.plans p on p.plan = o.plan
where o.id = %(org)s
"""

# Plan and today's usage in one statement: usage_daily(today) + increments not yet rolled up (one
# snapshot, so a roll-up committing meanwhile is counted exactly once). Index-only scans on the
# usage_daily primary key and usage_increments (org_id, day) include (signal, events, bytes).
_QUOTA_SQL = f"""
with used as (
    select d.events, d.bytes from public.usage_daily d where d.org_id = %(org)s and d.day = %(day)s
    union all
    select i.events, i.bytes from public.usage_increments i where i.org_id = %(org)s and i.day = %(day)s
)
select plan.*,
       (select coalesce(sum(events), 0)::bigint from used) as used_events,
       (select coalesce(sum(bytes), 0)::bigint from used) as used_bytes
from ({PLAN_SQL}) plan
"""


@dataclass(slots=True)
class _UsageState:
    fetched_at: float  # monotonic
    day: date
    limits: PlanLimits
    used_events: int
    used_bytes: int


_lock = threading.Lock()
_plan_cache: dict[UUID, tuple[float, PlanLimits]] = {}
_usage_cache: dict[UUID, _UsageState] = {}
_monotonic = time.monotonic


_noticed: set[tuple[UUID, date, str]] = set()  # (org, day, quota) this container knows were noticed


def reset_caches() -> None:
    """Forget cached plans and usage (tests; a plan change takes effect within PLAN_CACHE_TTL_S anyway)."""
    with _lock:
        _plan_cache.clear()
        _usage_cache.clear()
        _noticed.clear()


def limits_from(row: Mapping[str, Any]) -> PlanLimits:
    return PlanLimits(
        plan=row["plan"],
        events_per_day=row["events_per_day"],
        bytes_per_day=row["bytes_per_day"],
        max_series=row["max_series"],
        max_cardinality_per_metric=row["max_cardinality_per_metric"],
        retention_days=row["retention_days"],
        logs_info_retention_days=row["logs_info_retention_days"],
        logs_debug_retention_days=row["logs_debug_retention_days"],
    )


def plan_limits(org_id: UUID) -> PlanLimits:
    """The organization's plan limits, cached per container for PLAN_CACHE_TTL_S."""
    now = _monotonic()
    cached = _plan_cache.get(org_id)
    if cached is not None and now - cached[0] < PLAN_CACHE_TTL_S:
        return cached[1]
    rows = execute_autocommit(PLAN_SQL, {"org": org_id})
    if not rows:
        raise NotFound("Organization not found", details={"org_id": str(org_id)})
    limits = limits_from(rows[0])
    with _lock:
        _plan_cache[org_id] = (now, limits)
    return limits


def _usage_state(org_id: UUID, today: date) -> _UsageState:
    now = _monotonic()
    state = _usage_cache.get(org_id)
    if state is not None and state.day == today and now - state.fetched_at < USAGE_CACHE_TTL_S:
        return state
    rows = execute_autocommit(_QUOTA_SQL, {"org": org_id, "day": today})
    if not rows:
        raise NotFound("Organization not found", details={"org_id": str(org_id)})
    row = rows[0]
    limits = limits_from(row)
    state = _UsageState(
        fetched_at=now, day=today, limits=limits, used_events=int(row["used_events"]), used_bytes=int(row["used_bytes"])
    )
    with _lock:
        _usage_cache[org_id] = state
        _plan_cache[org_id] = (now, limits)
    return state


def _format_bytes(n: int) -> str:
    if n % GIB == 0:
        return f"{n // GIB:,} GiB"
    return f"{n:,} bytes"


def check_quota(org_id: UUID, incoming_events: int, incoming_bytes: int, *, now: datetime | None = None) -> None:
    """Raise RateLimited (429, Retry-After = seconds to 00:00 UTC) when the request would pass the daily quota.

    Today's usage is read at most every USAGE_CACHE_TTL_S per organization and container; what this
    container admits in between is added to the cached figure, so only other containers' traffic of the
    last ~30 s can slip past the quota. An admitted request is counted here even if its write later
    fails (conservative).
    """
    now = now or utc_now()
    today = now.date()
    state = _usage_state(org_id, today)
    limits = state.limits
    checks = (
        (
            "events_per_day",
            "event",
            limits.events_per_day,
            state.used_events,
            incoming_events,
            lambda n: f"{n:,} events",
        ),
        ("bytes_per_day", "byte", limits.bytes_per_day, state.used_bytes, incoming_bytes, _format_bytes),
    )
    for quota, noun, limit, used, incoming, fmt in checks:
        if limit is not None and used + incoming > limit:
            resets_at = next_utc_midnight(now)
            raise RateLimited(
                f"daily {noun} quota of the {limits.plan} plan reached: {fmt(limit)}; resets at 00:00 UTC",
                retry_after_s=seconds_to_utc_midnight(now),
                details={
                    "plan": limits.plan,
                    "quota": quota,
                    "limit": limit,
                    "used": used,
                    "incoming": incoming,
                    "resets_at": resets_at.isoformat(),
                },
            )
    with _lock:
        state.used_events += incoming_events
        state.used_bytes += incoming_bytes


def notice_quota_reached(
    org_id: UUID, project_id: UUID | None, details: dict[str, Any], *, now: datetime | None = None
) -> bool:
    """``usage.quota_reached`` once per organization, UTC day and quota: the first refused request records the
    notice and the outbox event in one transaction (the project whose request was refused receives it). Returns
    whether this call recorded it. Called after the refused write rolled back; refusals after the first cost a set
    lookup in this container and one insert that finds the row in another."""
    from observai import outbox

    now = now or utc_now()
    quota = str(details.get("quota", ""))
    key = (org_id, now.date(), quota)
    if key in _noticed:
        return False
    with transaction() as cur:
        cur.execute(
            "insert into public.usage_quota_notices (org_id, day, quota, noticed_at) values (%s, %s, %s, %s)"
            " on conflict do nothing returning org_id",
            (org_id, now.date(), quota, now),
        )
        recorded = cur.fetchone() is not None
        if recorded:
            day_start = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
            outbox.emit(
                cur,
                org_id=org_id,
                project_id=project_id,
                type="usage.quota_reached",
                data={
                    "org_id": str(org_id),
                    "project_id": None,
                    "quota": quota,
                    "period_start": day_start.isoformat(),
                    "period_end": next_utc_midnight(now).isoformat(),
                    "limit": int(details.get("limit", 0)),
                    "used": int(details.get("used", 0)),
                    "threshold_percent": 100,
                    "action": "rejected",
                },
                at=now,
            )
    with _lock:
        _noticed.add(key)
    return recorded


# ---------------------------------------------------------------------------------------------
# Roll-up (scheduled)

# Moves a batch of increments (oldest first) into usage_daily in one statement: delete ... returning →
# aggregate → upsert adding. Atomic: the rows leave usage_increments exactly when their sums enter
# usage_daily. SKIP LOCKED plus the advisory lock: two roll-ups never take the same row.
_ROLLUP_SQL = """
with picked as materialized (  -- evaluated once: the batch is these rows and no more, whatever the plan
    select id from public.usage_increments order by id limit %(limit)s for update skip locked
), moved as (
    delete from public.usage_increments t using picked p
    where t.id = p.id
    returning org_id, day, signal, events, bytes
), sums as (
    select org_id, day, signal, sum(events)::bigint as events, sum(bytes)::bigint as bytes, count(*) as n
    from moved group by org_id, day, signal
), upserted as (
    insert into public.usage_daily as d (org_id, day, signal, events, bytes)
    -- In key order: concurrent roll-ups then lock the same daily rows in the same order (no deadlock).
    select org_id, day, signal, events, bytes from sums order by org_id, day, signal
    on conflict (org_id, day, signal)
    do update set events = d.events + excluded.events, bytes = d.bytes + excluded.bytes
    returning 1
)
select coalesce((select sum(n) from sums), 0)::bigint as moved, (select count(*) from upserted) as upserted
"""


def roll_up_usage(max_rows: int = 50_000) -> int:
    """Move up to ``max_rows`` usage increments into usage_daily; return how many were moved.

    Bounded (batches of ROLLUP_BATCH_SIZE, at most max_rows), overlap-safe (a transaction-level advisory
    lock: a concurrent run stops), resumable (each batch commits on its own; the next run continues with
    the oldest remaining rows). Never double-counts: a row is deleted in the transaction that adds it.
    """
    return move_in_batches(ROLLUP_LOCK_KEY, _ROLLUP_SQL, ROLLUP_BATCH_SIZE, max_rows)
