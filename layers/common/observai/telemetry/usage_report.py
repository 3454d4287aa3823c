"""The usage report of an organization, ``GET /v1/orgs/{org_id}/usage``: usage per day and signal (rolled up and
pending, in one snapshot), the plan and its limits, today's totals against the daily quota, and this month's AI tokens.

Apart from observai.telemetry.usage (the quotas the ingest path checks), so that ingestion never imports the report's
models.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from observai.ai.settings_models import AiUsage
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction
from observai.errors import InvalidInput, NotFound
from observai.telemetry.signal import Signal
from observai.telemetry.usage import PLAN_SQL, PlanLimits, limits_from, next_utc_midnight, utc_now

DEFAULT_REPORT_DAYS = 30
MAX_REPORT_DAYS = 366


class UsageDay(BaseModel):
    model_config = ConfigDict(defer_build=True)
    day: date
    signal: Signal
    events: int
    bytes: int


class UsageTotal(BaseModel):
    model_config = ConfigDict(defer_build=True)
    signal: Signal
    events: int
    bytes: int


class UsageToday(BaseModel):
    model_config = ConfigDict(defer_build=True)
    day: date
    events: int
    bytes: int
    events_limit: int | None = Field(description="The plan's events_per_day; null: unlimited")
    bytes_limit: int | None = Field(description="The plan's bytes_per_day; null: unlimited")
    events_remaining: int | None
    bytes_remaining: int | None
    resets_at: datetime = Field(description="Next 00:00 UTC, when the daily quota starts again")


class UsageReport(BaseModel):
    model_config = ConfigDict(defer_build=True)
    org_id: UUID
    from_day: date
    to_day: date
    plan: str
    limits: PlanLimits
    days: list[UsageDay] = Field(description="Per day and signal, oldest first; days without usage are omitted")
    totals: list[UsageTotal] = Field(description="Per signal over the range")
    today: UsageToday
    ai: AiUsage = Field(description="This calendar month's AI model calls and tokens against the plan's budget")


# ---------------------------------------------------------------------------------------------
# Report (GET /v1/orgs/{org_id}/usage)

# Rolled-up days (RLS: members read usage_daily) plus the increments not yet rolled up (through
# private.pending_usage, members only), in one statement so one snapshot; today always included.
_REPORT_SQL = """
with u as (
    select d.day, d.signal, d.events, d.bytes from public.usage_daily d
    where d.org_id = %(org)s and (d.day between %(from)s and %(to)s or d.day = %(today)s)
    union all
    select p.day, p.signal, p.events, p.bytes from private.pending_usage(%(org)s, %(from)s, %(to)s) p
    union all
    select p.day, p.signal, p.events, p.bytes from private.pending_usage(%(org)s, %(today)s, %(today)s) p
    where not (%(today)s between %(from)s and %(to)s)
)
select day, signal, sum(events)::bigint as events, sum(bytes)::bigint as bytes
from u group by day, signal order by day, signal
"""


def resolve_range(from_day: date | None, to_day: date | None, today: date) -> tuple[date, date]:
    """Default: the last 30 days up to today. At most MAX_REPORT_DAYS days; from must not be after to."""
    to_day = to_day or (today if from_day is None else max(today, from_day))
    if from_day is None:
        span = timedelta(days=DEFAULT_REPORT_DAYS - 1)
        # Never before the calendar's first day (?to=0001-01-01 overflowed: a 500).
        from_day = to_day - span if to_day - date.min >= span else date.min
    if from_day > to_day:
        raise InvalidInput(
            "'from' must not be after 'to'", details={"from": from_day.isoformat(), "to": to_day.isoformat()}
        )
    if (to_day - from_day).days + 1 > MAX_REPORT_DAYS:
        raise InvalidInput(
            f"the range covers more than {MAX_REPORT_DAYS} days",
            details={"from": from_day.isoformat(), "to": to_day.isoformat(), "max_days": MAX_REPORT_DAYS},
        )
    return from_day, to_day


def usage_report(principal: Principal, org_id: UUID, from_day: date | None, to_day: date | None) -> UsageReport:
    """Usage per day and signal (rolled up + pending), the plan and its limits, and today's totals vs them."""
    from observai.tenancy.access import authorize_org

    now = utc_now()
    today = now.date()
    from_day, to_day = resolve_range(from_day, to_day, today)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_org(cur, principal, org_id, Action.ORG_READ)
        cur.execute(PLAN_SQL, {"org": org_id})
        plan_row = cur.fetchone()
        if plan_row is None:
            raise NotFound("Organization not found", details={"org_id": str(org_id)})
        cur.execute(_REPORT_SQL, {"org": org_id, "from": from_day, "to": to_day, "today": today})
        rows = cur.fetchall()
        from observai.ai.settings import month_usage

        ai = month_usage(cur, org_id, now)
    limits = limits_from(plan_row)
    days = [UsageDay(**r) for r in rows if from_day <= r["day"] <= to_day]
    totals: dict[Signal, UsageTotal] = {}
    for d in days:
        t = totals.setdefault(d.signal, UsageTotal(signal=d.signal, events=0, bytes=0))
        t.events += d.events
        t.bytes += d.bytes
    today_events = sum(r["events"] for r in rows if r["day"] == today)
    today_bytes = sum(r["bytes"] for r in rows if r["day"] == today)
    return UsageReport(
        org_id=org_id,
        from_day=from_day,
        to_day=to_day,
        plan=limits.plan,
        limits=limits,
        days=days,
        totals=list(totals.values()),
        today=UsageToday(
            day=today,
            events=today_events,
            bytes=today_bytes,
            events_limit=limits.events_per_day,
            bytes_limit=limits.bytes_per_day,
            events_remaining=None if limits.events_per_day is None else max(0, limits.events_per_day - today_events),
            bytes_remaining=None if limits.bytes_per_day is None else max(0, limits.bytes_per_day - today_bytes),
            resets_at=next_utc_midnight(now),
        ),
        ai=ai,
    )
