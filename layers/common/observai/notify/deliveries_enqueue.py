"""Recording a notification to send: one ``notification_deliveries`` row per message and recipient, written in the
transaction of the change that causes it (a route's notification, an escalation step, an incident's
acknowledgement or resolution), and woken on the notification queue once that transaction commits.

The idempotency key makes the record once-only: a retried run, a redelivered timer or a second dispatcher writes
the same key, and ``on conflict do nothing`` keeps the first. The delivery worker (observai.notify.deliveries)
sends it; the minute sweep sends whatever a lost queue message left pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.db.connection import Cursor, after_commit

Channel = Literal["email", "slack", "pagerduty", "webhook"]
DeliveryEvent = Literal["trigger", "acknowledge", "resolve", "notify", "test"]
Source = Literal["route", "escalation", "test"]


@dataclass(frozen=True)
class DeliveryRequest:
    """One message to one recipient. A contact point (``contact_point_id``), or a person (``user_id``) through one
    of their channels: ``email`` to their address (``payload["to"]``), or ``slack`` through their Slack contact
    point (``contact_point_id``) mentioning them (``payload["mention"]``). ``key`` is the idempotency key, unique
    across everything ever sent (e.g. ``route:{log_id}:{contact_point_id}``); ``payload`` what to say beyond the
    incident itself (the route's reason and alerts, the escalation step...)."""

    org_id: UUID
    project_id: UUID
    channel: Channel
    event: DeliveryEvent
    source: Source
    key: str
    incident_id: UUID | None = None
    contact_point_id: UUID | None = None
    user_id: UUID | None = None
    escalation_step: int | None = None
    notification_log_id: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


def enqueue(cur: Cursor, request: DeliveryRequest, now: datetime) -> UUID | None:
    """Record the delivery (due now) and wake the worker after the commit; None when its key was recorded before."""
    cur.execute(
        "insert into public.notification_deliveries (org_id, project_id, incident_id, contact_point_id, user_id,"
        " channel, event, source, escalation_step, notification_log_id, idempotency_key, payload, status,"
        " next_attempt_at, created_at, updated_at)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', %s, %s, %s)"
        " on conflict (idempotency_key) do nothing returning id",
        (
            request.org_id,
            request.project_id,
            request.incident_id,
            request.contact_point_id,
            request.user_id,
            request.channel,
            request.event,
            request.source,
            request.escalation_step,
            request.notification_log_id,
            request.key,
            Jsonb(dict(request.payload)),
            now,
            now,
            now,
        ),
    )
    row = cur.fetchone()
    if row is None:
        return None
    delivery_id: UUID = row["id"]
    after_commit(lambda: _wake([delivery_id]))
    return delivery_id


def _wake(delivery_ids: list[UUID]) -> None:
    # The queue is the delivery worker's (observai.notify.queue); imported here, after the commit, so that writing
    # a record never loads boto3.
    from observai.notify.queue import send_wakeups

    send_wakeups(delivery_ids)
