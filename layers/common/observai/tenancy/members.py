"""Memberships: list, add an existing user, change a role, remove. An organization always keeps an owner."""

from __future__ import annotations

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
from observai.tenancy.models import Deleted, Member, MemberAdd, MemberUpdate


def list_members(principal: Principal, org_id: UUID, cursor: str | None, limit: int) -> tuple[list[Member], str | None]:
    after = decode_cursor(cursor, TimeCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_org(cur, principal, org_id, Action.MEMBER_READ)
        rows = store.list_members(cur, org_id, after, limit)
    rows, next_cursor = page(rows, limit, time_position(id_key="user_id"))
    return [Member(**r) for r in rows], next_cursor


def _authorize_change(cur: Cursor, principal: Principal, org_id: UUID, roles: set[str]) -> None:
    """Managing members needs member.manage; granting, changing or removing ownership needs owner.manage."""
    authorize_org(cur, principal, org_id, Action.MEMBER_MANAGE)
    if Role.OWNER in roles:
        authorize_org(cur, principal, org_id, Action.OWNER_MANAGE)


def add_membership(cur: Cursor, principal: Principal, org_id: UUID, user_id: UUID, role: Role) -> Member:
    """Insert the membership (caller holds the org lock and the permission); 409 when already a member."""
    exists, email = store.user_email(cur, user_id)
    if not exists:
        raise NotFound("No user with this id", details={"user_id": str(user_id)})
    try:
        with cur.connection.transaction():
            row = store.insert_membership(cur, org_id, user_id, role)
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("This user is already a member", details={"user_id": str(user_id)}) from exc
    audit.record(
        cur, principal, "member.add", org_id=org_id, target_type="user", target_id=user_id, details={"role": role}
    )
    return Member(**row, email=email)


def add_member(principal: Principal, org_id: UUID, body: MemberAdd) -> Member:
    with transaction() as cur:
        store.lock_org(cur, org_id)
        _authorize_change(cur, principal, org_id, {body.role})
        return add_membership(cur, principal, org_id, body.user_id, body.role)


def _current_role(cur: Cursor, org_id: UUID, user_id: UUID) -> str:
    role = store.role_in_org(cur, org_id, user_id)
    if role is None:
        raise NotFound("No such member", details={"user_id": str(user_id)})
    return role


def _keep_an_owner(cur: Cursor, org_id: UUID, current_role: str) -> None:
    if current_role == Role.OWNER and store.count_owners(cur, org_id) <= 1:
        raise Conflict(
            "An organization must keep at least one owner: make someone else owner first",
            code="last_owner",
        )


def update_member(principal: Principal, org_id: UUID, user_id: UUID, body: MemberUpdate) -> Member:
    with transaction() as cur:
        store.lock_org(cur, org_id)
        authorize_org(cur, principal, org_id, Action.MEMBER_MANAGE)
        current = _current_role(cur, org_id, user_id)
        if Role.OWNER in {current, body.role}:
            authorize_org(cur, principal, org_id, Action.OWNER_MANAGE)
        if current != body.role:
            _keep_an_owner(cur, org_id, current)
        row = store.update_member_role(cur, org_id, user_id, body.role)
        audit.record(
            cur,
            principal,
            "member.update_role",
            org_id=org_id,
            target_type="user",
            target_id=user_id,
            details={"from": current, "to": body.role},
        )
        _, email = store.user_email(cur, user_id)
    return Member(**row, email=email)


def remove_member(principal: Principal, org_id: UUID, user_id: UUID) -> Deleted:
    with transaction() as cur:
        store.lock_org(cur, org_id)
        if user_id == principal.user_id:
            authorize_org(cur, principal, org_id, Action.ORG_READ)  # anyone may leave
        else:
            authorize_org(cur, principal, org_id, Action.MEMBER_MANAGE)
        current = _current_role(cur, org_id, user_id)
        if user_id != principal.user_id and current == Role.OWNER:
            authorize_org(cur, principal, org_id, Action.OWNER_MANAGE)
        _keep_an_owner(cur, org_id, current)
        store.delete_member(cur, org_id, user_id)
        audit.record(
            cur,
            principal,
            "member.remove",
            org_id=org_id,
            target_type="user",
            target_id=user_id,
            details={"role": current},
        )
    return Deleted(id=user_id)
