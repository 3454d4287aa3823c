"""SQL of the delivery worker (observai.notify.deliveries): set-based, one statement per step for a whole batch
(the container has one database connection: per-delivery round trips would be the worker's throughput)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from observai.db.connection import Cursor

_CLAIMED_COLUMNS = (
    "d.id, d.org_id, d.project_id, d.incident_id, d.contact_point_id, d.user_id, d.channel, d.event, d.source,"
    " d.escalation_step, d.payload, d.attempts, d.progress, d.created_at"
)
_INCIDENT_COLUMNS = (
    "i.number as incident_number, i.title as incident_title, i.status as incident_status,"
    " i.severity as incident_severity, i.service as incident_service"
)


def claim(
    cur: Cursor,
    *,
    ids: Sequence[UUID] | None,
    limit: int,
    now: datetime,
    lease_until: datetime,
    max_attempts: int,
) -> list[dict[str, Any]]:
    """Claim the due deliveries among ``ids`` (or, without ids, the ``limit`` most overdue ones: the sweep): status
    pending with ``next_attempt_at <= now``, or sending with an expired lease (its ``next_attempt_at`` is the
    lease). Rows another worker holds are skipped (SKIP LOCKED); sent, failed and skipped ones are never due. Each
    claimed row: status sending, ``attempts + 1``, the lease (also its ``next_attempt_at``, so the sweep finds it
    if this worker dies). Returned with their incident's fields (``incident_*``)."""
    selector = "id = any(%(ids)s) and " if ids is not None else ""
    cur.execute(
        "with due as (select id from public.notification_deliveries"
        f" where {selector}status in ('pending', 'sending') and next_attempt_at <= %(now)s"
        " and attempts < %(max)s order by next_attempt_at limit %(limit)s for update skip locked),"
        " claimed as (update public.notification_deliveries d set status = 'sending', attempts = d.attempts + 1,"
        " lease_until = %(lease)s, next_attempt_at = %(lease)s, updated_at = %(now)s from due where d.id = due.id"
        f" returning {_CLAIMED_COLUMNS})"
        f" select d.*, {_INCIDENT_COLUMNS} from claimed d left join public.incidents i on i.id = d.incident_id"
        " order by d.created_at, d.id",
        {
            "ids": list(ids) if ids is not None else None,
            "now": now,
            "lease": lease_until,
            "limit": limit,
            "max": max_attempts,
        },
    )
    return [dict(row) for row in cur.fetchall()]


