"""Invitations through the real orgs handler, in-process, with a fake Supabase Auth (GoTrue) on localhost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import pytest
from observai.auth import supabase_admin
from observai.config import SUPABASE_CLI_DEV_JWT_SECRET

from tests.fakes.supabase_auth import FakeSupabaseAuth
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user, unique_email

pytestmark = pytest.mark.integration

SERVICE_KEY = pyjwt.encode(
    {"iss": "supabase-demo", "role": "service_role", "exp": int(time.time()) + 86_400},
    SUPABASE_CLI_DEV_JWT_SECRET,
    algorithm="HS256",
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSupabaseAuth]:
    supabase_admin.reset_clients()
    with FakeSupabaseAuth(service_key=SERVICE_KEY) as server:
        monkeypatch.setenv("SUPABASE_URL", server.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
        monkeypatch.setenv("INVITE_REDIRECT_URL", "https://app.example.test/welcome")
        yield server
    supabase_admin.reset_clients()


@pytest.fixture
def owner(db) -> User:
    return make_user(db)


@pytest.fixture
def org_id(owner: User, database_url: str) -> str:
    created = invoke("orgs", "POST", "/v1/orgs", headers=owner.headers, json_body={"name": "Inviting Org"})
    assert created.status == 201, created.text
    return created.data["id"]


def invite(actor: User, org_id: str, email: str, role: str | None = "member") -> Result:
    body: dict[str, Any] = {"email": email}
    if role is not None:
        body["role"] = role
    return invoke("orgs", "POST", f"/v1/orgs/{org_id}/invitations", headers=actor.headers, json_body=body)


def membership(db, org_id: str, user_id: Any) -> str | None:
    row = db.execute(
        "select role from public.memberships where org_id = %s and user_id = %s", (org_id, user_id)
    ).fetchone()
    return row["role"] if row else None


def counts(db, org_id: str) -> tuple[int, int, int]:
    return tuple(
        db.execute(f"select count(*) as n from public.{table} where org_id = %s", (org_id,)).fetchone()["n"]
        for table in ("memberships", "invitations", "audit_log")
    )


def test_inviting_a_new_email_goes_through_supabase_and_adds_the_member(
    fake: FakeSupabaseAuth, owner: User, org_id: str, db
) -> None:
    # Given an owner and an e-mail nobody has registered
    email = unique_email("invitee")
    # When the owner invites it as admin (mixed case, with spaces)
    result = invite(owner, org_id, f"  {email.upper()} ", "admin")
    # Then 201 with the invitation, for the user Supabase Auth created
    assert result.status == 201, result.text
    invitation = result.data
    assert invitation["email"] == email and invitation["role"] == "admin" and invitation["org_id"] == org_id
    created = [u for u in fake.users.values() if u["email"] == email]
    assert len(created) == 1 and invitation["user_id"] == created[0]["id"]
    # And the fake saw one invite, authenticated with the service role key, carrying the org and the redirect
    calls = fake.requests_to("/auth/v1/invite")
    assert len(calls) == 1
    call = calls[0]
    assert call.method == "POST"
    assert call.headers["apikey"] == SERVICE_KEY
    assert call.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert call.json["email"] == email
    assert call.json["data"] == {"invited_to_org": org_id, "role": "admin"}
    assert call.query.get("redirect_to") == "https://app.example.test/welcome"
    # And the invited user is a member at once, the invitation is stored, and it is audited
    assert membership(db, org_id, invitation["user_id"]) == "admin"
    row = db.execute(
        "select email, role, invited_by from public.invitations where id = %s", (invitation["id"],)
    ).fetchone()
    assert row == {"email": email, "role": "admin", "invited_by": owner.id}
    audit = db.execute(
        "select actor_id, target_id, details from public.audit_log where org_id = %s and action = 'member.invite'",
        (org_id,),
    ).fetchall()
    assert len(audit) == 1
    assert audit[0]["actor_id"] == str(owner.id) and audit[0]["target_id"] == invitation["user_id"]
    assert audit[0]["details"]["existing_account"] is False


def test_default_role_is_member(fake: FakeSupabaseAuth, owner: User, org_id: str, db) -> None:
    # Given an invitation without a role
    result = invite(owner, org_id, unique_email(), role=None)
    # Then the invitee is a member
    assert result.status == 201, result.text
    assert result.data["role"] == "member"
    assert membership(db, org_id, result.data["user_id"]) == "member"


def test_existing_account_is_added_without_calling_supabase(
    fake: FakeSupabaseAuth, owner: User, org_id: str, db
) -> None:
    # Given a person who already has an account (a row in auth.users)
    existing = make_user(db)
    # When the owner invites their e-mail
    result = invite(owner, org_id, existing.email, "viewer")
    # Then they are added directly, with their own user id, and Supabase Auth was not called
    assert result.status == 201, result.text
    assert result.data["user_id"] == str(existing.id)
    assert membership(db, org_id, existing.id) == "viewer"
    assert fake.requests == []
    details = db.execute(
        "select details from public.audit_log where org_id = %s and action = 'member.invite'", (org_id,)
    ).fetchone()["details"]
    assert details["existing_account"] is True
    # And the new member sees the organization with their token
    assert invoke("orgs", "GET", f"/v1/orgs/{org_id}", headers=existing.headers).data["role"] == "viewer"


def test_duplicate_invitation_is_409(fake: FakeSupabaseAuth, owner: User, org_id: str, db) -> None:
    # Given an e-mail already invited, and an existing account already added
    email = unique_email()
    assert invite(owner, org_id, email).status == 201
    existing = make_user(db)
    assert invite(owner, org_id, existing.email).status == 201
    before = counts(db, org_id)
    # When either is invited again
    again_new = invite(owner, org_id, email)
    again_existing = invite(owner, org_id, existing.email)
    # Then both are 409 and nothing more was written
    assert again_new.status == 409, again_new.text
    assert again_existing.status == 409, again_existing.text
    assert again_new.error["code"] in ("conflict", "user_exists")
    assert counts(db, org_id) == before


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_viewers_and_members_cannot_invite(fake: FakeSupabaseAuth, org_id: str, db, role: str) -> None:
    # Given a viewer or member of the organization
    user = make_user(db)
    add_membership(db, org_id, user.id, role)
    before = counts(db, org_id)
    # When they invite someone
    result = invite(user, org_id, unique_email())
    # Then 403, Supabase Auth was not called, and nothing was written
    assert result.status == 403, result.text
    assert result.error["details"] == {"action": "member.manage"}
    assert fake.requests == []
    assert counts(db, org_id) == before


def test_admin_can_invite_but_not_an_owner(fake: FakeSupabaseAuth, org_id: str, db) -> None:
    # Given an admin
    admin = make_user(db)
    add_membership(db, org_id, admin.id, "admin")
    # When the admin invites an owner, then a member
    as_owner = invite(admin, org_id, unique_email(), "owner")
    as_member = invite(admin, org_id, unique_email(), "member")
    # Then inviting an owner is 403 (without calling Supabase), inviting a member works
    assert as_owner.status == 403, as_owner.text
    assert as_owner.error["details"] == {"action": "owner.manage"}
    assert as_member.status == 201, as_member.text
    assert len(fake.requests_to("/auth/v1/invite")) == 1


def test_outsider_cannot_invite(fake: FakeSupabaseAuth, org_id: str, db) -> None:
    # Given a user who is not a member
    outsider = make_user(db)
    # When they invite someone into the organization
    result = invite(outsider, org_id, unique_email(), "owner")
    # Then 404 (the organization is not revealed) and Supabase Auth was not called
    assert result.status == 404, result.text
    assert fake.requests == []


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.test", ""])
def test_invalid_email_is_422(fake: FakeSupabaseAuth, owner: User, org_id: str, email: str) -> None:
    # Given an invalid e-mail
    # When inviting it
    result = invite(owner, org_id, email)
    # Then 422 on the email field, and Supabase Auth was not called
    assert result.status == 422, result.text
    assert result.error["details"][0]["loc"] == ["body", "email"]
    assert fake.requests == []


def test_supabase_rejecting_our_key_is_503_and_writes_nothing(
    fake: FakeSupabaseAuth, owner: User, org_id: str, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server configured with a wrong service role key
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "wrong-key")
    before = counts(db, org_id)
    # When the owner invites someone
    result = invite(owner, org_id, unique_email())
    # Then 503 with Retry-After (our misconfiguration, not the caller's mistake), and nothing was written
    assert result.status == 503, result.text
    assert result.header("Retry-After")
    assert counts(db, org_id) == before


def test_without_supabase_configured_new_emails_are_503(
    owner: User, org_id: str, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no Supabase Auth configuration
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    supabase_admin.reset_clients()
    before = counts(db, org_id)
    # When inviting a new e-mail
    result = invite(owner, org_id, unique_email())
    # Then 503 with Retry-After, and nothing was written
    assert result.status == 503, result.text
    assert result.header("Retry-After")
    assert counts(db, org_id) == before
