"""Data access of webhook endpoints: the service role writes (after the check in code), the caller's claims read.

Reads under the caller's claims select only ``PUBLIC_COLUMNS``: the select grant of the API roles leaves the secret
columns out (migration 0023), so the secrets cannot be read back through the API's connection even by mistake.
Deleted endpoints (``deleted_at``) are hidden from every read here, and so are the endpoints that carry a paging
contact point's messages (``contact_point_owned``: the contact points API manages them, observai.notify).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql

from observai.db.connection import Cursor

# One advisory lock key per project serializes the endpoint-count check with the insert (a bigint from the id).
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.webhook_endpoints:' || %s::text, 0))"
PUBLIC_COLUMNS = (
    "id, org_id, project_id, url, description, event_types, enabled, rate_limit_per_s, secret_hint,"
    " previous_secret_expires_at, disabled_reason, disabled_at, failing_since, created_by, created_at, updated_at"
)
SECRET_COLUMNS = "secret_ciphertext, previous_secret_ciphertext"
# The columns PATCH may set (besides the ones the service derives).
UPDATABLE = frozenset(
    {
        "url",
        "description",
        "event_types",
        "enabled",
        "rate_limit_per_s",
        "disabled_reason",
        "disabled_at",
        "failing_since",
    }
)


def lock_project(cur: Cursor, project_id: UUID) -> None:
    cur.execute(_LOCK_SQL, (project_id,))


def count_live(cur: Cursor, project_id: UUID) -> int:
    cur.execute(
        "select count(*) as n from public.webhook_endpoints where project_id = %s and deleted_at is null"
        " and not contact_point_owned",
        (project_id,),
    )
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def insert(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    url: str,
    description: str,
    event_types: list[str] | None,
    enabled: bool,
    rate_limit_per_s: int | None,
    secret_ciphertext: bytes,
    secret_hint: str,
    created_by: UUID | None,
    now: datetime,
) -> dict[str, Any]:
    cur.execute(
        "insert into public.webhook_endpoints (org_id, project_id, url, description, event_types, enabled,"
        " rate_limit_per_s, secret_ciphertext, secret_hint, created_by, created_at, updated_at)"
        " values (%(org)s, %(project)s, %(url)s, %(description)s, %(event_types)s, %(enabled)s, %(rate)s,"
        " %(secret)s, %(hint)s, %(created_by)s, %(now)s, %(now)s)"
        f" returning {PUBLIC_COLUMNS}",
        {
            "org": org_id,
            "project": project_id,
            "url": url,
            "description": description,
            "event_types": event_types,
            "enabled": enabled,
            "rate": rate_limit_per_s,
            "secret": secret_ciphertext,
            "hint": secret_hint,
            "created_by": created_by,
            "now": now,
        },
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def get_for_update(cur: Cursor, project_id: UUID, endpoint_id: UUID) -> dict[str, Any] | None:
    """The live endpoint with its secrets' ciphertexts, locked for the change (service role only)."""
    cur.execute(
        f"select {PUBLIC_COLUMNS}, {SECRET_COLUMNS} from public.webhook_endpoints"
        " where project_id = %s and id = %s and deleted_at is null and not contact_point_owned for update",
        (project_id, endpoint_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def get_with_secrets(cur: Cursor, project_id: UUID, endpoint_id: UUID) -> dict[str, Any] | None:
    """The live endpoint with its secrets' ciphertexts, unlocked (a test send; service role only)."""
    cur.execute(
        f"select {PUBLIC_COLUMNS}, {SECRET_COLUMNS} from public.webhook_endpoints"
        " where project_id = %s and id = %s and deleted_at is null and not contact_point_owned",
        (project_id, endpoint_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def update(cur: Cursor, endpoint_id: UUID, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Set ``fields`` (column names among UPDATABLE) and ``updated_at``."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in fields
    ]
    assignments.append(sql.SQL("updated_at = %(now)s"))
    query = sql.SQL("update public.webhook_endpoints set {} where id = %(endpoint_id)s returning " + PUBLIC_COLUMNS)
    cur.execute(query.format(sql.SQL(", ").join(assignments)), {**fields, "endpoint_id": endpoint_id, "now": now})
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def rotate_secret(
    cur: Cursor,
    endpoint_id: UUID,
    *,
    secret_ciphertext: bytes,
    secret_hint: str,
    previous_secret_ciphertext: bytes,
    previous_expires_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    """The new secret becomes the current one; the one it replaces keeps signing until ``previous_expires_at``."""
    cur.execute(
        "update public.webhook_endpoints set secret_ciphertext = %(secret)s, secret_hint = %(hint)s,"
        " previous_secret_ciphertext = %(previous)s, previous_secret_expires_at = %(expires)s, updated_at = %(now)s"
        f" where id = %(id)s returning {PUBLIC_COLUMNS}",
        {
            "id": endpoint_id,
            "secret": secret_ciphertext,
            "hint": secret_hint,
            "previous": previous_secret_ciphertext,
            "expires": previous_expires_at,
            "now": now,
        },
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def soft_delete(cur: Cursor, endpoint_id: UUID, now: datetime) -> None:
    """Deleted and disabled, the previous secret (in rotation) dropped. The current secret's ciphertext stays (the
    column is not null): nothing reads a deleted endpoint's secret."""
    cur.execute(
        "update public.webhook_endpoints set deleted_at = %(now)s, enabled = false, updated_at = %(now)s,"
        " previous_secret_ciphertext = null, previous_secret_expires_at = null where id = %(id)s",
        {"id": endpoint_id, "now": now},
    )


def stop_pending_messages(cur: Cursor, endpoint_id: UUID, reason: str) -> int:
    """Fail the endpoint's messages still waiting for delivery, or in flight (a worker's claim), with ``reason``:
    none is sent (or retried) to an endpoint that was deleted."""
    cur.execute(
        "update public.webhook_messages set status = 'failed', next_attempt_at = null, lease_until = null,"
        " failure_reason = left(%(reason)s, 500)"
        " where endpoint_id = %(id)s and status in ('pending', 'delivering')",
        {"id": endpoint_id, "reason": reason},
    )
    return cur.rowcount


# --- reads (under the caller's claims) ----------------------------------------------------------------------------


def get(cur: Cursor, project_id: UUID, endpoint_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {PUBLIC_COLUMNS} from public.webhook_endpoints"
        " where project_id = %s and id = %s and deleted_at is null and not contact_point_owned",
        (project_id, endpoint_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def list_page(
    cur: Cursor, project_id: UUID, after_ts: datetime | None, after_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first; ``limit`` rows after the (created_at, id) position, when given."""
    cur.execute(
        f"select {PUBLIC_COLUMNS} from public.webhook_endpoints where project_id = %(project)s and deleted_at is null"
        " and not contact_point_owned"
        " and (%(after_ts)s::timestamptz is null or (created_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by created_at desc, id desc limit %(limit)s",
        {"project": project_id, "after_ts": after_ts, "after_id": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]
