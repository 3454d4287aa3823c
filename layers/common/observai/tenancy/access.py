"""Authorization against memberships. Not a member → 404 (the organization's existence is not revealed);
a member whose role lacks the permission → 403."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from observai.auth.permissions import Action, Role, require
from observai.auth.principal import Principal
from observai.db.connection import Cursor
from observai.errors import Forbidden, NotFound
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


def authorize_telemetry(
    cur: Cursor, principal: Principal, project_id: UUID, action: Action = Action.TELEMETRY_READ
) -> UUID:
    """The project's org id, when the caller may ``action`` its telemetry: a member whose role allows it, or an
    API key bound to this very project with the ``read`` scope. Another project's key gets 404 (existence not
    revealed), a key without the scope 403."""
    if principal.kind == "api_key":
        if principal.project_id != project_id or principal.org_id is None:
            raise NotFound("Project not found", details={"project_id": str(project_id)})
        if "read" not in principal.scopes:
            raise Forbidden(
                "This API key lacks the read scope", code="scope_missing", details={"scopes": sorted(principal.scopes)}
            )
        return principal.org_id
    row, _ = authorize_project(cur, principal, project_id, action)
    return cast(UUID, row["org_id"])


def authorize_configuration(cur: Cursor, principal: Principal, project_id: UUID) -> UUID:
    """The project's org id when the caller may change how the project watches itself (alert rules, the
    notification policy, silences) or act on its incidents: a member whose role allows telemetry writes, or an API
    key bound to this very project with the ``admin`` scope (configuration as code, a chat bot acknowledging pages).
    Another project's key gets 404 (existence not revealed), a key without the scope 403 ``scope_missing``: a
    ``read`` key reads, it never changes anything."""
    if principal.kind == "api_key":
        return _admin_key_of(principal, project_id, "a person's token")
    return authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_WRITE)


def authorize_webhooks_read(cur: Cursor, principal: Principal, project_id: UUID) -> UUID:
    """The project's org id when the caller may read its webhook endpoints and deliveries (never their secrets):
    viewers and up, or an API key bound to this very project with the ``read`` or ``admin`` scope. Another
    project's key gets 404 (existence not revealed), an ``ingest``-only key 403 ``scope_missing``."""
    if principal.kind == "api_key":
        if principal.project_id != project_id or principal.org_id is None:
            raise NotFound("Project not found", details={"project_id": str(project_id)})
        if not principal.scopes & {"read", "admin"}:
            raise Forbidden(
                "This API key lacks the read scope",
                code="scope_missing",
                details={"scopes": sorted(principal.scopes), "needed": "read"},
            )
        return principal.org_id
    row, _ = authorize_project(cur, principal, project_id, Action.TELEMETRY_READ)
    return cast(UUID, row["org_id"])


def authorize_webhooks_manage(cur: Cursor, principal: Principal, project_id: UUID) -> UUID:
    """The project's org id when the caller may subscribe, change, delete, rotate, test or replay its webhook
    endpoints: admins and up (an endpoint sends the project's events anywhere on the internet), or an API key bound
    to this very project with the ``admin`` scope. Another project's key, or another organization, gets 404; a
    member, a viewer or a ``read`` key 403."""
    if principal.kind == "api_key":
        return _admin_key_of(principal, project_id, "a person's token (admin or owner)")
    row, _ = authorize_project(cur, principal, project_id, Action.WEBHOOK_MANAGE)
    return cast(UUID, row["org_id"])


def _admin_key_of(principal: Principal, project_id: UUID, or_else: str) -> UUID:
    """The org id of an API key bound to this very project with the ``admin`` scope; another project's key: 404
    (existence not revealed); a key without the scope: 403 ``scope_missing``."""
    if principal.project_id != project_id or principal.org_id is None:
        raise NotFound("Project not found", details={"project_id": str(project_id)})
    if "admin" not in principal.scopes:
        raise Forbidden(
            f"This needs {or_else}, or an API key of the project with the admin scope",
            code="scope_missing",
            details={"scopes": sorted(principal.scopes), "needed": "admin"},
        )
    return principal.org_id
