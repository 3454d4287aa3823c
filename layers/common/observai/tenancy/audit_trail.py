"""Reading the audit trail of an organization (admins and owners), newest first."""

from __future__ import annotations

from uuid import UUID

from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction
from observai.pagination import IdCursor, decode_cursor, page
from observai.tenancy import store
from observai.tenancy.access import authorize_org
from observai.tenancy.models import AuditEntry


def list_audit_log(
    principal: Principal, org_id: UUID, cursor: str | None, limit: int
) -> tuple[list[AuditEntry], str | None]:
    before = decode_cursor(cursor, IdCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_org(cur, principal, org_id, Action.AUDIT_READ)
        rows = store.list_audit(cur, org_id, before, limit)
    rows, next_cursor = page(rows, limit, lambda r: IdCursor(before=r["id"]))
    return [AuditEntry(**r) for r in rows], next_cursor
