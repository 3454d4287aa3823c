"""Logger, Tracer and Metrics: created once here, imported everywhere else.

Credentials never reach the logs: a filter scrubs bearer tokens, JWTs and API keys from every
record, whatever the message or extra fields contain.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

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
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace="ObservAI")