def contact_points(cur: Cursor, ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
    if not ids:
        return {}
    cur.execute("select * from public.contact_points where id = any(%s)", (list(ids),))
    return {row["id"]: dict(row) for row in cur.fetchall()}


@dataclass(frozen=True)
class SlotRequest:
    key: str  # the channel and a hash of its secret, never the secret
    wanted: int
    limit: int  # messages per window
    window_start: datetime


def take_slots(cur: Cursor, requests: Sequence[SlotRequest]) -> dict[str, int]:
    """Take up to ``wanted`` send slots of each key's current window (one request per key): how many each got. The
    keys' rows are locked first (in key order: two workers never deadlock), so the counts are exact; a window that
    moved on starts again at zero, and a worker whose clock is behind a newer window gets nothing. A key used for
    the first time by two workers at once: the one whose insert lost gets nothing (its deliveries wait a window)."""
    if not requests:
        return {}
    keys = sorted(r.key for r in requests)
    cur.execute(
        "select key, window_start, sent from public.notification_send_slots where key = any(%s)"
        " order by key for update",
        (keys,),
    )
    prev = {row["key"]: row for row in cur.fetchall()}
    granted: dict[str, int] = {}
    updates: list[tuple[str, datetime, int]] = []
    inserts: list[tuple[str, datetime, int]] = []
    for r in requests:
        row = prev.get(r.key)
        if row is None:
            granted[r.key] = min(r.wanted, r.limit)
            inserts.append((r.key, r.window_start, granted[r.key]))
            continue
        if row["window_start"] > r.window_start:
            granted[r.key] = 0
            continue
        used = int(row["sent"]) if row["window_start"] == r.window_start else 0
        granted[r.key] = max(0, min(r.wanted, r.limit - used))
        if granted[r.key] or row["window_start"] != r.window_start:
            updates.append((r.key, r.window_start, used + granted[r.key]))
    if updates:
        cur.execute(
            "update public.notification_send_slots s set window_start = v.window_start, sent = v.sent"
            " from unnest(%s::text[], %s::timestamptz[], %s::int[]) as v(key, window_start, sent) where s.key = v.key",
            ([u[0] for u in updates], [u[1] for u in updates], [u[2] for u in updates]),
        )
    if inserts:
        cur.execute(
            "insert into public.notification_send_slots (key, window_start, sent)"
            " select * from unnest(%s::text[], %s::timestamptz[], %s::int[]) on conflict (key) do nothing"
            " returning key",
            ([i[0] for i in inserts], [i[1] for i in inserts], [i[2] for i in inserts]),
        )
        won = {row["key"] for row in cur.fetchall()}
        for key, _, _ in inserts:
            if key not in won:
                granted[key] = 0
    return granted


@dataclass(frozen=True)
class Release:
    """A claimed delivery handed back without an attempt: deferred (``pending`` again at ``next_attempt_at``: over
    its channel's rate) or ``skipped`` (its contact point is gone or disabled)."""

    id: UUID
    attempt: int
    status: str
    next_attempt_at: datetime | None
    error: str | None = None


def release(cur: Cursor, releases: Sequence[Release], now: datetime) -> None:
    if not releases:
        return
    cur.execute(
        "update public.notification_deliveries d set status = v.status, attempts = d.attempts - 1,"
        " next_attempt_at = v.next_at, lease_until = null, error = coalesce(v.error, d.error), updated_at = %(now)s"
        " from unnest(%(ids)s::uuid[], %(attempts)s::int[], %(statuses)s::text[], %(next)s::timestamptz[],"
        " %(errors)s::text[]) as v(id, attempt, status, next_at, error)"
        " where d.id = v.id and d.status = 'sending' and d.attempts = v.attempt",
        {
            "ids": [r.id for r in releases],
            "attempts": [r.attempt for r in releases],
            "statuses": [r.status for r in releases],
            "next": [r.next_attempt_at for r in releases],
            "errors": [r.error for r in releases],
            "now": now,
        },
    )


@dataclass(frozen=True)
class Record:
    """What one attempt came to: ``sent``, ``pending`` (a retry at ``next_attempt_at``) or ``failed``."""

    id: UUID
    attempt: int
    status: str
    next_attempt_at: datetime | None
    response_code: int | None
    error: str | None
    sent_at: datetime | None
    progress: int | None = None  # parts the receiver has accepted in all (a channel sending in parts); None: as was


def record(cur: Cursor, records: Sequence[Record], now: datetime) -> set[UUID]:
    """Record the attempts of a batch in one statement, each fenced on its attempt number (a worker whose lease
    expired and was taken over changes nothing), and add a timeline event to the incident of each delivery sent or
    failed (``notification_sent`` / ``notification_failed``: channel, contact point or person, event, status code,
    attempts, and why it failed). The ids whose record held."""
    if not records:
        return set()
    cur.execute(
        "with v as (select * from unnest(%(ids)s::uuid[], %(attempts)s::int[], %(statuses)s::text[],"
        " %(next)s::timestamptz[], %(codes)s::int[], %(errors)s::text[], %(sent)s::timestamptz[],"
        " %(progress)s::int[]) as v(id, attempt, status, next_at, code, error, sent_at, progress)),"
        " upd as (update public.notification_deliveries d set status = v.status, next_attempt_at = v.next_at,"
        " lease_until = null, response_code = v.code, error = v.error, sent_at = coalesce(v.sent_at, d.sent_at),"
        " progress = coalesce(v.progress, d.progress), updated_at = %(now)s"
        " from v where d.id = v.id and d.status = 'sending' and d.attempts = v.attempt"
        " returning d.id, d.org_id, d.project_id, d.incident_id, d.contact_point_id, d.user_id, d.channel, d.event,"
        " d.source, d.escalation_step, d.status, d.attempts, d.response_code, d.error),"
        " ev as (insert into public.incident_events (org_id, project_id, incident_id, at, kind, actor_type, details)"
        " select u.org_id, u.project_id, u.incident_id, %(now)s,"
        " case when u.status = 'sent' then 'notification_sent' else 'notification_failed' end, 'system',"
        " jsonb_strip_nulls(jsonb_build_object('delivery_id', u.id, 'channel', u.channel,"
        " 'contact_point_id', u.contact_point_id, 'contact_point', cp.name, 'user_id', u.user_id, 'event', u.event,"
        " 'source', u.source, 'escalation_step', u.escalation_step, 'status_code', u.response_code,"
        " 'attempts', u.attempts, 'error', u.error))"
        " from upd u left join public.contact_points cp on cp.id = u.contact_point_id"
        " where u.incident_id is not null and u.status in ('sent', 'failed'))"
        " select id from upd",
        {
            "ids": [r.id for r in records],
            "attempts": [r.attempt for r in records],
            "statuses": [r.status for r in records],
            "next": [r.next_attempt_at for r in records],
            "codes": [r.response_code for r in records],
            "errors": [r.error for r in records],
            "sent": [r.sent_at for r in records],
            "progress": [r.progress for r in records],
            "now": now,
        },
    )
    return {row["id"] for row in cur.fetchall()}


def fail_abandoned(cur: Cursor, now: datetime, max_attempts: int, limit: int) -> int:
    """Deliveries whose last allowed attempt never got recorded (its worker stopped and the lease expired): failed,
    as an attempt past the last is not made."""
    cur.execute(
        "with gone as (select id from public.notification_deliveries where status = 'sending'"
        " and next_attempt_at <= %(now)s and attempts >= %(max)s limit %(limit)s for update skip locked)"
        " update public.notification_deliveries d set status = 'failed', next_attempt_at = null, lease_until = null,"
        " error = 'no answer recorded for the last attempt (its worker stopped)', updated_at = %(now)s"
        " from gone where d.id = gone.id",
        {"now": now, "max": max_attempts, "limit": limit},
    )
    return cur.rowcount
