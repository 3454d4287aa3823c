"""Data access of incidents: tenant reads (RLS applies: the caller's transaction) and the service's writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.db.connection import Cursor
from observai.incidents.lifecycle import INCIDENT_COLUMNS
from observai.incidents.models import IncidentFilters

_EVENT_COLUMNS = "id, at, kind, actor_type, actor_id, details"


def list_page(
    cur: Cursor,
    project_id: UUID,
    filters: IncidentFilters,
    after_ts: datetime | None,
    after_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first by triggered_at (then id); ``limit`` rows after the position, when given."""
    cur.execute(
        f"select {INCIDENT_COLUMNS} from public.incidents where project_id = %(project)s"
        " and (cardinality(%(statuses)s::text[]) = 0 or status = any(%(statuses)s::text[]))"
        " and (cardinality(%(severities)s::text[]) = 0 or severity = any(%(severities)s::text[]))"
        " and (%(service)s::text is null or service = %(service)s)"
        " and (%(start)s::timestamptz is null or triggered_at >= %(start)s)"
        " and (%(end)s::timestamptz is null or triggered_at < %(end)s)"
        " and (%(assignee)s::uuid is null or assignee_id = %(assignee)s)"
        " and (not %(unassigned)s or assignee_id is null)"
        " and (%(after_ts)s::timestamptz is null or (triggered_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by triggered_at desc, id desc limit %(limit)s",
        {
            "project": project_id,
            "statuses": filters.statuses,
            "severities": filters.severities,
            "service": filters.service,
            "start": filters.start,
            "end": filters.end,
            "assignee": filters.assignee_id,
            "unassigned": filters.unassigned,
            "after_ts": after_ts,
            "after_id": after_id,
            "limit": limit,
        },
    )
    return [dict(row) for row in cur.fetchall()]


def get(cur: Cursor, project_id: UUID, incident_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {INCIDENT_COLUMNS} from public.incidents where project_id = %s and id = %s", (project_id, incident_id)
    )
    row = cur.fetchone()
    return dict(row) if row else None


def lock(cur: Cursor, project_id: UUID, incident_id: UUID) -> dict[str, Any] | None:
    """The incident with its row lock (every action takes it first: two actions on one incident serialise)."""
    cur.execute(
        f"select {INCIDENT_COLUMNS} from public.incidents where project_id = %s and id = %s for update",
        (project_id, incident_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def alerts_of(cur: Cursor, incident_id: UUID) -> list[dict[str, Any]]:
    """The incident's alerts, first fired first, with the rule version's definition and the instance's state."""
    cur.execute(
        "select ia.instance_id, ia.rule_id, ia.rule_version, ia.fingerprint, ia.labels, ia.first_fired_at,"
        " ia.resolved_at, ai.state, ai.value, coalesce(ai.annotations, '{}'::jsonb) as annotations,"
        " rv.definition as rule"
        " from public.incident_alerts ia"
        " left join public.alert_instances ai on ai.id = ia.instance_id"
        " left join public.alert_rule_versions rv on rv.rule_id = ia.rule_id and rv.version = ia.rule_version"
        " where ia.incident_id = %s order by ia.first_fired_at, ia.instance_id",
        (incident_id,),
    )
    return [dict(row) for row in cur.fetchall()]


def events_page(
    cur: Cursor, incident_id: UUID, after_id: int | None, limit: int, *, kind: str | None = None
) -> list[dict[str, Any]]:
    """The incident's timeline (or its events of one ``kind``), oldest first, after the event id when given."""
    cur.execute(
        f"select {_EVENT_COLUMNS} from public.incident_events where incident_id = %(incident)s"
        " and (%(kind)s::text is null or kind = %(kind)s)"
        " and (%(after)s::bigint is null or id > %(after)s)"
        " order by id limit %(limit)s",
        {"incident": incident_id, "kind": kind, "after": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def is_member(cur: Cursor, org_id: UUID, user_id: UUID) -> bool:
    cur.execute("select 1 from public.memberships where org_id = %s and user_id = %s", (org_id, user_id))
    return cur.fetchone() is not None


def update(cur: Cursor, incident_id: UUID, now: datetime, **columns: Any) -> dict[str, Any]:
    """Set ``columns`` (names from our code, never from input) and updated_at; the row as it is now."""
    assignments = ", ".join(f"{name} = %({name})s" for name in columns)
    values = {name: Jsonb(value) if isinstance(value, dict) else value for name, value in columns.items()}
    cur.execute(
        f"update public.incidents set {assignments}, updated_at = %(x_now)s where id = %(x_id)s"
        f" returning {INCIDENT_COLUMNS}",
        {**values, "x_now": now, "x_id": incident_id},
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def alert_counts(cur: Cursor, incident_id: UUID) -> tuple[int, int]:
    """How many alerts the incident has, and how many of them still fire."""
    cur.execute(
        "select count(*) as total, count(*) filter (where resolved_at is null) as firing"
        " from public.incident_alerts where incident_id = %s",
        (incident_id,),
    )
    row = cur.fetchone()
    return (int(row["total"]), int(row["firing"])) if row else (0, 0)


def claim_snoozed_due(cur: Cursor, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Acknowledged incidents whose snooze has ended, locked; rows another run holds are skipped (overlap-safe)."""
    cur.execute(
        f"select {INCIDENT_COLUMNS} from public.incidents"
        " where snoozed_until is not null and snoozed_until <= %s and status = 'acknowledged'"
        " order by snoozed_until, id limit %s for update skip locked",
        (now, limit),
    )
    return [dict(row) for row in cur.fetchall()]
