"""Membership rules through the real orgs handler, in-process: an organization always keeps an owner,
only owners manage ownership, anyone may leave, ownership can be handed over."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration


class Org:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.owner = make_user(db)
        created = invoke("orgs", "POST", "/v1/orgs", headers=self.owner.headers, json_body={"name": "Rules Org"})
        assert created.status == 201, created.text
        self.id = created.data["id"]
        self.admin = self.join("admin")
        self.member = self.join("member")
        self.viewer = self.join("viewer")

    def join(self, role: str) -> User:
        user = make_user(self.db)
        add_membership(self.db, self.id, user.id, role)
        return user

    def set_role(self, actor: User, target: User, role: str) -> Result:
        return invoke(
            "orgs", "PATCH", f"/v1/orgs/{self.id}/members/{target.id}", headers=actor.headers, json_body={"role": role}
        )

    def remove(self, actor: User, target: User) -> Result:
        return invoke("orgs", "DELETE", f"/v1/orgs/{self.id}/members/{target.id}", headers=actor.headers)

    def add(self, actor: User, target: User, role: str) -> Result:
        return invoke(
            "orgs",
            "POST",
            f"/v1/orgs/{self.id}/members",
            headers=actor.headers,
            json_body={"user_id": str(target.id), "role": role},
        )

    def roles(self) -> dict[str, str]:
        rows = self.db.execute("select user_id, role from public.memberships where org_id = %s", (self.id,)).fetchall()
        return {str(r["user_id"]): r["role"] for r in rows}

    def audit_actions(self) -> list[str]:
        rows = self.db.execute("select action from public.audit_log where org_id = %s order by id", (self.id,))
        return [r["action"] for r in rows]


@pytest.fixture
def org(db) -> Org:
    return Org(db)


def error(result: Result, status: int) -> dict[str, Any]:
    assert result.status == status, result.text
    body = result.json()
    assert body["data"] is None
    return body["error"]


def test_last_owner_cannot_be_demoted_or_removed(org: Org) -> None:
    # Given an organization with a single owner
    before = (org.roles(), org.audit_actions())
    # When the owner demotes or removes themself
    demote = org.set_role(org.owner, org.owner, "admin")
    leave = org.remove(org.owner, org.owner)
    # Then both are 409 last_owner, and nothing changed
    assert error(demote, 409)["code"] == "last_owner"
    assert error(leave, 409)["code"] == "last_owner"
    assert (org.roles(), org.audit_actions()) == before


def test_setting_the_same_role_on_the_last_owner_is_harmless(org: Org) -> None:
    # Given a single owner
    # When their role is set to owner again
    result = org.set_role(org.owner, org.owner, "owner")
    # Then it succeeds and they are still owner
    assert result.status == 200, result.text
    assert org.roles()[str(org.owner.id)] == "owner"


@pytest.mark.parametrize(
    "attempt",
    ["grant-owner-to-member", "add-new-user-as-owner", "demote-owner", "remove-owner"],
)
def test_admin_cannot_touch_ownership(org: Org, attempt: str) -> None:
    # Given an admin of the organization
    before = (org.roles(), org.audit_actions())
    newcomer = make_user(org.db)
    # When the admin tries to grant, take away or remove ownership
    result = {
        "grant-owner-to-member": lambda: org.set_role(org.admin, org.member, "owner"),
        "add-new-user-as-owner": lambda: org.add(org.admin, newcomer, "owner"),
        "demote-owner": lambda: org.set_role(org.admin, org.owner, "member"),
        "remove-owner": lambda: org.remove(org.admin, org.owner),
    }[attempt]()
    # Then 403 naming the owner.manage permission, and nothing changed
    err = error(result, 403)
    assert err["code"] == "forbidden" and err["details"] == {"action": "owner.manage"}
    assert (org.roles(), org.audit_actions()) == before


def test_admin_manages_non_owners(org: Org) -> None:
    # Given an admin
    newcomer = make_user(org.db)
    # When the admin adds a viewer, promotes a member to admin, and removes the viewer
    assert org.add(org.admin, newcomer, "viewer").status == 201
    assert org.set_role(org.admin, org.member, "admin").status == 200
    assert org.remove(org.admin, org.viewer).status == 200
    # Then the roles are as set, and each change is audited
    roles = org.roles()
    assert roles[str(newcomer.id)] == "viewer" and roles[str(org.member.id)] == "admin"
    assert str(org.viewer.id) not in roles
    assert org.audit_actions()[-3:] == ["member.add", "member.update_role", "member.remove"]


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_manage_members(org: Org, role: str) -> None:
    # Given a member or viewer
    actor = org.member if role == "member" else org.viewer
    target = org.viewer if role == "member" else org.member
    before = org.roles()
    # When they try to change or remove someone else, or add someone
    results = [
        org.set_role(actor, target, "admin"),
        org.remove(actor, target),
        org.add(actor, make_user(org.db), "viewer"),
        org.set_role(actor, actor, "admin"),  # nor promote themself
    ]
    # Then every attempt is 403 member.manage and nothing changed
    for result in results:
        assert error(result, 403)["details"] == {"action": "member.manage"}
    assert org.roles() == before


@pytest.mark.parametrize("who", ["admin", "member", "viewer"])
def test_anyone_can_leave(org: Org, who: str) -> None:
    # Given a non-owner of any role
    user = getattr(org, who)
    # When they remove themself
    result = org.remove(user, user)
    # Then they are gone, it is audited, and the organization is hidden from them now
    assert result.status == 200, result.text
    assert result.data == {"id": str(user.id), "deleted": True}
    assert str(user.id) not in org.roles()
    assert org.audit_actions()[-1] == "member.remove"
    assert invoke("orgs", "GET", f"/v1/orgs/{org.id}", headers=user.headers).status == 404


def test_an_owner_can_leave_when_another_owner_remains(org: Org) -> None:
    # Given two owners
    second = org.join("owner")
    # When one leaves
    # Then it works, and the remaining one is now the last owner
    assert org.remove(org.owner, org.owner).status == 200
    assert error(org.remove(second, second), 409)["code"] == "last_owner"


def test_ownership_transfer(org: Org) -> None:
    # Given the single owner and an admin
    # When the owner promotes the admin to owner, then demotes themself
    promote = org.set_role(org.owner, org.admin, "owner")
    step_down = org.set_role(org.owner, org.owner, "admin")
    # Then both succeed and the admin is now the only owner
    assert promote.status == 200 and promote.data["role"] == "owner"
    assert step_down.status == 200 and step_down.data["role"] == "admin"
    owners = [uid for uid, role in org.roles().items() if role == "owner"]
    assert owners == [str(org.admin.id)]
    # And the former owner, now an admin, can no longer touch ownership
    assert error(org.set_role(org.owner, org.admin, "admin"), 403)["details"] == {"action": "owner.manage"}
    # And the new owner is protected as the last one
    assert error(org.set_role(org.admin, org.admin, "member"), 409)["code"] == "last_owner"
    # And the new owner may delete the organization, the former may not
    assert error(invoke("orgs", "DELETE", f"/v1/orgs/{org.id}", headers=org.owner.headers), 403)
    assert invoke("orgs", "DELETE", f"/v1/orgs/{org.id}", headers=org.admin.headers).status == 200


def test_changing_a_non_member_is_404(org: Org) -> None:
    # Given a user who is not in the organization
    stranger = make_user(org.db)
    # When the owner changes or removes them
    # Then 404, not a silent success
    assert error(org.set_role(org.owner, stranger, "admin"), 404)["code"] == "not_found"
    assert error(org.remove(org.owner, stranger), 404)["code"] == "not_found"
