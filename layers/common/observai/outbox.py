"""The outbox: product events (alert.firing, incident.triggered...) written in the transaction of the change that
causes them. None is lost if the process dies after the commit, none leaves for a rolled-back change; the
outbound webhooks deliver them from ``public.outbox_events``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    org_id: UUID
    project_id: UUID | None
    type: str
    data: Mapping[str, Any]
    at: datetime


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


def emit_many(cur: Cursor, events: Sequence[OutboxEvent]) -> int:
    """Record several events in one statement (an alert storm: thousands of transitions in one evaluation), each as
    ``emit`` would; returns how many."""
    if not events:
        return 0
    for event in events:
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type!r}")
    cur.execute(
        "insert into public.outbox_events (org_id, project_id, type, payload, created_at)"
        " select * from unnest(%s::uuid[], %s::uuid[], %s::text[], %s::jsonb[], %s::timestamptz[])",
        (
            [e.org_id for e in events],
            [e.project_id for e in events],
            [e.type for e in events],
            [Jsonb({"type": e.type, "timestamp": e.at.isoformat(), "data": dict(e.data)}) for e in events],
            [e.at for e in events],
        ),
    )
    return len(events)
