"""Data access of on-call schedules and their overrides (service-role writes after the check in code; reads by
the caller's claims or the service role). Deleted schedules (``deleted_at``) are hidden from every read here."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from observai.db.connection import Cursor

COLUMNS = "id, org_id, name, description, time_zone, layers, created_by, created_at, updated_at"
OVERRIDE_COLUMNS = "id, org_id, schedule_id, user_id, start_at, end_at, created_by, created_at"
# One advisory lock key per organization serializes the schedule-count check with the insert.
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.oncall_schedules:' || %s::text, 0))"


def get(cur: Cursor, schedule_id: UUID, org_id: UUID | None = None) -> dict[str, Any] | None:
    if org_id is None:
        cur.execute(
            f"select {COLUMNS} from public.oncall_schedules where id = %s and deleted_at is null", (schedule_id,)
        )
    else:
        cur.execute(
            f"select {COLUMNS} from public.oncall_schedules where id = %s and org_id = %s and deleted_at is null",
            (schedule_id, org_id),
        )
    return cur.fetchone()


def overrides_between(cur: Cursor, schedule_id: UUID, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The overrides reaching into [start, end), oldest first (a later one wins where they overlap)."""
    cur.execute(
        f"select {OVERRIDE_COLUMNS} from public.oncall_overrides"
        " where schedule_id = %s and start_at < %s and end_at > %s order by created_at, id",
        (schedule_id, end, start),
    )
    return cur.fetchall()
