"""Contact points of a project (e-mail, Slack, PagerDuty, webhook): create, list, read, change, delete, send a test;
and each member's notification settings in an organization.

Admins and up write contact points (or an API key of the project with the ``admin`` scope), every write audited;
viewers and up read (or a ``read`` key), never a secret (``secret_hint`` only). A member reads and changes their own
notification settings, admins and up everyone's. Thin: parse, one call, envelope. See docs/notifications.md.
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
from observai.notify import contact_points_api, member_settings
from observai.notify.contact_point_models import (
    ContactPoint,
    ContactPointCreated,
    ContactPointDeleted,
    ContactPointIn,
    ContactPointPatch,
    ContactPointTestResult,
    Kind,
    NotificationSettings,
    NotificationSettingsIn,
)
from observai.pagination import DEFAULT_LIMIT

app = create_resolver()

UNSAFE_URL = "unsafe_url: a webhook URL's host does not resolve, or resolves to an address deliveries may not reach"


@app.post(
    "/v1/projects/<project_id>/contact-points",
    status_code=201,
    tags=["notifications"],
    responses=route_responses(
        201,
        e409="a contact point has this name, or the project has 50 (contact_point_name_taken,"
        " contact_point_limit_reached)",
        e422=UNSAFE_URL,
    ),
)
def create_contact_point(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[ContactPointIn, Body()]
) -> Envelope[ContactPointCreated]:
    """A new contact point (admins and up, or an admin key). Its secret (Slack URL, PagerDuty routing key) is
    sealed and never shown again; a webhook contact point's signing secret is in this response only."""
    return ok(contact_points_api.create_contact_point(caller, project_id, body))


@app.get("/v1/projects/<project_id>/contact-points", tags=["notifications"])
def list_contact_points(
    caller: CurrentPrincipal,
    project_id: UUID,
    kind: Annotated[Kind | None, Query(description="Only this kind: email, slack, pagerduty or webhook")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[ContactPoint]]:
    """The project's contact points, newest first (secrets as their hint only)."""
    items, next_cursor = contact_points_api.list_contact_points(caller, project_id, kind, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/contact-points/<contact_point_id>", tags=["notifications"])
def get_contact_point(caller: CurrentPrincipal, project_id: UUID, contact_point_id: UUID) -> Envelope[ContactPoint]:
    return ok(contact_points_api.get_contact_point(caller, project_id, contact_point_id))


@app.patch(
    "/v1/projects/<project_id>/contact-points/<contact_point_id>",
    tags=["notifications"],
    responses=route_responses(200, e409="another contact point has this name (contact_point_name_taken)"),
)
def patch_contact_point(
    caller: CurrentPrincipal, project_id: UUID, contact_point_id: UUID, body: Annotated[ContactPointPatch, Body()]
) -> Envelope[ContactPoint]:
    """Rename, enable or disable, or change settings (merged; a secret given replaces the stored one).
    `{"enabled": true}` re-enables a contact point a receiver disabled."""
    return ok(contact_points_api.update_contact_point(caller, project_id, contact_point_id, body))


@app.delete("/v1/projects/<project_id>/contact-points/<contact_point_id>", tags=["notifications"])
def delete_contact_point(
    caller: CurrentPrincipal, project_id: UUID, contact_point_id: UUID
) -> Envelope[ContactPointDeleted]:
    """Delete the contact point: routes naming it send nothing more to it."""
    return ok(contact_points_api.delete_contact_point(caller, project_id, contact_point_id))


@app.post("/v1/projects/<project_id>/contact-points/<contact_point_id>/test", tags=["notifications"])
def test_contact_point(
    caller: CurrentPrincipal, project_id: UUID, contact_point_id: UUID
) -> Envelope[ContactPointTestResult]:
    """Send a test message now and return what the receiver answered (recorded as a delivery with source test).
    Slack answering 404 or 410 disables the contact point."""
    return ok(contact_points_api.send_test(caller, project_id, contact_point_id))


@app.get("/v1/orgs/<org_id>/members/<user_id>/notification-settings", tags=["notifications"])
def get_notification_settings(caller: CurrentPrincipal, org_id: UUID, user_id: UUID) -> Envelope[NotificationSettings]:
    """How the member is paged: e-mail on or off, their Slack member id and Slack contact point (the member
    themself, or admins and up)."""
    return ok(member_settings.get_settings(caller, org_id, user_id))


@app.put(
    "/v1/orgs/<org_id>/members/<user_id>/notification-settings",
    tags=["notifications"],
    responses=route_responses(200, e409="another member uses this Slack member id (slack_user_id_taken)"),
)
def put_notification_settings(
    caller: CurrentPrincipal, org_id: UUID, user_id: UUID, body: Annotated[NotificationSettingsIn, Body()]
) -> Envelope[NotificationSettings]:
    """Replace the member's notification settings (the member themself, or admins and up)."""
    return ok(member_settings.put_settings(caller, org_id, user_id, body))


lambda_handler = lambda_handler_for(app)
