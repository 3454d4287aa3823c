"""Roles and what each may do: the one permission table, tested for every role × action."""

from __future__ import annotations

from enum import StrEnum

from observai.errors import Forbidden


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Action(StrEnum):
    ORG_READ = "org.read"
    ORG_UPDATE = "org.update"  # name, slug
    ORG_UPDATE_PLAN = "org.update_plan"
    ORG_DELETE = "org.delete"
    MEMBER_READ = "member.read"
    MEMBER_MANAGE = "member.manage"  # add, invite, change role, remove (admin, member, viewer)
    OWNER_MANAGE = "owner.manage"  # grant or take away ownership, remove an owner
    PROJECT_READ = "project.read"
    PROJECT_CREATE = "project.create"
    PROJECT_UPDATE = "project.update"
    PROJECT_DELETE = "project.delete"
    API_KEY_READ = "api_key.read"
    API_KEY_MANAGE = "api_key.manage"  # create, revoke, rotate
    AUDIT_READ = "audit.read"
    TELEMETRY_READ = "telemetry.read"
    TELEMETRY_WRITE = "telemetry.write"  # inside projects: alert rules, dashboards, annotations...
    # Outbound webhooks: subscribe, change, delete, rotate the secret, send a test. Admins and up: an endpoint sends
    # the project's events to any URL on the internet, so it is an admin's decision, as API keys are.
    WEBHOOK_MANAGE = "webhook.manage"
    # On-call schedules and their overrides (who gets paged when): admins and up; every member reads them.
    SCHEDULE_MANAGE = "schedule.manage"


_VIEWER = frozenset({Action.ORG_READ, Action.MEMBER_READ, Action.PROJECT_READ, Action.TELEMETRY_READ})
_MEMBER = _VIEWER | {Action.TELEMETRY_WRITE, Action.API_KEY_READ}
_ADMIN = _MEMBER | {
    Action.ORG_UPDATE,
    Action.MEMBER_MANAGE,
    Action.PROJECT_CREATE,
    Action.PROJECT_UPDATE,
    Action.PROJECT_DELETE,
    Action.API_KEY_MANAGE,
    Action.AUDIT_READ,
    Action.WEBHOOK_MANAGE,
    Action.SCHEDULE_MANAGE,
}
_OWNER = frozenset(Action)

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.OWNER: _OWNER,
    Role.ADMIN: frozenset(_ADMIN),
    Role.MEMBER: frozenset(_MEMBER),
    Role.VIEWER: _VIEWER,
}


def can(role: Role | str, action: Action) -> bool:
    return action in PERMISSIONS[Role(role)]


def require(role: Role | str, action: Action) -> None:
    if not can(role, action):
        raise Forbidden(
            f"Your role ({Role(role).value}) does not allow {action.value}", details={"action": action.value}
        )
