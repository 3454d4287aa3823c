"""Data access of contact points. The service role writes (after the check in code) and reads the sealed secret;
reads under the caller's claims select only ``PUBLIC_COLUMNS`` (the grant of the API roles leaves the sealed column
out, migration 0029). Deleted contact points (``deleted_at``) are hidden from every read here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

PUBLIC_COLUMNS = (
    "id, org_id, project_id, name, kind, settings, secret_hint, webhook_endpoint_id, enabled, disabled_reason,"
    " disabled_at, created_by, created_at, updated_at"
)
UPDATABLE = frozenset({"name", "settings", "secret_sealed", "secret_hint", "enabled", "disabled_reason", "disabled_at"})
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.contact_points:' || %s::text, 0))"


def lock_project(cur: Cursor, project_id: UUID) -> None:
    """Serializes the per-project count and name checks with the insert or rename."""
    cur.execute(_LOCK_SQL, (project_id,))


def count_live(cur: Cursor, project_id: UUID) -> int:
    cur.execute(
        "select count(*) as n from public.contact_points where project_id = %s and deleted_at is null", (project_id,)
    )
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def name_taken(cur: Cursor, project_id: UUID, name: str, other_than: UUID | None = None) -> bool:
    cur.execute(
        "select 1 from public.contact_points where project_id = %s and name = %s and deleted_at is null"
        " and (%s::uuid is null or id <> %s::uuid)",
        (project_id, name, other_than, other_than),
    )
    return cur.fetchone() is not None


def insert(
    cur: Cursor,
    *,
    contact_point_id: UUID,
    org_id: UUID,
    project_id: UUID,
    name: str,
    kind: str,
    settings: Mapping[str, Any],
    secret_sealed: bytes | None,
    secret_hint: str | None,
    webhook_endpoint_id: UUID | None,
    enabled: bool,
    created_by: UUID | None,
    now: datetime,
) -> dict[str, Any]:
    cur.execute(
        "insert into public.contact_points (id, org_id, project_id, name, kind, settings, secret_sealed, secret_hint,"
        " webhook_endpoint_id, enabled, created_by, created_at, updated_at)"
        " values (%(id)s, %(org)s, %(project)s, %(name)s, %(kind)s, %(settings)s, %(sealed)s, %(hint)s, %(endpoint)s,"
        f" %(enabled)s, %(created_by)s, %(now)s, %(now)s) returning {PUBLIC_COLUMNS}",
        {
            "id": contact_point_id,
            "org": org_id,
            "project": project_id,
            "name": name,
            "kind": kind,
            "settings": Jsonb(dict(settings)),
            "sealed": secret_sealed,
            "hint": secret_hint,
            "endpoint": webhook_endpoint_id,
            "enabled": enabled,
            "created_by": created_by,
            "now": now,
        },
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def get_for_update(cur: Cursor, project_id: UUID, contact_point_id: UUID) -> dict[str, Any] | None:
    """The live contact point with its sealed secret, locked (service role only)."""
    cur.execute(
        f"select {PUBLIC_COLUMNS}, secret_sealed from public.contact_points"
        " where project_id = %s and id = %s and deleted_at is null for update",
        (project_id, contact_point_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def get_with_secret(cur: Cursor, project_id: UUID, contact_point_id: UUID) -> dict[str, Any] | None:
    """The live contact point with its sealed secret, unlocked (a test send; service role only)."""
    cur.execute(
        f"select {PUBLIC_COLUMNS}, secret_sealed from public.contact_points"
        " where project_id = %s and id = %s and deleted_at is null",
        (project_id, contact_point_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def get_any(cur: Cursor, contact_point_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {PUBLIC_COLUMNS}, secret_sealed from public.contact_points where id = %s and deleted_at is null",
        (contact_point_id,),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def sealed_secret(cur: Cursor, contact_point_id: UUID) -> bytes | None:
    cur.execute("select secret_sealed from public.contact_points where id = %s", (contact_point_id,))
    row = cur.fetchone()
    return bytes(row["secret_sealed"]) if row and row["secret_sealed"] is not None else None


def by_names(cur: Cursor, project_id: UUID, names: list[str]) -> list[dict[str, Any]]:
    if not names:
        return []
    cur.execute(
        f"select {PUBLIC_COLUMNS}, secret_sealed from public.contact_points"
        " where project_id = %s and name = any(%s) and deleted_at is null and enabled"
        " order by array_position(%s::text[], name)",
        (project_id, names, names),
    )
    return [dict(row) for row in cur.fetchall()]


def update(cur: Cursor, contact_point_id: UUID, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values = {k: (Jsonb(dict(v)) if k == "settings" else v) for k, v in fields.items()}
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in values
    ]
    assignments.append(sql.SQL("updated_at = %(now)s"))
    query = sql.SQL("update public.contact_points set {} where id = %(cp_id)s returning " + PUBLIC_COLUMNS)
    cur.execute(query.format(sql.SQL(", ").join(assignments)), {**values, "cp_id": contact_point_id, "now": now})
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def soft_delete(cur: Cursor, contact_point_id: UUID, now: datetime) -> None:
    """Deleted and disabled, its secret dropped (nothing reads a deleted contact point's secret)."""
    cur.execute(
        "update public.contact_points set deleted_at = %(now)s, enabled = false, secret_sealed = null,"
        " updated_at = %(now)s where id = %(id)s",
        {"id": contact_point_id, "now": now},
    )


def disable(cur: Cursor, contact_point_id: UUID, reason: str, now: datetime) -> bool:
    cur.execute(
        "update public.contact_points set enabled = false, disabled_reason = %(reason)s, disabled_at = %(now)s,"
        " updated_at = %(now)s where id = %(id)s and enabled and deleted_at is null returning id",
        {"id": contact_point_id, "reason": reason, "now": now},
    )
    return cur.fetchone() is not None


# --- reads (under the caller's claims) ----------------------------------------------------------------------------


def get(cur: Cursor, project_id: UUID, contact_point_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {PUBLIC_COLUMNS} from public.contact_points where project_id = %s and id = %s and deleted_at is null",
        (project_id, contact_point_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def list_page(
    cur: Cursor,
    project_id: UUID,
    kind: str | None,
    after_ts: datetime | None,
    after_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first; ``limit`` rows after the (created_at, id) position, when given."""
    cur.execute(
        f"select {PUBLIC_COLUMNS} from public.contact_points where project_id = %(project)s and deleted_at is null"
        " and (%(kind)s::text is null or kind = %(kind)s)"
        " and (%(after_ts)s::timestamptz is null or (created_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by created_at desc, id desc limit %(limit)s",
        {"project": project_id, "kind": kind, "after_ts": after_ts, "after_id": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


# --- a webhook contact point's own endpoint (hidden from the webhooks API) -------------------------------------


def insert_owned_endpoint(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    url: str,
    description: str,
    secret_ciphertext: bytes,
    secret_hint: str,
    created_by: UUID | None,
    now: datetime,
) -> UUID:
    cur.execute(
        "insert into public.webhook_endpoints (org_id, project_id, url, description, event_types, enabled,"
        " secret_ciphertext, secret_hint, contact_point_owned, created_by, created_at, updated_at)"
        " values (%s, %s, %s, %s, null, true, %s, %s, true, %s, %s, %s) returning id",
        (org_id, project_id, url, description[:1000], secret_ciphertext, secret_hint, created_by, now, now),
    )
    row = cur.fetchone()
    assert row is not None
    endpoint_id: UUID = row["id"]
    return endpoint_id


def update_owned_endpoint(
    cur: Cursor, endpoint_id: UUID, *, url: str | None, enabled: bool | None, now: datetime
) -> None:
    """A new URL (a new run of failures), or re-enabled (what the delivery engine left cleared)."""
    if url is None and enabled is None:
        return
    cur.execute(
        "update public.webhook_endpoints set url = coalesce(%(url)s, url),"
        " failing_since = case when %(url)s::text is not null or %(enabled)s::boolean then null else failing_since end,"
        " enabled = coalesce(%(enabled)s, enabled),"
        " disabled_reason = case when %(enabled)s::boolean then null else disabled_reason end,"
        " disabled_at = case when %(enabled)s::boolean then null else disabled_at end,"
        " updated_at = %(now)s where id = %(id)s and contact_point_owned",
        {"id": endpoint_id, "url": url, "enabled": enabled, "now": now},
    )


def clear_member_slack(cur: Cursor, contact_point_id: UUID, now: datetime) -> int:
    """People whose Slack contact point this was no longer have one."""
    cur.execute(
        "update public.member_notification_settings set slack_contact_point_id = null, updated_at = %s"
        " where slack_contact_point_id = %s",
        (now, contact_point_id),
    )
    return cur.rowcount
