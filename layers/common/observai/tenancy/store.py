"""SQL for the tenancy tables. No rules here: callers decide who may do what."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from observai.db.connection import Cursor
from observai.pagination import IdCursor, TimeCursor, time_cursor_params

_ORG_COLUMNS = "o.id, o.name, o.slug, o.plan, o.created_at, o.updated_at"
_PROJECT_COLUMNS = "p.id, p.org_id, p.name, p.slug, p.created_at, p.updated_at"


def role_in_org(cur: Cursor, org_id: UUID, user_id: UUID) -> str | None:
    cur.execute("select role from public.memberships where org_id = %s and user_id = %s", (org_id, user_id))
    row = cur.fetchone()
    return row["role"] if row else None


def lock_org(cur: Cursor, org_id: UUID) -> bool:
    """Serialise membership changes of one organization (owner counting must not race)."""
    cur.execute("select 1 from public.organizations where id = %s for update", (org_id,))
    return cur.fetchone() is not None


def count_owners(cur: Cursor, org_id: UUID) -> int:
    cur.execute("select count(*) as n from public.memberships where org_id = %s and role = 'owner'", (org_id,))
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def insert_org(cur: Cursor, name: str, slug: str) -> dict[str, Any]:
    cur.execute(
        f"insert into public.organizations as o (name, slug) values (%s, %s) returning {_ORG_COLUMNS}", (name, slug)
    )
    return _one(cur)


def insert_membership(cur: Cursor, org_id: UUID, user_id: UUID, role: str) -> dict[str, Any]:
    cur.execute(
        "insert into public.memberships (org_id, user_id, role) values (%s, %s, %s)"
        " returning user_id, role, created_at",
        (org_id, user_id, role),
    )
    return _one(cur)


def list_orgs_of_user(cur: Cursor, user_id: UUID, after: TimeCursor | None, limit: int) -> list[dict[str, Any]]:
    cur.execute(
        f"select {_ORG_COLUMNS}, m.role from public.organizations o"
        " join public.memberships m on m.org_id = o.id and m.user_id = %(user)s"
        " where (%(after_ts)s::timestamptz is null or (o.created_at, o.id) > (%(after_ts)s, %(after_id)s::uuid))"
        " order by o.created_at, o.id limit %(limit)s",
        {"user": user_id, **time_cursor_params(after), "limit": limit + 1},
    )
    return cur.fetchall()


def get_org_with_role(cur: Cursor, org_id: UUID, user_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {_ORG_COLUMNS}, m.role from public.organizations o"
        " join public.memberships m on m.org_id = o.id and m.user_id = %s where o.id = %s",
        (user_id, org_id),
    )
    return cur.fetchone()


def update_org(cur: Cursor, org_id: UUID, changes: dict[str, Any]) -> dict[str, Any]:
    sets = ", ".join(f"{column} = %({column})s" for column in changes)
    cur.execute(
        f"update public.organizations as o set {sets}, updated_at = now() where id = %(id)s returning {_ORG_COLUMNS}",
        {**changes, "id": org_id},
    )
    return _one(cur)


def delete_org(cur: Cursor, org_id: UUID) -> None:
    cur.execute("delete from public.organizations where id = %s", (org_id,))


def insert_project(cur: Cursor, org_id: UUID, name: str, slug: str) -> dict[str, Any]:
    cur.execute(
        f"insert into public.projects as p (org_id, name, slug) values (%s, %s, %s) returning {_PROJECT_COLUMNS}",
        (org_id, name, slug),
    )
    return _one(cur)


def list_projects(cur: Cursor, org_id: UUID, after: TimeCursor | None, limit: int) -> list[dict[str, Any]]:
    cur.execute(
        f"select {_PROJECT_COLUMNS} from public.projects p where p.org_id = %(org)s"
        " and (%(after_ts)s::timestamptz is null or (p.created_at, p.id) > (%(after_ts)s, %(after_id)s::uuid))"
        " order by p.created_at, p.id limit %(limit)s",
        {"org": org_id, **time_cursor_params(after), "limit": limit + 1},
    )
    return cur.fetchall()


def get_project_with_role(cur: Cursor, project_id: UUID, user_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {_PROJECT_COLUMNS}, m.role from public.projects p"
        " join public.memberships m on m.org_id = p.org_id and m.user_id = %s where p.id = %s",
        (user_id, project_id),
    )
    return cur.fetchone()


def update_project(cur: Cursor, project_id: UUID, changes: dict[str, Any]) -> dict[str, Any]:
    sets = ", ".join(f"{column} = %({column})s" for column in changes)
    cur.execute(
        f"update public.projects as p set {sets}, updated_at = now() where id = %(id)s returning {_PROJECT_COLUMNS}",
        {**changes, "id": project_id},
    )
    return _one(cur)


def delete_project(cur: Cursor, project_id: UUID) -> None:
    cur.execute("delete from public.projects where id = %s", (project_id,))


def list_members(cur: Cursor, org_id: UUID, after: TimeCursor | None, limit: int) -> list[dict[str, Any]]:
    cur.execute(
        "select m.user_id, e.email, m.role, m.created_at from public.memberships m"
        " left join private.member_emails(%(org)s) e on e.user_id = m.user_id where m.org_id = %(org)s"
        " and (%(after_ts)s::timestamptz is null or (m.created_at, m.user_id) > (%(after_ts)s, %(after_id)s::uuid))"
        " order by m.created_at, m.user_id limit %(limit)s",
        {"org": org_id, **time_cursor_params(after), "limit": limit + 1},
    )
    return cur.fetchall()


def update_member_role(cur: Cursor, org_id: UUID, user_id: UUID, role: str) -> dict[str, Any]:
    cur.execute(
        "update public.memberships set role = %s, updated_at = now() where org_id = %s and user_id = %s"
        " returning user_id, role, created_at",
        (role, org_id, user_id),
    )
    return _one(cur)


def delete_member(cur: Cursor, org_id: UUID, user_id: UUID) -> None:
    cur.execute("delete from public.memberships where org_id = %s and user_id = %s", (org_id, user_id))


def user_email(cur: Cursor, user_id: UUID) -> tuple[bool, str | None]:
    cur.execute("select email from auth.users where id = %s", (user_id,))
    row = cur.fetchone()
    return (row is not None, row["email"] if row else None)


def user_id_by_email(cur: Cursor, email: str) -> UUID | None:
    cur.execute("select id from auth.users where lower(email) = lower(%s) limit 1", (email,))
    row = cur.fetchone()
    return row["id"] if row else None


def insert_invitation(
    cur: Cursor, org_id: UUID, email: str, role: str, user_id: UUID | None, invited_by: UUID | None
) -> dict[str, Any]:
    cur.execute(
        "insert into public.invitations (org_id, email, role, user_id, invited_by) values (%s, %s, %s, %s, %s)"
        " returning id, org_id, email, role, user_id, created_at",
        (org_id, email, role, user_id, invited_by),
    )
    return _one(cur)


def list_audit(cur: Cursor, org_id: UUID, before: IdCursor | None, limit: int) -> list[dict[str, Any]]:
    cur.execute(
        "select id, org_id, actor_type, actor_id, action, target_type, target_id, details,"
        " host(source_ip) as source_ip, user_agent, request_id, created_at from public.audit_log"
        " where org_id = %(org)s and (%(before)s::bigint is null or id < %(before)s)"
        " order by id desc limit %(limit)s",
        {"org": org_id, "before": before.before if before else None, "limit": limit + 1},
    )
    return cur.fetchall()


def memberships_of_user(cur: Cursor, user_id: UUID) -> list[dict[str, Any]]:
    cur.execute(
        "select org_id, role from public.memberships where user_id = %s order by created_at limit 1000", (user_id,)
    )
    return cur.fetchall()


def _one(cur: Cursor) -> dict[str, Any]:
    row = cur.fetchone()
    if row is None:
        raise LookupError("statement returned no row")
    return row
