"""The routing API: the notification policy, silences, the notification log and the alert groups of a project.

Who may do what: reading is for anyone who may read the project's telemetry (viewer and up, or a ``read`` API
key); changing the policy or silences is for members and up, or an API key of the project with the ``admin``
scope (a deploy script silencing its own alerts). Another organization's project is a 404. Every change is
audited in its transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from observai import audit
from observai.alerts import routing_store
from observai.alerts.matchers import Matcher, all_match
from observai.alerts.policy import Inhibitor, check_document
from observai.alerts.policy_models import NotificationPolicy, PolicyDocument
from observai.alerts.routing import changed_silences, project_policy
from observai.alerts.routing_models import AlertGroup, GroupMember, NotificationLogEntry
from observai.alerts.silence_models import Silence, SilenceIn, SilencePatch, SilenceStatus, status_at
from observai.alerts.timers import send_timers
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction, transaction
from observai.errors import Conflict, NotFound, Unprocessable, invalid_field
from observai.pagination import IdCursor, TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_configuration, authorize_telemetry

# --- the policy ------------------------------------------------------------------------------------------------


def _policy_out(project_id: UUID, row: dict[str, Any] | None) -> NotificationPolicy:
    if row is None:
        return NotificationPolicy(
            project_id=project_id, version=0, is_default=True, updated_at=None, updated_by=None, policy=PolicyDocument()
        )
    return NotificationPolicy(
        project_id=project_id,
        version=row["version"],
        is_default=False,
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        policy=PolicyDocument.model_validate(row["policy"]),
    )


def get_policy(principal: Principal, project_id: UUID) -> NotificationPolicy:
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        row = routing_store.get_policy(cur, project_id)
    return _policy_out(project_id, row)


def put_policy(principal: Principal, project_id: UUID, document: PolicyDocument) -> NotificationPolicy:
    """Replace the project's policy as a whole (checked as a whole first); the version goes up by one."""
    problems = check_document(document)
    if problems:
        raise Unprocessable("The notification policy is invalid", code="validation_error", details=problems)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        row = routing_store.put_policy(
            cur,
            org_id=org_id,
            project_id=project_id,
            policy=document.model_dump(mode="json", by_alias=True),
            by=principal.user_id,
        )
        audit.record(
            cur,
            principal,
            "notification_policy.update",
            org_id=org_id,
            target_type="project",
            target_id=project_id,
            details={"version": row["version"], "routes": _count_routes(document)},
        )
    return _policy_out(project_id, row)


def _count_routes(document: PolicyDocument) -> int:
    stack, count = [document.route], 0
    while stack:
        route = stack.pop()
        count += 1
        stack.extend(route.routes)
    return count


# --- silences --------------------------------------------------------------------------------------------------


def _silence_out(row: dict[str, Any], now: datetime) -> Silence:
    return Silence.model_validate({**row, "status": status_at(row, now)})


def create_silence(principal: Principal, project_id: UUID, body: SilenceIn, now: datetime | None = None) -> Silence:
    now = now or datetime.now(UTC)
    starts_at = body.starts_at or now
    if body.ends_at <= starts_at:
        raise invalid_field(["body", "ends_at"], "ends_before_start", "ends_at must be after starts_at")
    if body.ends_at <= now:
        raise invalid_field(["body", "ends_at"], "in_the_past", "ends_at is in the past: the silence would never hold")
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        row = routing_store.insert_silence(
            cur,
            org_id=org_id,
            project_id=project_id,
            matchers=[m.model_dump() for m in body.matchers],
            starts_at=starts_at,
            ends_at=body.ends_at,
            comment=body.comment,
            created_by=principal.user_id,
            created_by_key_id=principal.key_id if principal.kind == "api_key" else None,
            expire_when_resolved=body.expire_when_resolved,
            now=now,
        )
        audit.record(
            cur,
            principal,
            "silence.create",
            org_id=org_id,
            target_type="silence",
            target_id=row["id"],
            details={
                "project_id": str(project_id),
                "matchers": [m.text() for m in body.matchers],
                "starts_at": starts_at.isoformat(),
                "ends_at": body.ends_at.isoformat(),
            },
        )
    return _silence_out(row, now)


def get_silence(principal: Principal, project_id: UUID, silence_id: UUID, now: datetime | None = None) -> Silence:
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        row = routing_store.get_silence(cur, project_id, silence_id)
    if row is None:
        raise NotFound("Silence not found", details={"silence_id": str(silence_id)})
    return _silence_out(row, now or datetime.now(UTC))


def list_silences(
    principal: Principal,
    project_id: UUID,
    status: SilenceStatus | None,
    cursor: str | None,
    limit: int,
    now: datetime | None = None,
) -> tuple[list[Silence], str | None]:
    now = now or datetime.now(UTC)
    position = time_cursor_params(decode_cursor(cursor, TimeCursor))
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        rows = routing_store.list_silences(cur, project_id, status=status, now=now, limit=limit + 1, **position)
    rows, next_cursor = page(rows, limit, time_position())
    return [_silence_out(row, now) for row in rows], next_cursor


