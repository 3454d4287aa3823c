"""Incidents over the API: list and read them, act on them (acknowledge, unacknowledge, snooze, resolve, assign,
comment, auto-resolve on or off), read their timeline.

Who may do what:

* read (list, get, timeline, comments): viewers and up, or an API key of the project with the ``read`` scope;
* act: members and up, or an API key of the project with the ``admin`` scope (a chat bot acknowledging pages);
  a ``read`` key gets 403 ``scope_missing``.

Another organization's project, another project's key, and an incident of another project get 404.

States (as PagerDuty): ``triggered → acknowledged → resolved``, and ``acknowledged → triggered`` again by
unacknowledge or when a snooze ends. Acknowledging an acknowledged incident is an idempotent 200 (nothing changes,
nothing is recorded: two people pressing "ack" at once both succeed, the first is the acknowledger). A resolved
incident is final: every action but a comment is a 409 ``incident_resolved``. Each action takes the incident's row
lock, updates it, appends its timeline event with the actor, emits its outbox event and its audit record, in one
transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from observai import audit
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, InvalidInput, NotFound, invalid_field
from observai.incidents import lifecycle, store, timeline
from observai.incidents.models import (
    MAX_SNOOZE_S,
    AssignIn,
    Comment,
    CommentIn,
    Incident,
    IncidentAlert,
    IncidentDetail,
    IncidentFilters,
    IncidentPatch,
    ResolveIn,
    SnoozeIn,
    TimelineEvent,
)
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_configuration, authorize_telemetry


class EventCursor(BaseModel):
    """Position in a timeline, oldest first: the last event id seen."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    after: int = Field(gt=0, lt=2**63)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def to_incident(row: dict[str, Any]) -> Incident:
    return Incident.model_validate(row)


def _actor_id(principal: Principal) -> UUID | None:
    return principal.user_id if principal.kind == "user" else principal.key_id


# --- who may act ---------------------------------------------------------------------------------------------


def _not_found(incident_id: UUID) -> NotFound:
    return NotFound("Incident not found", details={"incident_id": str(incident_id)})


def _resolved(incident: dict[str, Any]) -> Conflict:
    return Conflict(
        f"Incident #{incident['number']} is resolved: it takes comments only",
        code="incident_resolved",
        details={"incident_id": str(incident["id"]), "status": "resolved"},
    )


@contextmanager
def _acting_on(
    principal: Principal, project_id: UUID, incident_id: UUID, *, link_may: bool = False
) -> Iterator[tuple[Cursor, dict[str, Any]]]:
    """One transaction for one action: the permission check, then the incident's row lock."""
    with transaction() as cur:
        if principal.kind == "link":
            # A signed action link that names no person (observai.notify.actions makes it once the token verified):
            # it acts on its one project's incidents, and only where ``link_may`` (acknowledge, resolve).
            if not link_may or principal.project_id != project_id:
                raise _not_found(incident_id)
        else:
            authorize_configuration(cur, principal, project_id)
        incident = store.lock(cur, project_id, incident_id)
        if incident is None:
            raise _not_found(incident_id)
        yield cur, incident


