"""SQL of the incident summaries (observai.ai.summaries)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

_COLUMNS = (
    "id, org_id, project_id, incident_id, status, answer, reason, model, input_tokens, output_tokens,"
    " incident_updated_at, context, trigger, requested_by, created_at"
)
# Timeline events that do not change what a summary would say (paging's own records).
_QUIET_EVENTS = "kind not like 'notification%%' and kind not like 'escalat%%'"


def incident(cur: Cursor, project_id: UUID, incident_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        "select id, org_id, project_id, number, status, updated_at from public.incidents"
        " where id = %s and project_id = %s",
        (incident_id, project_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def last_event_id(cur: Cursor, incident_id: UUID) -> int:
    cur.execute(
        f"select coalesce(max(id), 0) as id from public.incident_events where incident_id = %s and {_QUIET_EVENTS}",
        (incident_id,),
    )
    row = cur.fetchone()
    return int(row["id"]) if row else 0


def insert(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    incident_id: UUID,
    status: str,
    answer: dict[str, Any] | None,
    reason: str | None,
    model: str | None,
    input_tokens: int,
    output_tokens: int,
    incident_updated_at: datetime,
    context: dict[str, Any],
    trigger: str,
    requested_by: UUID | None,
    now: datetime,
) -> dict[str, Any]:
    cur.execute(
        "insert into public.incident_summaries (org_id, project_id, incident_id, status, answer, reason, model,"
        " input_tokens, output_tokens, incident_updated_at, context, trigger, requested_by, created_at)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" returning {_COLUMNS}",
        (
            org_id,
            project_id,
            incident_id,
            status,
            Jsonb(answer) if answer is not None else None,
            reason[:1000] if reason else None,
            model[:200] if model else None,
            input_tokens,
            output_tokens,
            incident_updated_at,
            Jsonb(context),
            trigger,
            requested_by,
            now,
        ),
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def latest(cur: Cursor, incident_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {_COLUMNS} from public.incident_summaries where incident_id = %s"
        " order by created_at desc, id desc limit 1",
        (incident_id,),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def is_stale(cur: Cursor, summary: dict[str, Any], incident: dict[str, Any]) -> bool:
    """The incident changed since the summary: its row (status, severity...) or its timeline (alerts, comments)."""
    if incident["updated_at"] > summary["incident_updated_at"]:
        return True
    seen = int((summary.get("context") or {}).get("last_event_id") or 0)
    return last_event_id(cur, incident["id"]) > seen
