"""Liveness and readiness: is the function up; can it reach the database, and is the schema at head."""

from __future__ import annotations

import time

from pydantic import BaseModel

from observai import __version__
from observai.config import get_settings
from observai.db.connection import transaction
from observai.errors import ObservAIError, Unavailable


class Liveness(BaseModel):
    status: str
    version: str
    stage: str


class Readiness(BaseModel):
    status: str
    database: str
    migrations_applied: str | None
    migrations_expected: str
    database_latency_ms: float


def liveness() -> Liveness:
    return Liveness(status="ok", version=__version__, stage=get_settings().stage)


def readiness() -> Readiness:
    """Ready when the database answers and its migrations are at this code's head; Unavailable (503) otherwise."""
    from observai.db.migrations import EXPECTED_HEAD, head_version

    started = time.perf_counter()
    try:
        with transaction() as cur:
            applied = head_version(cur)
    except ObservAIError as exc:
        raise Unavailable(
            "Database unreachable", retry_after_s=5, details={"database": "unreachable", "reason": exc.message}
        ) from exc
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    if applied != EXPECTED_HEAD:
        raise Unavailable(
            "Database migrations are not at head: run make migrate",
            retry_after_s=30,
            details={"migrations_applied": applied, "migrations_expected": EXPECTED_HEAD},
        )
    return Readiness(
        status="ready",
        database="ok",
        migrations_applied=applied,
        migrations_expected=EXPECTED_HEAD,
        database_latency_ms=latency_ms,
    )
