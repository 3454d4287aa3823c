"""The outbox: product events (alert.firing, incident.triggered...) written in the transaction of the change that
causes them. None is lost if the process dies after the commit, none leaves for a rolled-back change; the
outbound webhooks deliver them from ``public.outbox_events``."""

from __future__ import annotations

import json
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


# Every webhook body stays under this (issue 13: "under 20 kB"); measured as JSON with Postgres' spacing (the
# larger of the usual renderings), so that no serialization of the same payload exceeds it.
MAX_PAYLOAD_BYTES = 20_000
# Values no shorter than this are never cut by ``fit``: ids, names, timestamps stay whole.
_KEEP_CHARS = 64


def payload_size(payload: Mapping[str, Any]) -> int:
    """The payload's size in bytes as JSON (UTF-8, ", " and ": " separators as jsonb renders it)."""
    return len(json.dumps(payload, ensure_ascii=False, default=str).encode())


def _check_size(type: str, payload: Mapping[str, Any]) -> None:
    size = payload_size(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{type} event of {size} bytes: over the {MAX_PAYLOAD_BYTES} bytes a webhook carries")


def fit(type: str, data: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """``data``, its longest string values (label and annotation values, free text) cut with "…" until the event's
    payload fits MAX_PAYLOAD_BYTES, and ``truncated: true`` if anything was cut. For producers whose data users
    size (an alert's 50 labels of 1 kB): the event still leaves, shortened, rather than failing the change.
    ValueError if even cut it cannot fit."""
    if payload_size({"type": type, "timestamp": at.isoformat(), "data": data}) <= MAX_PAYLOAD_BYTES:
        return dict(data)
    fitted: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))  # a deep copy to cut
    payload = {"type": type, "timestamp": at.isoformat(), "data": fitted}
    fitted["truncated"] = True
    while (excess := payload_size(payload) - MAX_PAYLOAD_BYTES) > 0:
        leaves = list(_string_leaves(fitted))
        if not leaves:
            break
        holder, key, value = max(leaves, key=lambda leaf: len(leaf[2]))
        if len(value) <= _KEEP_CHARS:
            break
        # Cut the longest value by the excess (in characters, >= bytes of its UTF-8) or to half, whichever is more.
        keep = max(_KEEP_CHARS, min(len(value) - excess - 1, len(value) // 2))
        holder[key] = value[:keep] + "…"
    _check_size(type, payload)
    return fitted


def _string_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                yield value, key, item
            else:
                yield from _string_leaves(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield value, index, item
            else:
                yield from _string_leaves(item)


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
    """Record one event in the caller's transaction; its payload is ``{"type", "timestamp", "data"}``.

    ValueError for an unknown type or a payload over MAX_PAYLOAD_BYTES (``fit`` shortens one first)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    payload = {"type": type, "timestamp": at.isoformat(), "data": dict(data)}
    _check_size(type, payload)
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
    ``emit`` would (the same ValueErrors); returns how many."""
    if not events:
        return 0
    for event in events:
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type!r}")
        _check_size(event.type, {"type": event.type, "timestamp": event.at.isoformat(), "data": dict(event.data)})
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
