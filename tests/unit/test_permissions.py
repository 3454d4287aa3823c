"""The permission table: every role × every action against an expected table written out here."""

from __future__ import annotations

import pytest
from observai.auth.permissions import PERMISSIONS, Action, Role, can, require
from observai.errors import Forbidden

A = Action
# Written out by hand from the product brief, not derived from the code under test.
EXPECTED: dict[Role, set[Action]] = {
    Role.OWNER: {
        A.ORG_READ,
        A.ORG_UPDATE,
        A.ORG_UPDATE_PLAN,
        A.ORG_DELETE,
        A.MEMBER_READ,
        A.MEMBER_MANAGE,
        A.OWNER_MANAGE,
        A.PROJECT_READ,
        A.PROJECT_CREATE,
        A.PROJECT_UPDATE,
        A.PROJECT_DELETE,
        A.API_KEY_READ,
        A.API_KEY_MANAGE,
        A.AUDIT_READ,
        A.TELEMETRY_READ,
        A.TELEMETRY_WRITE,
        A.WEBHOOK_MANAGE,
        A.SCHEDULE_MANAGE,
    },
    Role.ADMIN: {
        A.ORG_READ,
        A.ORG_UPDATE,
        A.MEMBER_READ,
        A.MEMBER_MANAGE,
        A.PROJECT_READ,
        A.PROJECT_CREATE,
        A.PROJECT_UPDATE,
        A.PROJECT_DELETE,
        A.API_KEY_READ,
        A.API_KEY_MANAGE,
        A.AUDIT_READ,
        A.TELEMETRY_READ,
        A.TELEMETRY_WRITE,
        A.WEBHOOK_MANAGE,
        A.SCHEDULE_MANAGE,
    },
    Role.MEMBER: {A.ORG_READ, A.MEMBER_READ, A.PROJECT_READ, A.TELEMETRY_READ, A.TELEMETRY_WRITE, A.API_KEY_READ},
    Role.VIEWER: {A.ORG_READ, A.MEMBER_READ, A.PROJECT_READ, A.TELEMETRY_READ},
}
ALL_ACTIONS = {
    "org.read",
    "org.update",
    "org.update_plan",
    "org.delete",
    "member.read",
    "member.manage",
    "owner.manage",
    "project.read",
    "project.create",
    "project.update",
    "project.delete",
    "api_key.read",
    "api_key.manage",
    "audit.read",
    "telemetry.read",
    "telemetry.write",
    "webhook.manage",
    "schedule.manage",
}
CASES = [(role, action) for role in Role for action in Action]


def test_the_table_covers_exactly_the_known_roles_and_actions() -> None:
    # Given the roles and actions the product defines
    # Then no role or action exists that the expected table does not know about (a new one must be added here)
    assert {r.value for r in Role} == {"owner", "admin", "member", "viewer"}
    assert {a.value for a in Action} == ALL_ACTIONS
    assert set(PERMISSIONS) == set(Role)


@pytest.mark.parametrize(("role", "action"), CASES, ids=[f"{r.value}-{a.value}" for r, a in CASES])
def test_role_action(role: Role, action: Action) -> None:
    # Given a role and an action, and whether the written-out table allows it
    allowed = action in EXPECTED[role]
    # When asking the permission table
    # Then can() answers as the table says, also for the role's string value
    assert can(role, action) is allowed
    assert can(role.value, action) is allowed
    # And require() passes silently when allowed and raises Forbidden (naming the action) otherwise
    if allowed:
        assert require(role, action) is None
    else:
        with pytest.raises(Forbidden) as info:
            require(role.value, action)
        assert info.value.code == "forbidden"
        assert info.value.details == {"action": action.value}
        assert role.value in info.value.message


def test_admin_lacks_exactly_the_owner_powers() -> None:
    # Given the owner's and admin's permissions
    # Then the difference is exactly plan changes, deleting the organization and managing owners
    assert PERMISSIONS[Role.OWNER] - PERMISSIONS[Role.ADMIN] == {A.ORG_UPDATE_PLAN, A.ORG_DELETE, A.OWNER_MANAGE}


def test_unknown_role_is_refused() -> None:
    # Given a role name that does not exist
    # When checking it
    # Then it is an error, never a silent allow
    with pytest.raises(ValueError):
        can("superuser", Action.ORG_READ)
    with pytest.raises(ValueError):
        require("root", Action.ORG_DELETE)
