"""Data access of on-call schedules and their overrides: the service role writes (after the check in code); reads
run under the caller's claims (Row Level Security: members of the organization) or the service role (on_call).
Deleted schedules (``deleted_at``) are hidden from every read here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

COLUMNS = "id, org_id, name, description, time_zone, layers, created_by, created_at, updated_at"
OVERRIDE_COLUMNS = "id, org_id, schedule_id, user_id, start_at, end_at, created_by, created_at"
UPDATABLE = frozenset({"name", "description", "time_zone", "layers"})
# One advisory lock key per organization serializes the schedule-count check with the insert.
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.oncall_schedules:' || %s::text, 0))"


def lock_org(cur: Cursor, org_id: UUID) -> None:
    cur.execute(_LOCK_SQL, (org_id,))


def count_live(cur: Cursor, org_id: UUID) -> int:
    cur.execute("select count(*) as n from public.oncall_schedules where org_id = %s and deleted_at is null", (org_id,))
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def non_members(cur: Cursor, org_id: UUID, user_ids: Sequence[UUID]) -> set[UUID]:
    """Those of ``user_ids`` who are not members of the organization."""
    wanted = set(user_ids)
    if not wanted:
        return set()
    cur.execute(
        "select user_id from public.memberships where org_id = %s and user_id = any(%s)", (org_id, list(wanted))
    )
    return wanted - {row["user_id"] for row in cur.fetchall()}


def emails(cur: Cursor, org_id: UUID, user_ids: Sequence[UUID]) -> dict[UUID, str]:
    """The Supabase Auth e-mail address of members of the organization (service role: auth.users)."""
    if not user_ids:
        return {}
    cur.execute(
        "select u.id, u.email::text as email from auth.users u"
        " join public.memberships m on m.user_id = u.id and m.org_id = %s where u.id = any(%s)",
        (org_id, list(set(user_ids))),
    )
    return {row["id"]: row["email"] for row in cur.fetchall() if row["email"]}


def insert(
    cur: Cursor,
    *,
    org_id: UUID,
    name: str,
    description: str,
    time_zone: str,
    layers: list[dict[str, Any]],
    created_by: UUID | None,
    now: datetime,
) -> dict[str, Any]:
    cur.execute(
        "insert into public.oncall_schedules (org_id, name, description, time_zone, layers, created_by, created_at,"
        " updated_at) values (%(org)s, %(name)s, %(description)s, %(tz)s, %(layers)s, %(by)s, %(now)s, %(now)s)"
        f" returning {COLUMNS}",
        {
            "org": org_id,
            "name": name,
            "description": description,
            "tz": time_zone,
            "layers": Jsonb(layers),
            "by": created_by,
            "now": now,
        },
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def get(
    cur: Cursor, schedule_id: UUID, org_id: UUID | None = None, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = f"select {COLUMNS} from public.oncall_schedules where id = %s and deleted_at is null"
    params: list[Any] = [schedule_id]
    if org_id is not None:
        query += " and org_id = %s"
        params.append(org_id)
    if for_update:
        query += " for update"
    cur.execute(query, params)
    row = cur.fetchone()
    return dict(row) if row else None


def update(cur: Cursor, schedule_id: UUID, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values = {key: Jsonb(value) if key == "layers" else value for key, value in fields.items()}
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in values
    ]
    assignments.append(sql.SQL("updated_at = %(now)s"))
    query = sql.SQL("update public.oncall_schedules set {} where id = %(schedule_id)s returning " + COLUMNS)
    cur.execute(query.format(sql.SQL(", ").join(assignments)), {**values, "schedule_id": schedule_id, "now": now})
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def soft_delete(cur: Cursor, schedule_id: UUID, now: datetime) -> None:
    cur.execute(
        "update public.oncall_schedules set deleted_at = %(now)s, updated_at = %(now)s where id = %(id)s",
        {"id": schedule_id, "now": now},
    )


def list_page(
    cur: Cursor, org_id: UUID, after_ts: datetime | None, after_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first; ``limit`` rows after the (created_at, id) position, when given."""
    cur.execute(
        f"select {COLUMNS} from public.oncall_schedules where org_id = %(org)s and deleted_at is null"
        " and (%(ts)s::timestamptz is null or (created_at, id) < (%(ts)s, %(id)s))"
        " order by created_at desc, id desc limit %(limit)s",
        {"org": org_id, "ts": after_ts, "id": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def with_member(cur: Cursor, user_id: UUID) -> list[dict[str, Any]]:
    """The live schedules of the user's organizations naming them in a layer or an override (service role)."""
    cur.execute(
        f"select {', '.join('s.' + c.strip() for c in COLUMNS.split(','))} from public.oncall_schedules s"
        " join public.memberships m on m.org_id = s.org_id and m.user_id = %(user)s"
        " where s.deleted_at is null and (exists (select 1 from jsonb_array_elements(s.layers) l"
        "   where l -> 'users' ? %(user_text)s)"
        "  or exists (select 1 from public.oncall_overrides o where o.schedule_id = s.id and o.user_id = %(user)s))"
        " order by s.org_id, s.created_at, s.id",
        {"user": user_id, "user_text": str(user_id)},
    )
    return [dict(row) for row in cur.fetchall()]


# --- overrides ------------------------------------------------------------------------------------------------------


def insert_override(
    cur: Cursor,
    *,
    org_id: UUID,
    schedule_id: UUID,
    user_id: UUID,
    start: datetime,
    end: datetime,
    created_by: UUID | None,
    now: datetime,
) -> dict[str, Any]:
    cur.execute(
        "insert into public.oncall_overrides (org_id, schedule_id, user_id, start_at, end_at, created_by, created_at)"
        f" values (%s, %s, %s, %s, %s, %s, %s) returning {OVERRIDE_COLUMNS}",
        (org_id, schedule_id, user_id, start, end, created_by, now),
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def get_override(cur: Cursor, schedule_id: UUID, override_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {OVERRIDE_COLUMNS} from public.oncall_overrides where schedule_id = %s and id = %s",
        (schedule_id, override_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def delete_override(cur: Cursor, override_id: UUID) -> None:
    cur.execute("delete from public.oncall_overrides where id = %s", (override_id,))


def count_overrides_ending_after(cur: Cursor, schedule_id: UUID, at: datetime) -> int:
    cur.execute(
        "select count(*) as n from public.oncall_overrides where schedule_id = %s and end_at > %s", (schedule_id, at)
    )
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def overrides_page(
    cur: Cursor,
    schedule_id: UUID,
    start: datetime | None,
    end: datetime | None,
    after_ts: datetime | None,
    after_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The overrides reaching into [start, end) (either side open when None), by start; ``limit`` rows after the
    (start_at, id) position, when given."""
    cur.execute(
        f"select {OVERRIDE_COLUMNS} from public.oncall_overrides where schedule_id = %(schedule)s"
        " and (%(end)s::timestamptz is null or start_at < %(end)s)"
        " and (%(start)s::timestamptz is null or end_at > %(start)s)"
        " and (%(ts)s::timestamptz is null or (start_at, id) > (%(ts)s, %(id)s))"
        " order by start_at, id limit %(limit)s",
        {"schedule": schedule_id, "start": start, "end": end, "ts": after_ts, "id": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def overrides_between(cur: Cursor, schedule_id: UUID, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The overrides reaching into [start, end), oldest first (a later one wins where they overlap)."""
    cur.execute(
        f"select {OVERRIDE_COLUMNS} from public.oncall_overrides"
        " where schedule_id = %s and start_at < %s and end_at > %s order by created_at, id",
        (schedule_id, end, start),
    )
    return [dict(row) for row in cur.fetchall()]
