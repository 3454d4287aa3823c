"""Organizations: create (the caller becomes owner), list mine, read, rename, change plan, delete."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from observai import audit
from observai.auth.permissions import Action, Role
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, NotFound
from observai.pagination import TimeCursor, decode_cursor, page, time_position
from observai.tenancy import store
from observai.tenancy.access import authorize_org
from observai.tenancy.models import Deleted, Org, OrgCreate, OrgUpdate
from observai.tenancy.slugs import insert_with_unique_slug


def insert_org_with_unique_slug(cur: Cursor, name: str, slug: str | None) -> dict[str, Any]:
    return insert_with_unique_slug(
        cur, name, slug, lambda candidate: store.insert_org(cur, name, candidate), "This slug is taken"
    )


def create_org(principal: Principal, body: OrgCreate) -> Org:
    with transaction() as cur:
        row = insert_org_with_unique_slug(cur, body.name, body.slug)
        store.insert_membership(cur, row["id"], principal.uid, Role.OWNER)
        audit.record(cur, principal, "org.create", org_id=row["id"], target_type="organization", target_id=row["id"])
    return Org(**row, role=Role.OWNER)


def list_orgs(principal: Principal, cursor: str | None, limit: int) -> tuple[list[Org], str | None]:
    after = decode_cursor(cursor, TimeCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        rows = store.list_orgs_of_user(cur, principal.uid, after, limit)
    rows, next_cursor = page(rows, limit, time_position())
    return [Org(**r) for r in rows], next_cursor


def get_org(principal: Principal, org_id: UUID) -> Org:
    with tenant_transaction(principal.rls_claims()) as cur:
        row = store.get_org_with_role(cur, org_id, principal.uid)
    if row is None:
        raise NotFound("Organization not found", details={"org_id": str(org_id)})
    return Org(**row)


def update_org(principal: Principal, org_id: UUID, body: OrgUpdate) -> Org:
    changes = body.model_dump(exclude_none=True)
    with transaction() as cur:
        role = authorize_org(cur, principal, org_id, Action.ORG_UPDATE)
        if "plan" in changes:
            authorize_org(cur, principal, org_id, Action.ORG_UPDATE_PLAN)
        if not changes:
            row = store.get_org_with_role(cur, org_id, principal.uid)
            assert row is not None
            return Org(**row)
        try:
            with cur.connection.transaction():
                row = store.update_org(cur, org_id, changes)
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict("This slug is taken", details={"slug": changes.get("slug")}) from exc
        audit.record(
            cur, principal, "org.update", org_id=org_id, target_type="organization", target_id=org_id, details=changes
        )
    return Org(**row, role=role)


def delete_org(principal: Principal, org_id: UUID) -> Deleted:
    with transaction() as cur:
        authorize_org(cur, principal, org_id, Action.ORG_DELETE)
        store.delete_org(cur, org_id)
        audit.record(cur, principal, "org.delete", org_id=org_id, target_type="organization", target_id=org_id)
    return Deleted(id=org_id)
