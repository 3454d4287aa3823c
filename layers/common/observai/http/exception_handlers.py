"""Domain exceptions → HTTP statuses, in one place. Every error leaves as the envelope; never a stack trace."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from observai import errors
from observai.http.envelope import error_body
from observai.observability import logger

STATUS_BY_ERROR: dict[type[errors.ObservAIError], HTTPStatus] = {
    errors.InvalidInput: HTTPStatus.BAD_REQUEST,
    errors.QuerySyntaxError: HTTPStatus.BAD_REQUEST,
    errors.Unauthenticated: HTTPStatus.UNAUTHORIZED,
    errors.Forbidden: HTTPStatus.FORBIDDEN,
    errors.NotFound: HTTPStatus.NOT_FOUND,
    errors.Conflict: HTTPStatus.CONFLICT,
    errors.PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    errors.UnsupportedMediaType: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    errors.Unprocessable: HTTPStatus.UNPROCESSABLE_ENTITY,
    errors.RateLimited: HTTPStatus.TOO_MANY_REQUESTS,
    errors.Unavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}


def status_for(exc: errors.ObservAIError) -> HTTPStatus:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return HTTPStatus.INTERNAL_SERVER_ERROR


def envelope_response(
    status: int, code: str, message: str, details: Any = None, headers: dict | None = None
) -> Response:
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code, message, details),
        headers=headers or {},
    )


def response_for(exc: errors.ObservAIError) -> Response:
    status = status_for(exc)
    headers = {}
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="observai"'
    return envelope_response(status, exc.code, exc.message, exc.details, headers)


def validation_details(raw_errors: Any) -> list[dict[str, Any]]:
    """Field locations and reasons, never the submitted values (they may hold secrets)."""
    details = []
    for err in raw_errors:
        details.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "type": err.get("type"),
                "message": err.get("msg"),
            }
        )
    return details


def register_exception_handlers(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(errors.ObservAIError)
    def _domain(exc: errors.ObservAIError) -> Response:
        if isinstance(exc, errors.Unavailable):
            # One line per refused request, with what refused it (the database unreachable, a statement timeout).
            cause = exc.__cause__
            logger.warning(
                "service unavailable",
                extra={"error": exc.message, "cause": None if cause is None else cause.__class__.__name__},
            )
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    def _validation(exc: RequestValidationError) -> Response:
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            pos = next((e["loc"][1] for e in errs if e.get("type") == "json_invalid" and len(e["loc"]) > 1), None)
            return envelope_response(
                HTTPStatus.BAD_REQUEST,
                "malformed_json",
                "The request body is not valid JSON",
                {"position": pos},
            )
        return envelope_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", "The request is invalid", validation_details(errs)
        )

    @app.exception_handler(RequestUnsupportedContentType)
    def _content_type(exc: RequestUnsupportedContentType) -> Response:
        return envelope_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Send JSON: Content-Type: application/json"
        )

    @app.exception_handler(NotFoundError)
    def _route_not_found(exc: NotFoundError) -> Response:
        return envelope_response(HTTPStatus.NOT_FOUND, "route_not_found", "No such route")

    @app.exception_handler(ServiceError)
    def _service(exc: ServiceError) -> Response:
        return envelope_response(exc.status_code, "http_error", str(exc.msg))

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return envelope_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "Internal error; it has been logged"
        )
