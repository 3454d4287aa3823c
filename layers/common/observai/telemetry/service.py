"""Ingestion: who may send, then store the batch — or, when the database is down, spool it without loss.

Order of events for one request: authenticate (API key with the ``ingest`` scope) → decode and validate
(per-event rejections) → store in one transaction (idempotent; the daily quota is checked before the commit,
once the batch's accepted events are known) → 202. If the database is
unreachable, times out, or the circuit breaker is open, the validated batch goes to the spool queue
(S3 for large ones) and the client still gets 202 with status "spooled"; if even that fails, 503.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from observai.auth.principal import Principal
from observai.db.breaker import database_breaker
from observai.errors import Forbidden, RateLimited, Unavailable
from observai.observability import logger
from observai.telemetry import usage
from observai.telemetry.model import Batch, Rejection
from observai.telemetry.writer import store_batch

Status = Literal["stored", "spooled", "replayed"]
# Builds the response body from the batch, its write-time rejections, the outcome and the duplicates dropped.
Responder = Callable[[Batch, list[Rejection], Status, int], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class IngestKey:
    org_id: UUID
    project_id: UUID
    key_id: UUID


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    status: Status
    response: dict[str, Any]


def ingest_key(principal: Principal) -> IngestKey:
    """Only programs ingest: an API key with the ``ingest`` scope, bound to one project."""
    if principal.kind != "api_key" or principal.org_id is None or principal.project_id is None:
        raise Forbidden("Ingestion needs a project API key with the ingest scope", code="api_key_required")
    if "ingest" not in principal.scopes:
        raise Forbidden(
            "This API key lacks the ingest scope", code="scope_missing", details={"scopes": sorted(principal.scopes)}
        )
    assert principal.key_id is not None
    return IngestKey(org_id=principal.org_id, project_id=principal.project_id, key_id=principal.key_id)


def request_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def ingest(
    key: IngestKey, batch: Batch, *, body: bytes, idempotency_key: str | None, respond: Responder
) -> IngestOutcome:
    # The body's hash matters only under an Idempotency-Key (a replay with another body is refused) and for a
    # spooled batch (its drain writes under a key): not computed otherwise.
    digest = request_hash(body) if idempotency_key is not None else None
    # The breaker first: while the database is down nothing here waits on it (not even the quota check).
    if database_breaker.allow():
        try:
            result = store_batch(
                key.org_id,
                key.project_id,
                batch,
                idempotency_key=idempotency_key,
                request_hash=digest or "",
                response={},
                body_bytes=len(body),
                respond=lambda stored, rejected, duplicates: respond(stored, rejected, "stored", duplicates),
                admit=lambda: usage.check_quota(key.org_id, batch.accepted, len(body)),
            )
        except Unavailable as exc:
            database_breaker.record_failure(exc)
            logger.warning("database unavailable: spooling the batch", extra={"reason": exc.message})
        except RateLimited as exc:
            database_breaker.record_success()  # the database answered: the quota is spent
            _notice_quota(key, exc)
            raise
        except BaseException:
            database_breaker.record_success()  # the database answered (conflict, bad input...)
            raise
        else:
            database_breaker.record_success()
            return IngestOutcome("replayed" if result.replayed else "stored", result.response)
    return _spool(key, batch, digest or request_hash(body), len(body), idempotency_key, respond)


def _spool(
    key: IngestKey, batch: Batch, digest: str, body_bytes: int, idempotency_key: str | None, respond: Responder
) -> IngestOutcome:
    from observai.telemetry.spool import SpooledBatch, spool_batch

    response = respond(batch, [], "spooled", 0)
    spool_batch(
        SpooledBatch(
            org_id=key.org_id,
            project_id=key.project_id,
            key_id=key.key_id,
            # Without the client's key, a generated one still makes the drain's retries write once.
            idempotency_key=idempotency_key or f"spool:{uuid.uuid4()}",
            request_hash=digest,
            response=response,
            body_bytes=body_bytes,
            batch=batch,
        )
    )
    return IngestOutcome("spooled", response)


def _notice_quota(key: IngestKey, refusal: RateLimited) -> None:
    """The first refusal of the day tells the project's webhooks (usage.quota_reached); never changes the 429."""
    details = refusal.details if isinstance(refusal.details, dict) else {}
    if "quota" not in details:
        return
    try:
        usage.notice_quota_reached(key.org_id, key.project_id, details)
    except Exception as exc:
        logger.warning("quota notice not recorded", extra={"org_id": str(key.org_id), "error": str(exc)})
