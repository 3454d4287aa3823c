"""Alert routing over the API: the notification policy, silences, the notification log, the alert groups.

Viewers and read keys read; members and up (or an admin key of the project) change the policy and silences.
Thin: parse, one call, envelope.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from observai.alerts import routing_service as service
from observai.alerts.policy_models import NotificationPolicy, PolicyDocument
from observai.alerts.routing_models import AlertGroup, NotificationLogEntry
from observai.alerts.silence_models import Silence, SilenceIn, SilencePatch, SilenceStatus
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT

app = create_resolver()
TAGS = ["alert routing"]


@app.get("/v1/projects/<project_id>/notification-policy", tags=TAGS)
def get_notification_policy(caller: CurrentPrincipal, project_id: UUID) -> Envelope[NotificationPolicy]:
    """The project's notification policy: its route tree, mute time intervals and inhibition rules. A project that
    never set one has the default (one root route grouping by alertname; 30s / 5m / 4h), version 0."""
    return ok(service.get_policy(caller, project_id))


@app.put("/v1/projects/<project_id>/notification-policy", tags=TAGS)
def put_notification_policy(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[PolicyDocument, Body()]
) -> Envelope[NotificationPolicy]:
    """Replace the policy as a whole. It is checked as a whole: a bad field, a time interval name that is not
    defined, routes nested deeper than 10 or more than 200 of them are a 422 naming the field
    (``["body", "route", "routes", 1, "matchers", 0, "value"]``). Groups already formed keep their route id."""
    return ok(service.put_policy(caller, project_id, body))


@app.post("/v1/projects/<project_id>/silences", status_code=201, tags=TAGS, responses=route_responses(201))
def create_silence(caller: CurrentPrincipal, project_id: UUID, body: Annotated[SilenceIn, Body()]) -> Envelope[Silence]:
    """Silence the alerts all of whose labels match the matchers, from starts_at (default now) to ends_at. A
    silenced alert still changes state and is recorded; it is only not notified."""
    return ok(service.create_silence(caller, project_id, body))


@app.get("/v1/projects/<project_id>/silences", tags=TAGS)
def list_silences(
    caller: CurrentPrincipal,
    project_id: UUID,
    status: Annotated[SilenceStatus | None, Query(description="pending, active or expired")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[Silence]]:
    """The project's silences, newest first."""
    items, next_cursor = service.list_silences(caller, project_id, status, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/silences/<silence_id>", tags=TAGS)
def get_silence(caller: CurrentPrincipal, project_id: UUID, silence_id: UUID) -> Envelope[Silence]:
    return ok(service.get_silence(caller, project_id, silence_id))


@app.patch(
    "/v1/projects/<project_id>/silences/<silence_id>",
    tags=TAGS,
    responses=route_responses(200, e409="The silence has expired (silence_expired): create a new one"),
)
def update_silence(
    caller: CurrentPrincipal, project_id: UUID, silence_id: UUID, body: Annotated[SilencePatch, Body()]
) -> Envelope[Silence]:
    """Extend or shorten a silence, edit its comment, or change its matchers (an active silence's too: the groups
    of the project look again at once). starts_at moves only while the silence is pending."""
    return ok(service.update_silence(caller, project_id, silence_id, body))


@app.delete("/v1/projects/<project_id>/silences/<silence_id>", tags=TAGS)
def expire_silence(caller: CurrentPrincipal, project_id: UUID, silence_id: UUID) -> Envelope[Silence]:
    """Expire the silence now. The silence is kept (status expired); the alerts it muted notify at their group's
    next flush."""
    return ok(service.expire_silence(caller, project_id, silence_id))


@app.get("/v1/projects/<project_id>/notification-log", tags=TAGS)
def list_notification_log(
    caller: CurrentPrincipal,
    project_id: UUID,
    group_id: Annotated[UUID | None, Query(description="Only this group's notifications")] = None,
    incident_id: Annotated[UUID | None, Query(description="Only this incident's notifications")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[NotificationLogEntry]]:
    """What was notified (would be sent to the route's receivers), newest first: each with its reason (first,
    changed, repeat, resolved) and the firing and resolved alerts it named."""
    items, next_cursor = service.list_log(caller, project_id, group_id, incident_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/alert-groups", tags=TAGS)
def list_alert_groups(
    caller: CurrentPrincipal, project_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[AlertGroup]]:
    """The project's active notification groups, newest first, each with its alerts and its next flush."""
    items, next_cursor = service.list_groups(caller, project_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


lambda_handler = lambda_handler_for(app)
