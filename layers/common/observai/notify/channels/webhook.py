"""Webhook: handed to the outbound webhook delivery engine (observai.webhooks), which signs (Standard Webhooks),
retries by its schedule and records every attempt.

The contact point owns a hidden webhook endpoint (``webhook_endpoints.contact_point_owned``: the outbox fan-out
skips it and the webhooks API does not show it). ``send`` inserts one ``webhook_messages`` row for it, in its own
transaction (so never call it inside one), with ``event_id`` = the delivery's id: the ``webhook-id`` header is the
same across our retries and a receiver can drop duplicates. The row is woken on the webhook queue after the commit;
the result is ok once the engine has it (a second hand-over of the same delivery is a no-op, and ok too). An
endpoint the engine disabled (a 410, 5 days of failures) disables the contact point (``disable_reason``).

The body: ``{"type": "incident.<event>" | "notification.test", "timestamp", "data": {...}}``, under 20 kB (alerts
dropped from the end, then the text cut, until it fits).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.config import Settings
from observai.notify.channels._common import cut
from observai.notify.message import Message, SendResult

MAX_BODY_BYTES = 20_000


def event_type(message: Message) -> str:
    return "notification.test" if message.event == "test" else f"incident.{message.event}"


def _size(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def render(message: Message, now: datetime) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": message.title,
        "text": message.text,
        "severity": message.severity,
        "reason": message.reason,
        "incident": message.incident,
        "alerts": [dict(a) for a in message.alerts],
        "links": dict(message.links),
        "delivery_id": message.delivery_id,
    }
    payload = {"type": event_type(message), "timestamp": now.isoformat(), "data": data}
    while _size(payload) > MAX_BODY_BYTES and data["alerts"]:
        data["alerts"] = data["alerts"][: len(data["alerts"]) // 2] if len(data["alerts"]) > 1 else []
        data["alerts_truncated"] = True
    if _size(payload) > MAX_BODY_BYTES:
        data["text"] = cut(str(data["text"]), 2000)
        data["title"] = cut(str(data["title"]), 500)
    return json.loads(json.dumps(payload, default=str))  # JSON types only (datetimes as strings)


def send(config: Mapping[str, Any], message: Message, *, settings: Settings) -> SendResult:
    from observai.db.connection import transaction
    from observai.webhooks.queue import send_wakeups

    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        endpoint_id = UUID(str(config["endpoint_id"]))
        org_id = UUID(str(config["org_id"]))
        project_id = UUID(str(config["project_id"]))
    except (KeyError, ValueError):
        return SendResult(ok=False, error="not sent: the contact point has no webhook endpoint")
    event_id = UUID(str(message.delivery_id)) if message.delivery_id else uuid.uuid4()
    payload = render(message, now)
    with transaction() as cur:
        cur.execute(
            "select enabled, disabled_reason, deleted_at is not null as deleted from public.webhook_endpoints"
            " where id = %s and org_id = %s and project_id = %s",
            (endpoint_id, org_id, project_id),
        )
        endpoint = cur.fetchone()
        if endpoint is None or endpoint["deleted"]:
            return SendResult(ok=False, error="not sent: the contact point's webhook endpoint is gone")
        if not endpoint["enabled"]:
            # The engine disabled it (410 from the receiver, failing for 5 days): the contact point follows, so that
            # it shows why, and PATCH enabled=true re-enables both.
            why = endpoint["disabled_reason"] or "disabled"
            reason = f"the webhook delivery engine disabled its endpoint: {why}"[:500]
            return SendResult(ok=False, error=f"not sent: {reason}", disable_reason=reason)
        cur.execute(
            "insert into public.webhook_messages"
            " (org_id, project_id, endpoint_id, event_id, event_type, payload, next_attempt_at)"
            " values (%s, %s, %s, %s, %s, %s, %s)"
            " on conflict (endpoint_id, event_id) do nothing returning id",
            (org_id, project_id, endpoint_id, event_id, payload["type"], Jsonb(payload), now),
        )
        row = cur.fetchone()
    if row is not None:
        send_wakeups([(row["id"], now)], now, settings)
    excerpt = f"handed to the webhook engine as message {row['id']}" if row else "already handed to the webhook engine"
    return SendResult(
        ok=True,
        response_excerpt=excerpt,
        duration_ms=max(0, round((time.perf_counter() - started) * 1000)),
    )
