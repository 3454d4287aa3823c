"""Data access of escalation policies: the service role writes (after the check in code), the caller's claims read.
Deleted policies (``deleted_at``) are hidden from every read here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

COLUMNS = (
    "id, org_id, project_id, name, description, steps, repeat, ack_timeout_minutes, created_by, created_at, updated_at"
)
UPDATABLE = frozenset({"name", "description", "steps", "repeat", "ack_timeout_minutes"})
# One advisory lock per project serializes the count and name checks with the write.
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.escalation_policies:' || %s::text, 0))"


def lock_project(cur: Cursor, project_id: UUID) -> None:
    cur.execute(_LOCK_SQL, (project_id,))


def count_live(cur: Cursor, project_id: UUID) -> int:
    cur.execute(
        "select count(*) as n from public.escalation_policies where project_id = %s and deleted_at is null",
        (project_id,),
    )
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def name_taken(cur: Cursor, project_id: UUID, name: str, but: UUID | None = None) -> bool:
    cur.execute(
        "select 1 from public.escalation_policies where project_id = %s and name = %s and deleted_at is null"
        " and (%s::uuid is null or id <> %s::uuid)",
        (project_id, name, but, but),
    )
    return cur.fetchone() is not None


def insert(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    name: str,
    description: str,
    steps: list[dict[str, Any]],
    repeat: int,
    ack_timeout_minutes: int | None,
    created_by: UUID | None,
    now: datetime,
) -> dict[str, Any]:
    cur.execute(
        "insert into public.escalation_policies (org_id, project_id, name, description, steps, repeat,"
        " ack_timeout_minutes, created_by, created_at, updated_at)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" returning {COLUMNS}",
        (org_id, project_id, name, description, Jsonb(steps), repeat, ack_timeout_minutes, created_by, now, now),
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def get_for_update(cur: Cursor, project_id: UUID, policy_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {COLUMNS} from public.escalation_policies"
        " where project_id = %s and id = %s and deleted_at is null for update",
        (project_id, policy_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def update(cur: Cursor, policy_id: UUID, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values = {key: Jsonb(value) if key == "steps" else value for key, value in fields.items()}
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in fields
    ]
    assignments.append(sql.SQL("updated_at = %(now)s"))
    query = sql.SQL("update public.escalation_policies set {} where id = %(policy_id)s returning " + COLUMNS)
    cur.execute(query.format(sql.SQL(", ").join(assignments)), {**values, "policy_id": policy_id, "now": now})
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def soft_delete(cur: Cursor, policy_id: UUID, now: datetime) -> None:
    cur.execute(
        "update public.escalation_policies set deleted_at = %(now)s, updated_at = %(now)s where id = %(id)s",
        {"id": policy_id, "now": now},
    )


# --- target checks (service role) ---------------------------------------------------------------------------------


def members(cur: Cursor, org_id: UUID, user_ids: Sequence[UUID]) -> set[UUID]:
    cur.execute(
        "select user_id from public.memberships where org_id = %s and user_id = any(%s)", (org_id, list(user_ids))
    )
    return {row["user_id"] for row in cur.fetchall()}


def schedules(cur: Cursor, org_id: UUID, schedule_ids: Sequence[UUID]) -> set[UUID]:
    cur.execute(
        "select id from public.oncall_schedules where org_id = %s and id = any(%s) and deleted_at is null",
        (org_id, list(schedule_ids)),
    )
    return {row["id"] for row in cur.fetchall()}


def contact_points(cur: Cursor, project_id: UUID, contact_point_ids: Sequence[UUID]) -> set[UUID]:
    cur.execute(
        "select id from public.contact_points where project_id = %s and id = any(%s) and deleted_at is null",
        (project_id, list(contact_point_ids)),
    )
    return {row["id"] for row in cur.fetchall()}


# --- reads (under the caller's claims) ----------------------------------------------------------------------------


def get(cur: Cursor, project_id: UUID, policy_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {COLUMNS} from public.escalation_policies where project_id = %s and id = %s and deleted_at is null",
        (project_id, policy_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def list_page(
    cur: Cursor, project_id: UUID, after_ts: datetime | None, after_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first; ``limit`` rows after the (created_at, id) position, when given."""
    cur.execute(
        f"select {COLUMNS} from public.escalation_policies where project_id = %(project)s and deleted_at is null"
        " and (%(after_ts)s::timestamptz is null or (created_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by created_at desc, id desc limit %(limit)s",
        {"project": project_id, "after_ts": after_ts, "after_id": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]
