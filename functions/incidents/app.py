"""Incidents of a project: list and read them, acknowledge, unacknowledge, snooze, resolve, assign, comment, turn
auto-resolve on or off, and read their timeline and their notifications' delivery records.

Read with a user token (viewer and up) or an API key with the ``read`` scope; act as a member and up, or with an
API key with the ``admin`` scope. Thin: parse, one call, envelope.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.incidents import service
from observai.incidents.models import (
    AssignIn,
    Comment,
    CommentIn,
    Incident,
    IncidentDetail,
    IncidentPatch,
    IncidentStatus,
    ResolveIn,
    Severity,
    SnoozeIn,
    TimelineEvent,
)
from observai.notify import delivery_records
from observai.notify.delivery_records import NotificationDelivery
from observai.pagination import DEFAULT_LIMIT
from observai.timetext import DateTimeText

app = create_resolver()

INCIDENT = "/v1/projects/<project_id>/incidents/<incident_id>"
RESOLVED = "The incident is resolved: it takes comments only (incident_resolved)"

Statuses = Annotated[
    list[IncidentStatus] | None,
    Query(
        max_length=3,
        description="triggered, acknowledged, resolved: the parameter repeated (status=a&status=b) or a comma list",
    ),
]
Severities = Annotated[
    list[Severity] | None,
    Query(max_length=4, description="critical, error, warning, info: repeated or a comma list"),
]
From = Annotated[DateTimeText | None, Query(alias="from", description="RFC 3339: triggered at or after")]
To = Annotated[DateTimeText | None, Query(alias="to", description="RFC 3339: triggered before")]
Assignee = Annotated[
    str | None,
    Query(
        pattern=r"^(me|none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$",
        description="A user id, me (the calling person) or none (unassigned)",
    ),
]


@app.get(
    "/v1/projects/<project_id>/incidents",
    tags=["incidents"],
    responses=route_responses(200, e400="from after to (invalid_range), or assignee=me with an API key"),
)
def list_incidents(
    caller: CurrentPrincipal,
    project_id: UUID,
    status: Statuses = None,
    severity: Severities = None,
    service_: Annotated[str | None, Query(alias="service", min_length=1, max_length=512)] = None,
    from_: From = None,
    to: To = None,
    assignee: Assignee = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[Incident]]:
    """The project's incidents, most recently triggered first; every filter given must match."""
    items, next_cursor = service.list_incidents(
        caller,
        project_id,
        status=status,
        severity=severity,
        service=service_,
        start=from_,
        end=to,
        assignee=assignee,
        cursor=cursor,
        limit=limit,
    )
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(INCIDENT, tags=["incidents"])
def get_incident(caller: CurrentPrincipal, project_id: UUID, incident_id: UUID) -> Envelope[IncidentDetail]:
    """The incident with its alerts, each with the rule's definition at the version it fired under."""
    return ok(service.get_incident(caller, project_id, incident_id))


@app.patch(
    INCIDENT,
    tags=["incidents"],
    responses=route_responses(200, e409="auto_resolve of a resolved incident (incident_resolved)"),
)
def update_incident(
    caller: CurrentPrincipal, project_id: UUID, incident_id: UUID, body: Annotated[IncidentPatch, Body()]
) -> Envelope[Incident]:
    """Turn auto-resolve on or off (turned on while every alert of the incident has resolved: resolved now), and
    write or clear the resolution note, also once resolved (the post-mortem goes on)."""
    return ok(service.update_incident(caller, project_id, incident_id, body))


@app.post(f"{INCIDENT}/acknowledge", tags=["incidents"], responses=route_responses(200, e409=RESOLVED))
def acknowledge(caller: CurrentPrincipal, project_id: UUID, incident_id: UUID) -> Envelope[Incident]:
    """Triggered → acknowledged: someone is on it. Already acknowledged: 200, unchanged."""
    return ok(service.acknowledge(caller, project_id, incident_id))


@app.post(
    f"{INCIDENT}/unacknowledge",
    tags=["incidents"],
    responses=route_responses(200, e409=f"{RESOLVED}, or it is not acknowledged (incident_not_acknowledged)"),
)
def unacknowledge(caller: CurrentPrincipal, project_id: UUID, incident_id: UUID) -> Envelope[Incident]:
    """Acknowledged (or snoozed) → triggered: it pages again."""
    return ok(service.unacknowledge(caller, project_id, incident_id))


@app.post(f"{INCIDENT}/snooze", tags=["incidents"], responses=route_responses(200, e409=RESOLVED))
def snooze(
    caller: CurrentPrincipal, project_id: UUID, incident_id: UUID, body: Annotated[SnoozeIn, Body()]
) -> Envelope[Incident]:
    """Acknowledged until `until` (or for `duration`), then triggered again. At most 7 days."""
    return ok(service.snooze(caller, project_id, incident_id, body))


@app.post(f"{INCIDENT}/resolve", tags=["incidents"], responses=route_responses(200, e409=RESOLVED))
def resolve(
    caller: CurrentPrincipal,
    project_id: UUID,
    incident_id: UUID,
    body: Annotated[ResolveIn | None, Body()] = None,
) -> Envelope[Incident]:
    """Resolve by hand, with an optional note (what was wrong, what fixed it). Resolved is final."""
    return ok(service.resolve(caller, project_id, incident_id, body))


@app.post(
    f"{INCIDENT}/assign",
    tags=["incidents"],
    responses=route_responses(200, e409=RESOLVED, e422="user_id is not a member of the organization"),
)
def assign(
    caller: CurrentPrincipal, project_id: UUID, incident_id: UUID, body: Annotated[AssignIn, Body()]
) -> Envelope[Incident]:
    """Assign to a member of the organization, or unassign with null."""
    return ok(service.assign(caller, project_id, incident_id, body))


@app.post(f"{INCIDENT}/comments", status_code=201, tags=["incidents"])
def add_comment(
    caller: CurrentPrincipal, project_id: UUID, incident_id: UUID, body: Annotated[CommentIn, Body()]
) -> Envelope[Comment]:
    """A comment on the incident's timeline (at most 10,000 characters); resolved incidents take comments too."""
    return ok(service.add_comment(caller, project_id, incident_id, body))


@app.get(f"{INCIDENT}/comments", tags=["incidents"])
def list_comments(
    caller: CurrentPrincipal, project_id: UUID, incident_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[Comment]]:
    """The incident's comments, oldest first."""
    items, next_cursor = service.list_comments(caller, project_id, incident_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(f"{INCIDENT}/timeline", tags=["incidents"])
def get_timeline(
    caller: CurrentPrincipal, project_id: UUID, incident_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[TimelineEvent]]:
    """Every event of the incident, oldest first: alerts firing and resolving, notifications, acknowledgments,
    snoozes, assignments, comments, resolution; each with its actor (user, API key or system) and time."""
    items, next_cursor = service.get_timeline(caller, project_id, incident_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(f"{INCIDENT}/notifications", tags=["incidents"])
def list_notifications(
    caller: CurrentPrincipal, project_id: UUID, incident_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[NotificationDelivery]]:
    """The notifications of the incident, oldest first: each message to a contact point or a person (channel,
    event, what sent it: a route or an escalation step), its attempts, status, the receiver's answer and times."""
    items, next_cursor = delivery_records.list_for_incident(caller, project_id, incident_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


lambda_handler = lambda_handler_for(app)
