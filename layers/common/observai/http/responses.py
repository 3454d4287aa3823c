"""The ``responses=`` of a route: its success, and the errors only it can answer, for the OpenAPI document.

The errors every route of a kind can answer (401/403/429 with credentials, 404 with a path parameter, 400/413/415/422
with a body, 400 with a cursor, 503 with a database) are added by the document's generator
(observai_local.openapi.finish_document); a route declares only its own: a slug or membership conflict (409), a
query or range the route itself refuses (400), a query too costly to answer (422). Every error is the envelope.
"""

from __future__ import annotations

from typing import Any

ERROR_ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request: error.code says what (malformed_json, invalid_input, invalid_range, query_syntax_error, ...)",
    401: "Missing, invalid or expired credentials (WWW-Authenticate: Bearer)",
    403: "The credentials may not do this: a role or API key scope too low, or an API key where a person's token is"
    " needed (user_token_required)",
    404: "Not found, or not visible to the caller",
    409: "Conflict with the current state (error.code says which)",
    413: "The request body is too large",
    415: "Unsupported Content-Type",
    422: "Invalid request: error.code is validation_error and error.details lists each field's location, or the"
    " request cannot be answered as asked (error.code says why)",
    429: "Rate limited: retry after Retry-After seconds",
    503: "A dependency (the database, a queue, Supabase Auth) is unavailable: retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def error_response(status: int, description: str | None = None) -> dict[str, Any]:
    """One documented error status: the envelope, with Retry-After on 429 and 503."""
    response: dict[str, Any] = {
        "description": description or ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": ERROR_ENVELOPE_REF}}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


def route_responses(success: int = 200, *errors: int, **described: str) -> dict[int, Any]:
    """``responses=`` for a route: ``success`` (its schema is the return annotation's) and the route's own errors,
    by status (the standard description) or as ``e409="what conflicts here"`` (added to the standard one)."""
    responses: dict[int, Any] = {success: {"description": "Successful Response"}}
    for status in errors:
        responses[status] = error_response(status)
    for key, description in described.items():
        status = int(key.removeprefix("e"))
        responses[status] = error_response(status, f"{ERROR_DESCRIPTIONS[status]}. Here also: {description}")
    return responses
