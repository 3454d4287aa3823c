"""Data access of escalation runs (``incident_escalations``) and what the engine reads to page: the service role's
cursor, inside the transaction of the change that moves the run."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

RUN_COLUMNS = "incident_id, org_id, project_id, policy_id, policy, status, step, round, seq, next_at"


def live_policy_by_name(cur: Cursor, project_id: UUID, name: str) -> dict[str, Any] | None:
    cur.execute(
        "select id, name, steps, repeat, ack_timeout_minutes from public.escalation_policies"
        " where project_id = %s and name = %s and deleted_at is null",
        (project_id, name),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def insert_run(
    cur: Cursor,
    *,
    incident: dict[str, Any],
    policy_id: UUID,
    policy: dict[str, Any],
    now: datetime,
) -> dict[str, Any] | None:
    """The run of the incident, active at step 0, round 0, seq 0; None when the incident has one already (a
    second dispatcher, a later notification): one run per incident, ever."""
    cur.execute(
        "insert into public.incident_escalations (incident_id, org_id, project_id, policy_id, policy, status, step,"
        " round, seq, next_at, created_at, updated_at)"
        " values (%s, %s, %s, %s, %s, 'active', 0, 0, 0, null, %s, %s)"
        f" on conflict (incident_id) do nothing returning {RUN_COLUMNS}",
        (incident["id"], incident["org_id"], incident["project_id"], policy_id, Jsonb(policy), now, now),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def has_run(cur: Cursor, incident_id: UUID) -> bool:
    cur.execute("select 1 from public.incident_escalations where incident_id = %s", (incident_id,))
    return cur.fetchone() is not None


def lock_run(cur: Cursor, incident_id: UUID, *, skip_locked: bool = False) -> dict[str, Any] | None:
    """The run with its row lock (None: no run, or another transaction holds it and ``skip_locked``)."""
    cur.execute(
        f"select {RUN_COLUMNS} from public.incident_escalations where incident_id = %s"
        f" for update{' skip locked' if skip_locked else ''}",
        (incident_id,),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def save_run(
    cur: Cursor,
    incident_id: UUID,
    *,
    status: str,
    step: int,
    round: int,
    seq: int,
    next_at: datetime | None,
    now: datetime,
) -> None:
    cur.execute(
        "update public.incident_escalations set status = %s, step = %s, round = %s, seq = %s, next_at = %s,"
        " updated_at = %s where incident_id = %s",
        (status, step, round, seq, next_at, now, incident_id),
    )


def due_runs(cur: Cursor, now: datetime, limit: int) -> list[UUID]:
    """Incidents whose run is due (the next step, or the ack timeout), oldest first; unlocked (each is then taken
    in its own transaction with SKIP LOCKED)."""
    cur.execute(
        "select incident_id from public.incident_escalations where next_at <= %s order by next_at limit %s",
        (now, limit),
    )
    return [row["incident_id"] for row in cur.fetchall()]


def lock_incident(cur: Cursor, incident_id: UUID, *, skip_locked: bool = False) -> dict[str, Any] | None:
    """The incident with its row lock: taken before the run's, as every incident action does (one lock order)."""
    from observai.incidents.lifecycle import INCIDENT_COLUMNS

    cur.execute(
        f"select {INCIDENT_COLUMNS} from public.incidents where id = %s"
        f" for update{' skip locked' if skip_locked else ''}",
        (incident_id,),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def live_contact_point(cur: Cursor, project_id: UUID, contact_point_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        "select id, name, kind, enabled from public.contact_points"
        " where project_id = %s and id = %s and deleted_at is null",
        (project_id, contact_point_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def paged_recipients(cur: Cursor, incident_id: UUID) -> list[dict[str, Any]]:
    """Everyone the escalation paged for the incident, once each: (channel, contact point, person, e-mail address,
    Slack mention), from its trigger deliveries."""
    cur.execute(
        "select distinct on (channel, contact_point_id, user_id, payload->>'to') channel, contact_point_id, user_id,"
        " payload->>'to' as to_address, payload->>'mention' as mention"
        " from public.notification_deliveries"
        " where incident_id = %s and source = 'escalation' and event = 'trigger'"
        " order by channel, contact_point_id, user_id, payload->>'to', created_at",
        (incident_id,),
    )
    return [dict(row) for row in cur.fetchall()]


def pagerduty_paged(cur: Cursor, incident_id: UUID) -> list[UUID]:
    """The PagerDuty contact points that paged about the incident (escalation triggers, route notifications)."""
    cur.execute(
        "select distinct contact_point_id from public.notification_deliveries"
        " where incident_id = %s and channel = 'pagerduty' and event in ('trigger', 'notify')"
        " and contact_point_id is not null order by contact_point_id",
        (incident_id,),
    )
    return [row["contact_point_id"] for row in cur.fetchall()]
