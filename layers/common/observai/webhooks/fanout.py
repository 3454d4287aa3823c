"""The outbox fan-out: product events (``public.outbox_events``) become one webhook message per subscribed
endpoint.

``fan_out(now, limit)`` claims the oldest undispatched events (FOR UPDATE SKIP LOCKED: two overlapping runs split
the work instead of waiting or doubling it), inserts one ``webhook_messages`` row per enabled, live endpoint of the
event's project whose event-type filter takes it (a paging contact point's own endpoint, ``contact_point_owned``, is
no subscription and gets none) (``on conflict do nothing`` on (endpoint, event): a run repeated
after a crash between insert and mark adds nothing), and marks the events dispatched, all in one transaction. Only
after the commit are the new messages put on the delivery queue, so a queue message never names a row that was
rolled back; one that fails to send is delivered by the minute sweep.

An event written by a transaction that rolled back was never in the table: nothing is sent for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from observai.config import Settings
from observai.db.connection import transaction
from observai.webhooks.queue import send_wakeups

# Dispatched events are kept a week (to see what was fanned out when investigating), then pruned in bounded steps.
KEEP_DISPATCHED = timedelta(days=7)
PRUNE_LIMIT = 5000


@dataclass
class FanOutReport:
    events: int = 0
    messages: int = 0
    queued: int = 0
    pruned: int = 0
    more_pending: bool = False


def fan_out(now: datetime, limit: int = 500, *, settings: Settings | None = None) -> FanOutReport:
    """Fan out up to ``limit`` events (oldest first); ``more_pending`` when the limit was reached."""
    report = FanOutReport()
    with transaction() as cur:
        cur.execute(
            "select id from public.outbox_events where dispatched_at is null"
            " order by created_at limit %s for update skip locked",
            (limit,),
        )
        event_ids = [row["id"] for row in cur.fetchall()]
        new: list[tuple[UUID, datetime]] = []
        if event_ids:
            cur.execute(
                "insert into public.webhook_messages"
                " (org_id, project_id, endpoint_id, event_id, event_type, payload, next_attempt_at)"
                " select e.org_id, e.project_id, w.id, e.id, e.type, e.payload, %(now)s"
                " from public.outbox_events e"
                " join public.webhook_endpoints w on w.project_id = e.project_id and w.org_id = e.org_id"
                " where e.id = any(%(ids)s) and w.enabled and w.deleted_at is null and not w.contact_point_owned"
                " and (w.event_types is null or e.type = any(w.event_types))"
                " order by e.created_at"
                " on conflict (endpoint_id, event_id) do nothing returning id",
                {"now": now, "ids": event_ids},
            )
            new = [(row["id"], now) for row in cur.fetchall()]
            cur.execute("update public.outbox_events set dispatched_at = %s where id = any(%s)", (now, event_ids))
        report.events = len(event_ids)
        report.messages = len(new)
        report.more_pending = len(event_ids) == limit
    if new:
        report.queued = send_wakeups(new, now, settings)
    return report


def prune_dispatched(now: datetime, limit: int = PRUNE_LIMIT) -> int:
    """Delete up to ``limit`` events dispatched more than a week ago; how many."""
    with transaction() as cur:
        cur.execute(
            "with picked as materialized ("  # evaluated once: the batch is these rows and no more
            " select id from public.outbox_events where dispatched_at < %s limit %s for update skip locked)"
            " delete from public.outbox_events e using picked p where e.id = p.id",
            (now - KEEP_DISPATCHED, limit),
        )
        return cur.rowcount