def _record(
    cur: Cursor,
    principal: Principal,
    incident: dict[str, Any],
    *,
    kind: str,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """The action's timeline event (with its actor) and its audit record, in the action's transaction."""
    timeline.record(
        cur,
        incident,
        kind=kind,
        at=now,
        actor=principal,
        details=details,
    )
    audit.record(
        cur,
        principal,
        f"incident.{kind}",
        org_id=incident["org_id"],
        target_type="incident",
        target_id=incident["id"],
        details={"project_id": str(incident["project_id"]), "number": incident["number"], **(details or {})},
    )


def _emit(cur: Cursor, incident: dict[str, Any], type: str, now: datetime, **extra: Any) -> None:
    lifecycle.emit_incident_event(cur, incident, type, now, **extra)


# --- reads ---------------------------------------------------------------------------------------------------


def parse_filters(
    principal: Principal,
    *,
    status: list[str] | None = None,
    severity: list[str] | None = None,
    service: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    assignee: str | None = None,
) -> IncidentFilters:
    """The list's query parameters as filters (``status``/``severity``: any of those given); ``assignee`` a user id,
    ``me`` (the calling person) or ``none`` (unassigned)."""
    if start is not None and end is not None and end <= start:
        raise InvalidInput("to must be after from", code="invalid_range", details={"loc": ["query", "to"]})
    filters = IncidentFilters(
        statuses=sorted(set(status or [])),
        severities=sorted(set(severity or [])),
        service=service,
        start=start,
        end=end,
    )
    if assignee == "none":
        filters.unassigned = True
    elif assignee == "me":
        if principal.kind != "user":
            raise InvalidInput(
                "assignee=me needs a person's token; an API key passes the user id",
                details={"loc": ["query", "assignee"]},
            )
        filters.assignee_id = principal.user_id
    elif assignee is not None:
        try:
            filters.assignee_id = UUID(assignee)
        except ValueError as exc:
            raise InvalidInput("assignee is a user id, me or none", details={"loc": ["query", "assignee"]}) from exc
    return filters


def list_incidents(
    principal: Principal,
    project_id: UUID,
    *,
    status: list[str] | None = None,
    severity: list[str] | None = None,
    service: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    assignee: str | None = None,
    cursor: str | None = None,
    limit: int,
) -> tuple[list[Incident], str | None]:
    """The project's incidents, most recently triggered first, filtered (see ``parse_filters``)."""
    filters = parse_filters(
        principal, status=status, severity=severity, service=service, start=start, end=end, assignee=assignee
    )
    position = time_cursor_params(decode_cursor(cursor, TimeCursor))
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        rows = store.list_page(cur, project_id, filters, position["after_ts"], position["after_id"], limit + 1)
    rows, next_cursor = page(rows, limit, time_position("triggered_at"))
    return [to_incident(row) for row in rows], next_cursor


def get_incident(principal: Principal, project_id: UUID, incident_id: UUID) -> IncidentDetail:
    """The incident with its alerts, each with the rule definition of the version it fired under."""
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        row = store.get(cur, project_id, incident_id)
        if row is None:
            raise _not_found(incident_id)
        alerts = store.alerts_of(cur, incident_id)
    return IncidentDetail(**row, alerts=[IncidentAlert.model_validate(alert) for alert in alerts])


def _events(
    principal: Principal, project_id: UUID, incident_id: UUID, cursor: str | None, limit: int, kind: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    after = decode_cursor(cursor, EventCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        if store.get(cur, project_id, incident_id) is None:
            raise _not_found(incident_id)
        rows = store.events_page(cur, incident_id, after.after if after else None, limit + 1, kind=kind)
    return page(rows, limit, lambda row: EventCursor(after=row["id"]))


def get_timeline(
    principal: Principal, project_id: UUID, incident_id: UUID, cursor: str | None, limit: int
) -> tuple[list[TimelineEvent], str | None]:
    """Every event of the incident, oldest first."""
    rows, next_cursor = _events(principal, project_id, incident_id, cursor, limit, None)
    return [TimelineEvent.model_validate(row) for row in rows], next_cursor


def list_comments(
    principal: Principal, project_id: UUID, incident_id: UUID, cursor: str | None, limit: int
) -> tuple[list[Comment], str | None]:
    """The incident's comments, oldest first (they are its timeline events of kind ``comment``)."""
    rows, next_cursor = _events(principal, project_id, incident_id, cursor, limit, "comment")
    return [
        Comment(
            id=row["id"],
            at=row["at"],
            actor_type=row["actor_type"],
            actor_id=row["actor_id"],
            body=row["details"]["body"],
        )
        for row in rows
    ], next_cursor


# --- actions -------------------------------------------------------------------------------------------------


def acknowledge(
    principal: Principal,
    project_id: UUID,
    incident_id: UUID,
    now: datetime | None = None,
    *,
    via: str | None = None,
) -> Incident:
    """triggered → acknowledged. Already acknowledged: unchanged (idempotent). Resolved: 409.

    ``via`` says where the action came from when not the API (``link``: a signed e-mail link, ``slack``: a Slack
    button); it is kept in the timeline event and the audit record."""
    now = _now(now)
    with _acting_on(principal, project_id, incident_id, link_may=True) as (cur, incident):
        if incident["status"] == "resolved":
            raise _resolved(incident)
        if incident["status"] == "acknowledged":
            return to_incident(incident)
        updated = store.update(
            cur, incident["id"], now, status="acknowledged", acknowledged_at=now, acknowledged_by=_actor_id(principal)
        )
        _record(cur, principal, incident, kind="acknowledged", now=now, details={"via": via} if via else None)
        _emit(cur, updated, "incident.acknowledged", now)
    return to_incident(updated)


def unacknowledge(principal: Principal, project_id: UUID, incident_id: UUID, now: datetime | None = None) -> Incident:
    """acknowledged (snoozed or not) → triggered: it pages again (incident.triggered). Triggered: 409."""
    now = _now(now)
    with _acting_on(principal, project_id, incident_id) as (cur, incident):
        if incident["status"] == "resolved":
            raise _resolved(incident)
        if incident["status"] != "acknowledged":
            raise Conflict(
                f"Incident #{incident['number']} is not acknowledged",
                code="incident_not_acknowledged",
                details={"incident_id": str(incident_id), "status": incident["status"]},
            )
        updated = store.update(
            cur, incident["id"], now, status="triggered", acknowledged_at=None, acknowledged_by=None, snoozed_until=None
        )
        _record(cur, principal, incident, kind="unacknowledged", now=now)
        _emit(cur, updated, "incident.triggered", now, reason="unacknowledged")
    return to_incident(updated)


def snooze(
    principal: Principal, project_id: UUID, incident_id: UUID, body: SnoozeIn, now: datetime | None = None
) -> Incident:
    """Acknowledged until ``until`` (or now + ``duration``); then the sweep triggers it again. Snoozing a
    triggered incident acknowledges it; snoozing a snoozed one moves its end."""
    now = _now(now)
    until = body.until if body.until is not None else now + timedelta(seconds=body.duration or 0)
    if not now < until <= now + timedelta(seconds=MAX_SNOOZE_S):
        raise invalid_field(["body", "until"], "snooze_range", "until is in the future, at most 7 days ahead")
    with _acting_on(principal, project_id, incident_id) as (cur, incident):
        if incident["status"] == "resolved":
            raise _resolved(incident)
        was_triggered = incident["status"] == "triggered"
        columns: dict[str, Any] = {"snoozed_until": until}
        if was_triggered:
            columns.update(status="acknowledged", acknowledged_at=now, acknowledged_by=_actor_id(principal))
        updated = store.update(cur, incident["id"], now, **columns)
        _record(cur, principal, incident, kind="snoozed", now=now, details={"until": until.isoformat()})
        if was_triggered:
            _emit(cur, updated, "incident.acknowledged", now, snoozed_until=until.isoformat())
    return to_incident(updated)


def resolve(
    principal: Principal,
    project_id: UUID,
    incident_id: UUID,
    body: ResolveIn | None,
    now: datetime | None = None,
    *,
    via: str | None = None,
) -> Incident:
    """triggered or acknowledged → resolved, by hand, with an optional note (kept: what was wrong, what fixed it).
    ``via`` as for ``acknowledge``."""
    now = _now(now)
    note = body.note.strip() if body is not None and body.note and body.note.strip() else None
    with _acting_on(principal, project_id, incident_id, link_may=True) as (cur, incident):
        if incident["status"] == "resolved":
            raise _resolved(incident)
        updated = lifecycle.resolve(
            cur, incident, now=now, by=_actor_id(principal), reason="manual", actor=principal, note=note, via=via
        )
        audit.record(
            cur,
            principal,
            "incident.resolved",
            org_id=incident["org_id"],
            target_type="incident",
            target_id=incident["id"],
            details={
                "project_id": str(project_id),
                "number": incident["number"],
                "note": note is not None,
                **({"via": via} if via else {}),
            },
        )
    return to_incident(updated)


def assign(
    principal: Principal, project_id: UUID, incident_id: UUID, body: AssignIn, now: datetime | None = None
) -> Incident:
    """Assign to a member of the organization (any role), or unassign (null). Unchanged: nothing is recorded."""
    now = _now(now)
    with _acting_on(principal, project_id, incident_id) as (cur, incident):
        if incident["status"] == "resolved":
            raise _resolved(incident)
        if body.user_id is not None and not store.is_member(cur, incident["org_id"], body.user_id):
            raise invalid_field(
                ["body", "user_id"], "not_a_member", "the assignee must be a member of the incident's organization"
            )
        if incident["assignee_id"] == body.user_id:
            return to_incident(incident)
        updated = store.update(cur, incident["id"], now, assignee_id=body.user_id)
        _record(
            cur,
            principal,
            incident,
            kind="assigned",
            now=now,
            details={
                "assignee_id": str(body.user_id) if body.user_id else None,
                "previous_assignee_id": str(incident["assignee_id"]) if incident["assignee_id"] else None,
            },
        )
    return to_incident(updated)


def add_comment(
    principal: Principal, project_id: UUID, incident_id: UUID, body: CommentIn, now: datetime | None = None
) -> Comment:
    """A comment on the timeline; resolved incidents take comments too (the post-mortem goes on)."""
    now = _now(now)
    with _acting_on(principal, project_id, incident_id) as (cur, incident):
        event_id = timeline.record(
            cur,
            incident,
            kind="comment",
            at=now,
            actor=principal,
            details={"body": body.body},
        )
        audit.record(
            cur,
            principal,
            "incident.comment",
            org_id=incident["org_id"],
            target_type="incident",
            target_id=incident["id"],
            details={"project_id": str(project_id), "number": incident["number"], "event_id": event_id},
        )
    return Comment(id=event_id, at=now, actor_type=principal.kind, actor_id=_actor_id(principal), body=body.body)


def update_incident(
    principal: Principal, project_id: UUID, incident_id: UUID, body: IncidentPatch, now: datetime | None = None
) -> Incident:
    """Turn auto-resolve on or off (open incidents: turned on while every alert of the incident has resolved, it
    resolves now), and write or clear the resolution note (also once resolved: the post-mortem goes on; a resolved
    incident's similar-incidents embedding is then made again). Unchanged: nothing is recorded."""
    now = _now(now)
    fields = body.model_fields_set
    with _acting_on(principal, project_id, incident_id) as (cur, incident):
        updated = incident
        if "auto_resolve" in fields:
            if incident["status"] == "resolved":
                raise _resolved(incident)
            if incident["auto_resolve"] != body.auto_resolve:
                updated = store.update(cur, incident["id"], now, auto_resolve=body.auto_resolve)
                _record(
                    cur, principal, incident, kind="auto_resolve_changed", now=now,
                    details={"auto_resolve": body.auto_resolve},
                )  # fmt: skip
                if body.auto_resolve:
                    total, firing = store.alert_counts(cur, incident["id"])
                    if total and not firing:
                        updated = lifecycle.resolve(cur, updated, now=now, reason="all alerts resolved")
        if "resolution_note" in fields:
            note = (body.resolution_note or "").strip() or None
            if note != updated["resolution_note"]:
                updated = store.update(cur, incident["id"], now, resolution_note=note)
                timeline.record(
                    cur, incident, kind="resolution_note_changed", at=now, actor=principal, details={"note": note}
                )
                audit.record(
                    cur, principal, "incident.resolution_note_changed", org_id=incident["org_id"],
                    target_type="incident", target_id=incident["id"],
                    details={"project_id": str(project_id), "number": incident["number"], "note": note is not None},
                )  # fmt: skip
                if updated["status"] == "resolved":
                    from observai.ai import similar

                    similar.on_resolution_note_changed(cur, updated, now)
    return to_incident(updated)
