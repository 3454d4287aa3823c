"""Webhook deliveries: what was sent to an endpoint (each attempt: time, status, duration, response excerpt), and
replays: one message, or every failed message of an endpoint since a time.

Read: viewers and up, or a ``read`` key of the project. Replay: admins and owners, or an ``admin`` key of the
project. Thin: parse, one call, envelope.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Query
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.pagination import DEFAULT_LIMIT
from observai.timetext import AwareDateTimeText
from observai.webhooks import deliveries
from observai.webhooks.deliveries import DeliveryInfo, MessageStatus, RecoverInfo, RetryInfo

app = create_resolver()


@app.get("/v1/projects/<project_id>/webhooks/<endpoint_id>/deliveries", tags=["webhooks"])
def list_deliveries(
    caller: CurrentPrincipal,
    project_id: UUID,
    endpoint_id: UUID,
    status: Annotated[MessageStatus | None, Query(description="Only messages in this status")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[DeliveryInfo]]:
    """The endpoint's messages, newest first, each with its latest attempts (time, HTTP status, duration, at most
    1 kB of the response)."""
    items, next_cursor = deliveries.list_deliveries(caller, project_id, endpoint_id, status, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.post("/v1/projects/<project_id>/webhooks/deliveries/<message_id>/retry", tags=["webhooks"])
def retry_delivery(caller: CurrentPrincipal, project_id: UUID, message_id: UUID) -> Envelope[RetryInfo]:
    """Replay one message now, as a new attempt sequence (its past attempts are kept). A message being delivered
    at this moment is answered as it is."""
    return ok(deliveries.retry_message(caller, project_id, message_id, datetime.now(UTC)))


@app.post("/v1/projects/<project_id>/webhooks/<endpoint_id>/recover", tags=["webhooks"])
def recover(
    caller: CurrentPrincipal,
    project_id: UUID,
    endpoint_id: UUID,
    since: Annotated[AwareDateTimeText, Query(description="RFC 3339 time: failed messages created since then")],
) -> Envelope[RecoverInfo]:
    """Replay every failed message of the endpoint created since ``since`` (at most 1000 a call: ``more`` says
    whether to call again). Enable the endpoint first: a disabled endpoint's messages fail again at once."""
    return ok(deliveries.recover(caller, project_id, endpoint_id, since, datetime.now(UTC)))


lambda_handler = lambda_handler_for(app)
