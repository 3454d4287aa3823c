"""The outbox: product events (alert.firing, incident.triggered...) written in the transaction of the change that
causes them. None is lost if the process dies after the commit, none leaves for a rolled-back change; the
outbound webhooks deliver them from ``public.outbox_events``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

EVENT_TYPES = frozenset(
    {
        "alert.firing",
        "alert.resolved",
        "incident.triggered",
        "incident.acknowledged",
        "incident.resolved",
        "anomaly.detected",
        "export.completed",
        "usage.quota_reached",
    }
)


def emit(
    cur: Cursor, *, org_id: UUID, project_id: UUID | None, type: str, data: Mapping[str, Any], at: datetime
) -> UUID:
    """Record one event in the caller's transaction; its payload is ``{"type", "timestamp", "data"}``."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    payload = {"type": type, "timestamp": at.isoformat(), "data": dict(data)}
    cur.execute(
        "insert into public.outbox_events (org_id, project_id, type, payload, created_at)"
        " values (%s, %s, %s, %s, %s) returning id",
        (org_id, project_id, type, Jsonb(payload), at),
    )
    row = cur.fetchone()
    assert row is not None
    return row["id"]