def update_silence(
    principal: Principal, project_id: UUID, silence_id: UUID, patch: SilencePatch, now: datetime | None = None
) -> Silence:
    """Extend or shorten it, edit its comment or matchers (an active silence's too: documented), or move the start
    of a pending one. An expired silence is kept as it was (409): create a new one."""
    now = now or datetime.now(UTC)
    changes = patch.model_dump(exclude_unset=True, exclude_none=True)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        row = routing_store.get_silence(cur, project_id, silence_id, lock=True)
        if row is None:
            raise NotFound("Silence not found", details={"silence_id": str(silence_id)})
        status = status_at(row, now)
        if status == "expired":
            raise Conflict("This silence has expired; create a new one", code="silence_expired")
        if "starts_at" in changes and status != "pending":
            raise invalid_field(["body", "starts_at"], "started", "the silence has started: its start cannot move")
        starts_at, ends_at = changes.get("starts_at", row["starts_at"]), changes.get("ends_at", row["ends_at"])
        if ends_at <= starts_at:
            raise invalid_field(["body", "ends_at"], "ends_before_start", "ends_at must be after starts_at")
        if ends_at <= now:
            raise invalid_field(["body", "ends_at"], "in_the_past", "ends_at is in the past: to end it now, DELETE it")
        if patch.matchers is not None:
            changes["matchers"] = [m.model_dump() for m in patch.matchers]
        updated = routing_store.update_silence(cur, silence_id, changes, now) if changes else row
        timers: dict[UUID, datetime | None] = {}
        if changes:
            # What it mutes may have changed: the groups it touches look again now.
            timers = changed_silences(cur, project_id, now)
        audit.record(
            cur,
            principal,
            "silence.update",
            org_id=org_id,
            target_type="silence",
            target_id=silence_id,
            details={"project_id": str(project_id), "fields": sorted(changes)},
        )
    send_timers(timers, now)
    return _silence_out(updated, now)


def expire_silence(principal: Principal, project_id: UUID, silence_id: UUID, now: datetime | None = None) -> Silence:
    """End the silence now (the row is kept, expired); an expired one is returned as it is."""
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        row = routing_store.get_silence(cur, project_id, silence_id, lock=True)
        if row is None:
            raise NotFound("Silence not found", details={"silence_id": str(silence_id)})
        if status_at(row, now) == "expired":
            return _silence_out(row, now)
        row = routing_store.update_silence(cur, silence_id, {"expired_at": now}, now)
        timers = changed_silences(cur, project_id, now)
        audit.record(
            cur,
            principal,
            "silence.expire",
            org_id=org_id,
            target_type="silence",
            target_id=silence_id,
            details={"project_id": str(project_id)},
        )
    send_timers(timers, now)
    return _silence_out(row, now)


# --- the notification log and the groups -------------------------------------------------------------------------


def list_log(
    principal: Principal,
    project_id: UUID,
    group_id: UUID | None,
    incident_id: UUID | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[NotificationLogEntry], str | None]:
    before = decode_cursor(cursor, IdCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        rows = routing_store.list_log(
            cur,
            project_id,
            group_id=group_id,
            incident_id=incident_id,
            before_id=before.before if before else None,
            limit=limit + 1,
        )
    rows, next_cursor = page(rows, limit, lambda row: IdCursor(before=row["id"]))
    return [NotificationLogEntry.model_validate(row) for row in rows], next_cursor


def list_groups(
    principal: Principal, project_id: UUID, cursor: str | None, limit: int
) -> tuple[list[AlertGroup], str | None]:
    """The active groups with their alerts, each with why it is muted now (the silences, inhibition)."""
    now = datetime.now(UTC)
    position = time_cursor_params(decode_cursor(cursor, TimeCursor))
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        rows = routing_store.list_groups(cur, project_id, limit=limit + 1, **position)
        rows, next_cursor = page(rows, limit, time_position())
        members = routing_store.alerts_of_groups(cur, [row["id"] for row in rows]) if rows else []
        silences = routing_store.active_silences(cur, project_id, now) if members else []
        policy = project_policy(cur, project_id) if members else None
        rules = policy.document.inhibit_rules if policy else []
        inhibitor = Inhibitor(rules, routing_store.firing_alerts(cur, project_id)) if rules else None
    matchers = [(s["id"], [Matcher.model_construct(**m) for m in s["matchers"]]) for s in silences]
    by_group: dict[UUID, list[GroupMember]] = {}
    for member in members:
        labels = member["labels"]
        shown = GroupMember.model_validate(
            {
                **member,
                "silenced_by": [sid for sid, ms in matchers if all_match(ms, labels)],
                "inhibited": inhibitor.inhibits(labels, str(member["instance_id"])) if inhibitor else False,
            }
        )
        by_group.setdefault(member["group_id"], []).append(shown)
    groups = [
        AlertGroup.model_validate({**row, "notifications": row["flush_seq"], "alerts": by_group.get(row["id"], [])})
        for row in rows
    ]
    return groups, next_cursor
