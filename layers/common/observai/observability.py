"""Logger, Tracer and Metrics: created once here, imported everywhere else.

Credentials never reach the logs: a filter scrubs bearer tokens, JWTs and API keys from every
record, whatever the message or extra fields contain.

The Tracer is created on first use and only when SDK tracing is on (POWERTOOLS_TRACE_DISABLED is
not "true"): constructing it imports the X-Ray SDK and botocore, ~350 ms of cold start measured
by `make coldstart`. With it off, `Tracing: Active` still gives every invocation its X-Ray segment.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

from aws_lambda_powertools import Logger, Metrics

SERVICE = "observai"

_REDACTIONS = (
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(r"\boai_[A-Za-z0-9]{10,}"),  # our API keys
)
_SENSITIVE_KEYS = {"authorization", "x-api-key", "cookie", "set-cookie", "password", "token", "key", "jwt", "secret"}


def redact_text(text: str) -> str:
    for pattern in _REDACTIONS:
        text = pattern.sub("[REDACTED]", text)
    return text


def redact(value: Any) -> Any:
    """Scrub credentials from a string, or from the values of a (nested) dict or list."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: "[REDACTED]" if str(k).lower() in _SENSITIVE_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    _STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.msg)  # str, or a dict/list message (Powertools logs those as JSON)
        if record.args:
            record.args = (
                tuple(redact(a) for a in record.args) if isinstance(record.args, tuple) else redact(record.args)
            )
        for name, value in list(record.__dict__.items()):
            if name not in self._STANDARD:
                setattr(record, name, "[REDACTED]" if name.lower() in _SENSITIVE_KEYS else redact(value))
        return True


logger = Logger(service=SERVICE)
logger.addFilter(RedactingFilter())
metrics = Metrics(service=SERVICE, namespace="ObservAI")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def metrics_enabled() -> bool:
    # When disabled, Powertools keeps added metrics in memory without flushing them: don't add any.
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "false").strip().lower() not in ("true", "1")


def tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() not in ("true", "1")


@functools.cache
def get_tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)


def traced(handler: Handler) -> Handler:
    """Wrap a Lambda handler with the Powertools Tracer when SDK tracing is on, decided at first call."""
    wrapped: list[Callable[..., Any]] = []

    @functools.wraps(handler)
    def entry(event: Any, context: Any) -> Any:
        if not wrapped:
            use_tracer = tracing_enabled()
            wrapped.append(
                get_tracer().capture_lambda_handler(handler, capture_response=False) if use_tracer else handler
            )
        return wrapped[0](event, context)

    return entry  # type: ignore[return-value]
