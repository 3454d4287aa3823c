"""Invitations by e-mail through Supabase Auth's admin API; the invited user becomes a member at once.

A user who already has an account is added directly (no e-mail needed). The Supabase call happens
outside the database transaction so a slow e-mail service never holds a row lock.
"""

from __future__ import annotations

from uuid import UUID

from observai import audit
from observai.auth.permissions import Action, Role
from observai.auth.principal import Principal
from observai.config import get_settings
from observai.db.connection import Cursor, transaction
from observai.errors import Conflict
from observai.tenancy import store
from observai.tenancy.access import authorize_org
from observai.tenancy.members import add_membership
from observai.tenancy.models import Invitation, InvitationCreate


def _authorize(cur: Cursor, principal: Principal, org_id: UUID, role: Role) -> None:
    authorize_org(cur, principal, org_id, Action.MEMBER_MANAGE)
    if role == Role.OWNER:
        authorize_org(cur, principal, org_id, Action.OWNER_MANAGE)


def invite(principal: Principal, org_id: UUID, body: InvitationCreate) -> Invitation:
    with transaction() as cur:
        _authorize(cur, principal, org_id, body.role)
        existing_user = store.user_id_by_email(cur, body.email)
        if existing_user is not None and store.role_in_org(cur, org_id, existing_user) is not None:
            raise Conflict("This user is already a member", details={"email": body.email})

    user_id = existing_user
    if user_id is None:
        from observai.auth.supabase_admin import invite_user_by_email

        settings = get_settings()
        invited = invite_user_by_email(
            body.email,
            settings=settings,
            redirect_to=settings.invite_redirect_url,
            data={"invited_to_org": str(org_id), "role": body.role.value},
        )
        user_id = invited.id

    with transaction() as cur:
        store.lock_org(cur, org_id)
        _authorize(cur, principal, org_id, body.role)  # the caller's role may have changed meanwhile
        add_membership_for_invitee(cur, principal, org_id, user_id, body.role)
        row = store.insert_invitation(cur, org_id, body.email, body.role, user_id, principal.user_id)
        audit.record(
            cur,
            principal,
            "member.invite",
            org_id=org_id,
            target_type="user",
            target_id=user_id,
            details={"email": body.email, "role": body.role, "existing_account": existing_user is not None},
        )
    return Invitation(**row)


def add_membership_for_invitee(cur: Cursor, principal: Principal, org_id: UUID, user_id: UUID, role: Role) -> None:
    """Invited users exist in Supabase Auth; locally (no Supabase) auth.users may lack them, so insert the row."""
    if store.role_in_org(cur, org_id, user_id) is not None:
        raise Conflict("This user is already a member", details={"user_id": str(user_id)})
    exists, _ = store.user_email(cur, user_id)
    if exists:
        add_membership(cur, principal, org_id, user_id, role)
    else:
        store.insert_membership(cur, org_id, user_id, role)
