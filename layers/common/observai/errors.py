"""Domain exceptions. They know nothing of HTTP: observai.http.exception_handlers maps them to statuses."""

from __future__ import annotations

from typing import Any


class ObservAIError(Exception):
    """Base of every error we raise on purpose; ``code`` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class InvalidInput(ObservAIError):
    code = "invalid_input"


class QuerySyntaxError(InvalidInput):
    """A search query that does not parse; ``position`` is the 0-based character offset of the problem."""

    code = "query_syntax_error"

    def __init__(self, message: str, *, position: int, parameter: str = "q") -> None:
        super().__init__(message, details={"loc": ["query", parameter], "position": position})
        self.position = position


class Unauthenticated(ObservAIError):
    code = "unauthenticated"


class Forbidden(ObservAIError):
    code = "forbidden"


class NotFound(ObservAIError):
    code = "not_found"


class Conflict(ObservAIError):
    code = "conflict"


class PayloadTooLarge(ObservAIError):
    code = "payload_too_large"


class UnsupportedMediaType(ObservAIError):
    code = "unsupported_media_type"


class Unprocessable(ObservAIError):
    code = "unprocessable"


def invalid_field(loc: list[str | int], kind: str, message: str) -> Unprocessable:
    """A 422 ``validation_error`` about one field found invalid past the models' checks (a regex the database
    refuses, a date out of range, a user who is not a member), shaped as the models' own 422s: details is a list of
    {loc, type, message}."""
    return Unprocessable(
        "The request is invalid",
        code="validation_error",
        details=[{"loc": [str(part) for part in loc], "type": kind, "message": message}],
    )


class RateLimited(ObservAIError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = max(1, int(retry_after_s))


class Unavailable(ObservAIError):
    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 5, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = max(1, int(retry_after_s))
