"""Authorization against memberships. Not a member → 404 (the organization's existence is not revealed);
a member whose role lacks the permission → 403."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from observai.auth.permissions import Action, Role, require
from observai.auth.principal import Principal
from observai.db.connection import Cursor
from observai.errors import NotFound
from observai.tenancy import store


def authorize_org(cur: Cursor, principal: Principal, org_id: UUID, action: Action) -> Role:
    role = store.role_in_org(cur, org_id, principal.user_id) if principal.user_id else None
    if role is None:
        raise NotFound("Organization not found", details={"org_id": str(org_id)})
    require(role, action)
    return Role(role)


def authorize_project(
    cur: Cursor, principal: Principal, project_id: UUID, action: Action
) -> tuple[dict[str, Any], Role]:
    row = store.get_project_with_role(cur, project_id, principal.user_id) if principal.user_id else None
    if row is None:
        raise NotFound("Project not found", details={"project_id": str(project_id)})
    require(row["role"], action)
    return row, Role(row["role"])
