"""Webhook endpoints of a project: subscribe, list, read, change, delete, rotate the signing secret, send a test.

Admins and up write (or an API key of the project with the ``admin`` scope), every write audited; viewers and up
read (or a ``read`` key), never the secret: it is shown once, by create and rotate-secret. Deliveries are
DeliverWebhooksFunction's. Thin: parse, one call, envelope.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT
from observai.webhooks import endpoints
from observai.webhooks.endpoint_models import (
    WebhookEndpoint,
    WebhookEndpointDeleted,
    WebhookEndpointIn,
    WebhookEndpointPatch,
    WebhookEndpointWithSecret,
    WebhookTestResult,
)

app = create_resolver()

UNSAFE_URL = "unsafe_url: the URL's host does not resolve, or resolves to an address deliveries may not reach"


@app.post(
    "/v1/projects/<project_id>/webhooks",
    status_code=201,
    tags=["webhooks"],
    responses=route_responses(
        201,
        e409="the project has 20 endpoints already (webhook_limit_reached)",
        e422=UNSAFE_URL,
    ),
)
def create_endpoint(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[WebhookEndpointIn, Body()]
) -> Envelope[WebhookEndpointWithSecret]:
    """Subscribe an endpoint to the project's events (admins and up, or an admin key). The response holds the
    signing secret, shown this once. See docs/webhooks.md."""
    return ok(endpoints.create_endpoint(caller, project_id, body))


@app.get("/v1/projects/<project_id>/webhooks", tags=["webhooks"])
def list_endpoints(
    caller: CurrentPrincipal, project_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[WebhookEndpoint]]:
    """The project's webhook endpoints, newest first (without secrets: secret_hint tells them apart)."""
    items, next_cursor = endpoints.list_endpoints(caller, project_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/webhooks/<endpoint_id>", tags=["webhooks"])
def get_endpoint(caller: CurrentPrincipal, project_id: UUID, endpoint_id: UUID) -> Envelope[WebhookEndpoint]:
    return ok(endpoints.get_endpoint(caller, project_id, endpoint_id))


@app.patch(
    "/v1/projects/<project_id>/webhooks/<endpoint_id>",
    tags=["webhooks"],
    responses=route_responses(200, e422=UNSAFE_URL),
)
def patch_endpoint(
    caller: CurrentPrincipal, project_id: UUID, endpoint_id: UUID, body: Annotated[WebhookEndpointPatch, Body()]
) -> Envelope[WebhookEndpoint]:
    """Change the URL, description, event types, enabled or rate limit (fields left out keep their value).
    `{"enabled": true}` re-enables an endpoint the delivery engine disabled."""
    return ok(endpoints.update_endpoint(caller, project_id, endpoint_id, body))


@app.delete("/v1/projects/<project_id>/webhooks/<endpoint_id>", tags=["webhooks"])
def delete_endpoint(caller: CurrentPrincipal, project_id: UUID, endpoint_id: UUID) -> Envelope[WebhookEndpointDeleted]:
    """Delete the endpoint: nothing more is sent to it, and its messages waiting for delivery fail."""
    return ok(endpoints.delete_endpoint(caller, project_id, endpoint_id))


@app.post("/v1/projects/<project_id>/webhooks/<endpoint_id>/rotate-secret", tags=["webhooks"])
def rotate_secret(caller: CurrentPrincipal, project_id: UUID, endpoint_id: UUID) -> Envelope[WebhookEndpointWithSecret]:
    """A new signing secret, shown this once. For 24 hours messages are signed with both the new and the previous
    secret (two space-separated signatures), so receivers can switch without losing a message."""
    return ok(endpoints.rotate_secret(caller, project_id, endpoint_id))


@app.post("/v1/projects/<project_id>/webhooks/<endpoint_id>/test", tags=["webhooks"])
def send_test(caller: CurrentPrincipal, project_id: UUID, endpoint_id: UUID) -> Envelope[WebhookTestResult]:
    """Send a signed `webhook.test` event to the endpoint now and return what it answered: status, duration,
    the start of its response, or why it failed. Nothing is recorded among the deliveries or retried."""
    return ok(endpoints.send_test(caller, project_id, endpoint_id))


lambda_handler = lambda_handler_for(app)
