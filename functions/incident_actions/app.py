"""Acknowledge and resolve from a notification: the signed links of e-mail and Slack messages, and Slack's buttons.

Public routes (no JWT, no API key): the link's signed token, or Slack's request signature, is the authentication.
A link's GET shows a confirm page and changes nothing (mail scanners fetch links); its POST acts. Answers to links
are small HTML pages; Slack gets JSON. Thin: read the request, one domain call, the answer. See
docs/incident-actions.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from observai.config import get_settings
from observai.errors import InvalidInput, ObservAIError, PayloadTooLarge
from observai.http.exception_handlers import status_for
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import error_response
from observai.notify import actions, slack_actions
from observai.notify.action_pages import HTML_CONTENT_TYPE, HTML_HEADERS, Page, render

app = create_resolver()

_HTML = {"text/html": {"schema": {"type": "string"}}}
_JSON = {"application/json": {"schema": {"type": "object"}}}
LINK_RESPONSES: dict[int, Any] = {
    200: {
        "description": "An HTML page: the incident and a confirm button (GET), or what the action did (POST)",
        "content": _HTML,
    },
    403: {"description": "An HTML page: the person the link was sent to may not act (any more)", "content": _HTML},
    404: {
        "description": "An HTML page: the link is not valid (tampered, truncated) or the incident is gone",
        "content": _HTML,
    },
    410: {"description": "An HTML page: the link has expired", "content": _HTML},
    503: {"description": "An HTML page: links are not configured, or the database is unavailable", "content": _HTML},
}


def _now() -> datetime:
    return datetime.now(UTC)


def _meta() -> actions.RequestMeta:
    context = app.current_event.raw_event.get("requestContext") or {}
    http = context.get("http") or {}
    return actions.RequestMeta(
        source_ip=http.get("sourceIp"), user_agent=http.get("userAgent"), request_id=context.get("requestId")
    )


def _html(page: Page) -> Response:
    headers = dict(HTML_HEADERS)
    if page.status == 503:
        headers["Retry-After"] = "60"
    return Response(page.status, HTML_CONTENT_TYPE, render(page), headers=headers)


def _page_of(error: ObservAIError) -> Page:
    status = int(status_for(error))
    if status >= 500:
        return Page(status, "Try again later", "The service is busy or unavailable. Please try again in a minute.")
    return Page(status, "Request refused", "This request cannot be handled.")


@app.get("/v1/actions/incidents/<token>", tags=["incident actions"], responses=LINK_RESPONSES)
def open_link(token: str):  # type: ignore[no-untyped-def]
    """The page a signed acknowledge/resolve link opens: the incident and a confirm button. Changes nothing."""
    try:
        return _html(actions.preview(token, _now(), get_settings()))
    except ObservAIError as error:
        return _html(_page_of(error))


@app.post("/v1/actions/incidents/<token>", tags=["incident actions"], responses=LINK_RESPONSES)
def confirm_link(token: str):  # type: ignore[no-untyped-def]
    """The confirm button: acknowledge or resolve as the link says (as the member it was sent to, if it names one,
    else as the actor "link"). Already acknowledged or resolved is said, not an error. The body is ignored."""
    try:
        return _html(actions.perform(token, _now(), get_settings(), _meta()))
    except ObservAIError as error:
        return _html(_page_of(error))


def _raw_body() -> bytes:
    event = app.current_event.raw_event
    body = event.get("body") or ""
    if len(body) > slack_actions.MAX_BODY_BYTES * 2:
        raise PayloadTooLarge("The request body is too large", details={"limit_bytes": slack_actions.MAX_BODY_BYTES})
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("The request body is not valid base64", code="malformed_body") from None
    else:
        raw = body.encode("utf-8", errors="surrogateescape")
    if len(raw) > slack_actions.MAX_BODY_BYTES:
        raise PayloadTooLarge("The request body is too large", details={"limit_bytes": slack_actions.MAX_BODY_BYTES})
    return raw


@app.post(
    "/v1/integrations/slack/actions",
    tags=["incident actions"],
    responses={
        200: {"description": "A message for Slack to show the person who pressed the button", "content": _JSON},
        400: error_response(400, "Not a form body with one JSON payload field (malformed_form, malformed_json)"),
        401: error_response(401, "Missing, stale (over 5 minutes) or wrong X-Slack-Signature (invalid_signature)"),
        413: error_response(413),
        503: error_response(503, "No Slack signing secret is configured, or the database is unavailable"),
    },
)
def slack_action():  # type: ignore[no-untyped-def]
    """Slack's interactive buttons (block_actions, form field ``payload``): acknowledge or resolve as the Slack user
    mapped to a member of the incident's organization. Signed by Slack (X-Slack-Signature, v0)."""
    raw = _raw_body()
    answer = slack_actions.handle(raw, app.current_event.headers, _now(), get_settings(), _meta())
    return Response(200, "application/json", json.dumps(answer))


# The link routes take form posts (no body to read) and Slack's form bodies: they check their own bodies.
lambda_handler = lambda_handler_for(app, guard=False)
