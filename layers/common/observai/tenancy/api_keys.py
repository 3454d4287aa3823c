"""API key lifecycle: create (shown once), list (never the secret), revoke, rotate with a grace period."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from observai import audit
from observai.auth.api_key_format import generate_key, hash_key
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.config import get_settings
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, NotFound
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_project
from observai.tenancy.api_key_models import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyRotate
from observai.tenancy.models import Deleted

_COLUMNS = "id, project_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at, rotated_from_id"
_INSERT_ATTEMPTS = 3


def insert_key(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    created_by: UUID | None,
    rotated_from_id: UUID | None = None,
) -> ApiKeyCreated:
    """Generate a key and store its hash; the one place a plaintext key exists."""
    for _ in range(_INSERT_ATTEMPTS):
        generated = generate_key()
        try:
            with cur.connection.transaction():
                cur.execute(
                    "insert into public.api_keys"
                    " (org_id, project_id, name, prefix, key_hash, scopes, expires_at, created_by, rotated_from_id)"
                    f" values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning {_COLUMNS}",
                    (
                        org_id,
                        project_id,
                        name,
                        generated.lookup_prefix,
                        hash_key(generated.key),
                        sorted(set(scopes)),
                        expires_at,
                        created_by,
                        rotated_from_id,
                    ),
                )
                row = cur.fetchone()
        except psycopg.errors.UniqueViolation:
            continue  # a lookup-prefix collision (~2^-71): draw again
        assert row is not None
        return ApiKeyCreated(**row, key=generated.key)
    raise Conflict("Could not generate a unique key; try again")


def create_key(principal: Principal, project_id: UUID, body: ApiKeyCreate) -> ApiKeyCreated:
    with transaction() as cur:
        project, _ = authorize_project(cur, principal, project_id, Action.API_KEY_MANAGE)
        created = insert_key(
            cur,
            org_id=project["org_id"],
            project_id=project_id,
            name=body.name,
            scopes=list(body.scopes),
            expires_at=body.expires_at,
            created_by=principal.user_id,
        )
        audit.record(
            cur,
            principal,
            "api_key.create",
            org_id=project["org_id"],
            target_type="api_key",
            target_id=created.id,
            details={"project_id": str(project_id), "name": body.name, "scopes": created.scopes},
        )
    return created


def list_keys(
    principal: Principal, project_id: UUID, cursor: str | None, limit: int
) -> tuple[list[ApiKey], str | None]:
    after = decode_cursor(cursor, TimeCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_project(cur, principal, project_id, Action.API_KEY_READ)
        cur.execute(
            f"select {_COLUMNS} from public.api_keys where project_id = %(project)s"
            " and (%(after_ts)s::timestamptz is null or (created_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
            " order by created_at desc, id desc limit %(limit)s",
            {"project": project_id, **time_cursor_params(after), "limit": limit + 1},
        )
        rows = cur.fetchall()
    rows, next_cursor = page(rows, limit, time_position())
    return [ApiKey(**r) for r in rows], next_cursor


def _key_row(cur: Cursor, project_id: UUID, key_id: UUID) -> dict[str, Any]:
    cur.execute(
        f"select {_COLUMNS} from public.api_keys where id = %s and project_id = %s for update", (key_id, project_id)
    )
    row = cur.fetchone()
    if row is None:
        raise NotFound("API key not found", details={"key_id": str(key_id)})
    return row


def revoke_key(principal: Principal, project_id: UUID, key_id: UUID) -> Deleted:
    with transaction() as cur:
        project, _ = authorize_project(cur, principal, project_id, Action.API_KEY_MANAGE)
        row = _key_row(cur, project_id, key_id)
        if row["revoked_at"] is None:
            cur.execute("update public.api_keys set revoked_at = now() where id = %s", (key_id,))
            audit.record(
                cur,
                principal,
                "api_key.revoke",
                org_id=project["org_id"],
                target_type="api_key",
                target_id=key_id,
                details={"project_id": str(project_id)},
            )
    return Deleted(id=key_id)


def rotate_key(principal: Principal, project_id: UUID, key_id: UUID, body: ApiKeyRotate | None) -> ApiKeyCreated:
    """A new key with the same name and scopes; the old one keeps working for the grace period, then expires."""
    grace_s = body.grace_period_seconds if body and body.grace_period_seconds is not None else None
    if grace_s is None:
        grace_s = get_settings().api_key_rotation_grace_s
    with transaction() as cur:
        project, _ = authorize_project(cur, principal, project_id, Action.API_KEY_MANAGE)
        old = _key_row(cur, project_id, key_id)
        if old["revoked_at"] is not None:
            raise Conflict("This key is revoked; create a new one instead", code="api_key_revoked")
        cur.execute(
            "update public.api_keys"
            " set expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => %s))"
            " where id = %s and (expires_at is null or expires_at > now()) returning expires_at",
            (grace_s, key_id),
        )
        if cur.fetchone() is None:
            raise Conflict("This key has expired; create a new one instead", code="api_key_expired")
        created = insert_key(
            cur,
            org_id=project["org_id"],
            project_id=project_id,
            name=old["name"],
            scopes=old["scopes"],
            expires_at=None,
            created_by=principal.user_id,
            rotated_from_id=key_id,
        )
        audit.record(
            cur,
            principal,
            "api_key.rotate",
            org_id=project["org_id"],
            target_type="api_key",
            target_id=key_id,
            details={"new_key_id": str(created.id), "grace_period_seconds": grace_s},
        )
    return created
