"""Escalation policies over the API: create, list, read, change, delete (soft).

Who may do what: admins and owners write, or an API key bound to the project with the ``admin`` scope (a policy
decides who is woken at night, as webhooks decide where the project's events go); viewers and up read, or a
``read`` (or ``admin``) key of the project. Another organization's project, or another project's key, gets 404.
Every write is audited.

Targets are checked on every write that sets ``steps``: users must be members of the organization, schedules
on-call schedules of the organization, contact points live contact points of the project; a bad one is a 422
naming it (``["body", "steps", i, "targets", j, "id"]``). A project holds at most 50 live policies, and names are
unique among them (409 ``escalation_policy_name_taken``). Deleting a policy is a soft delete: routes naming it page
nobody from then on (a warning and a timeline note), and runs in progress keep the copy they started with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from observai import audit
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, NotFound, Unprocessable
from observai.escalation import policies_store as store
from observai.escalation.models import (
    MAX_POLICIES_PER_PROJECT,
    EscalationPolicy,
    EscalationPolicyDeleted,
    EscalationPolicyIn,
    EscalationPolicyPatch,
    Step,
)
from observai.observability import logger
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_webhooks_manage, authorize_webhooks_read

# Writes: admins and up, or an admin key of the project; reads: viewers and up, or a read or admin key. The same
# rule as the project's webhook endpoints (observai.tenancy.access).
authorize_write = authorize_webhooks_manage
authorize_read = authorize_webhooks_read


def to_policy(row: dict[str, Any]) -> EscalationPolicy:
    return EscalationPolicy(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        description=row["description"],
        steps=[Step.model_validate(step) for step in row["steps"]],
        repeat=row["repeat"],
        ack_timeout_minutes=row["ack_timeout_minutes"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _not_found(policy_id: UUID) -> NotFound:
    return NotFound("Escalation policy not found", details={"policy_id": str(policy_id)})


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"The project has an escalation policy named {name!r} already",
        code="escalation_policy_name_taken",
        details={"name": name},
    )


def _actor_user(principal: Principal) -> UUID | None:
    return principal.user_id if principal.kind == "user" else None


def _steps_json(steps: list[Step]) -> list[dict[str, Any]]:
    return [step.model_dump(mode="json") for step in steps]


def check_targets(cur: Cursor, org_id: UUID, project_id: UUID, steps: list[Step]) -> None:
    """Every target exists where it must (see the module); else a 422 naming each bad one."""
    wanted: dict[str, set[UUID]] = {"user": set(), "schedule": set(), "contact_point": set()}
    for step in steps:
        for target in step.targets:
            wanted[target.type].add(target.id)
    found = {
        "user": store.members(cur, org_id, sorted(wanted["user"])) if wanted["user"] else set(),
        "schedule": store.schedules(cur, org_id, sorted(wanted["schedule"])) if wanted["schedule"] else set(),
        "contact_point": (
            store.contact_points(cur, project_id, sorted(wanted["contact_point"])) if wanted["contact_point"] else set()
        ),
    }
    why = {
        "user": ("not_a_member", "not a member of the organization"),
        "schedule": ("unknown_schedule", "no such on-call schedule in the organization"),
        "contact_point": ("unknown_contact_point", "no such contact point in the project"),
    }
    problems = [
        {"loc": ["body", "steps", str(i), "targets", str(j), "id"], "type": why[t.type][0], "message": why[t.type][1]}
        for i, step in enumerate(steps)
        for j, t in enumerate(step.targets)
        if t.id not in found[t.type]
    ]
    if problems:
        raise Unprocessable("The request is invalid", code="validation_error", details=problems)


def _audit(cur: Cursor, principal: Principal, action: str, org_id: UUID, row: dict[str, Any], **details: Any) -> None:
    audit.record(
        cur,
        principal,
        f"escalation_policy.{action}",
        org_id=org_id,
        target_type="escalation_policy",
        target_id=row["id"],
        details={"project_id": str(row["project_id"]), "name": row["name"], **details},
    )


# --- writes -------------------------------------------------------------------------------------------------------


def create_policy(
    principal: Principal, project_id: UUID, body: EscalationPolicyIn, now: datetime | None = None
) -> EscalationPolicy:
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_write(cur, principal, project_id)
        check_targets(cur, org_id, project_id, body.steps)
        store.lock_project(cur, project_id)
        count = store.count_live(cur, project_id)
        if count >= MAX_POLICIES_PER_PROJECT:
            raise Conflict(
                f"This project has {count} escalation policies, the most it may have; delete one first",
                code="escalation_policy_limit_reached",
                details={"policies": count, "limit": MAX_POLICIES_PER_PROJECT},
            )
        if store.name_taken(cur, project_id, body.name):
            raise _name_taken(body.name)
        row = store.insert(
            cur,
            org_id=org_id,
            project_id=project_id,
            name=body.name,
            description=body.description,
            steps=_steps_json(body.steps),
            repeat=body.repeat,
            ack_timeout_minutes=body.ack_timeout_minutes,
            created_by=_actor_user(principal),
            now=now,
        )
        _audit(cur, principal, "create", org_id, row, steps=len(body.steps), repeat=body.repeat)
    logger.info("escalation policy created", extra={"policy_id": str(row["id"]), "project_id": str(project_id)})
    return to_policy(row)


def update_policy(
    principal: Principal, project_id: UUID, policy_id: UUID, body: EscalationPolicyPatch, now: datetime | None = None
) -> EscalationPolicy:
    """PATCH: the fields given replace theirs. Runs in progress keep the policy they started with."""
    now = now or datetime.now(UTC)
    given = body.model_dump(exclude_unset=True, mode="json")
    with transaction() as cur:
        org_id = authorize_write(cur, principal, project_id)
        store.lock_project(cur, project_id)
        row = store.get_for_update(cur, project_id, policy_id)
        if row is None:
            raise _not_found(policy_id)
        changes = {key: value for key, value in given.items() if row[key] != value}
        if not changes:
            return to_policy(row)
        steps = body.steps if body.steps is not None else [Step.model_validate(s) for s in row["steps"]]
        repeat = changes.get("repeat", row["repeat"])
        if repeat and not any(step.wait_minutes for step in steps):
            raise Unprocessable(
                "The request is invalid",
                code="validation_error",
                details=[
                    {
                        "loc": ["body", "repeat" if "repeat" in changes else "steps"],
                        "type": "value_error",
                        "message": "a policy that repeats needs a wait_minutes above 0 in at least one step",
                    }
                ],
            )
        if "steps" in changes and body.steps is not None:
            check_targets(cur, org_id, project_id, body.steps)
        if "name" in changes and store.name_taken(cur, project_id, changes["name"], but=policy_id):
            raise _name_taken(changes["name"])
        updated = store.update(cur, policy_id, changes, now)
        _audit(cur, principal, "update", org_id, updated, changed=sorted(changes), previous_name=row["name"])
    logger.info("escalation policy updated", extra={"policy_id": str(policy_id), "changed": sorted(changes)})
    return to_policy(updated)


def delete_policy(
    principal: Principal, project_id: UUID, policy_id: UUID, now: datetime | None = None
) -> EscalationPolicyDeleted:
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_write(cur, principal, project_id)
        row = store.get_for_update(cur, project_id, policy_id)
        if row is None:
            raise _not_found(policy_id)
        store.soft_delete(cur, policy_id, now)
        _audit(cur, principal, "delete", org_id, row)
    logger.info("escalation policy deleted", extra={"policy_id": str(policy_id)})
    return EscalationPolicyDeleted(id=policy_id)


# --- reads --------------------------------------------------------------------------------------------------------


def get_policy(principal: Principal, project_id: UUID, policy_id: UUID) -> EscalationPolicy:
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_read(cur, principal, project_id)
        row = store.get(cur, project_id, policy_id)
    if row is None:
        raise _not_found(policy_id)
    return to_policy(row)


def list_policies(
    principal: Principal, project_id: UUID, cursor: str | None, limit: int
) -> tuple[list[EscalationPolicy], str | None]:
    """The project's policies, newest first."""
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_read(cur, principal, project_id)
        rows = store.list_page(cur, project_id, position["after_ts"], position["after_id"], limit + 1)
    rows, next_cursor = page(rows, limit, time_position())
    return [to_policy(row) for row in rows], next_cursor
