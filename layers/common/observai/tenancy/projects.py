"""Projects inside an organization: where telemetry and API keys live."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from observai import audit
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict
from observai.pagination import TimeCursor, decode_cursor, page, time_position
from observai.tenancy import store
from observai.tenancy.access import authorize_org, authorize_project
from observai.tenancy.models import Deleted, Project, ProjectCreate, ProjectUpdate
from observai.tenancy.slugs import insert_with_unique_slug


def insert_project_with_unique_slug(cur: Cursor, org_id: UUID, name: str, slug: str | None) -> dict[str, Any]:
    return insert_with_unique_slug(
        cur,
        name,
        slug,
        lambda candidate: store.insert_project(cur, org_id, name, candidate),
        "A project with this slug exists in the organization",
    )


def create_project(principal: Principal, org_id: UUID, body: ProjectCreate) -> Project:
    with transaction() as cur:
        authorize_org(cur, principal, org_id, Action.PROJECT_CREATE)
        row = insert_project_with_unique_slug(cur, org_id, body.name, body.slug)
        audit.record(cur, principal, "project.create", org_id=org_id, target_type="project", target_id=row["id"])
    return Project(**row)


def list_projects(
    principal: Principal, org_id: UUID, cursor: str | None, limit: int
) -> tuple[list[Project], str | None]:
    after = decode_cursor(cursor, TimeCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_org(cur, principal, org_id, Action.PROJECT_READ)
        rows = store.list_projects(cur, org_id, after, limit)
    rows, next_cursor = page(rows, limit, time_position())
    return [Project(**r) for r in rows], next_cursor


def get_project(principal: Principal, project_id: UUID) -> Project:
    with tenant_transaction(principal.rls_claims()) as cur:
        row, _ = authorize_project(cur, principal, project_id, Action.PROJECT_READ)
    return Project(**row)


def update_project(principal: Principal, project_id: UUID, body: ProjectUpdate) -> Project:
    changes = body.model_dump(exclude_none=True)
    with transaction() as cur:
        row, _ = authorize_project(cur, principal, project_id, Action.PROJECT_UPDATE)
        if changes:
            try:
                with cur.connection.transaction():
                    row = store.update_project(cur, project_id, changes)
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict("A project with this slug exists in the organization", details=changes) from exc
            audit.record(
                cur,
                principal,
                "project.update",
                org_id=row["org_id"],
                target_type="project",
                target_id=project_id,
                details=changes,
            )
    return Project(**row)


def delete_project(principal: Principal, project_id: UUID) -> Deleted:
    with transaction() as cur:
        row, _ = authorize_project(cur, principal, project_id, Action.PROJECT_DELETE)
        store.delete_project(cur, project_id)
        audit.record(
            cur, principal, "project.delete", org_id=row["org_id"], target_type="project", target_id=project_id
        )
    return Deleted(id=project_id)
