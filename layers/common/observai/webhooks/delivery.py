"""The delivery engine: one attempt at one webhook message, its record, and what comes next.

``deliver_message(message_id, now)`` runs in three steps, and holds no database transaction while the receiver is
being called (a receiver may take the whole timeout):

1. claim (one transaction, the message's row lock with SKIP LOCKED): nothing happens unless the message is due
   (pending with ``next_attempt_at <= now``, or delivering with a lease that expired: its worker died). A finished
   message (a redelivered SQS wake-up after the success) is a no-op, so nothing is ever delivered twice after a
   success. Under a per-endpoint advisory lock the endpoint's live leases are counted: past
   ``webhook_max_in_flight_per_endpoint`` (or past its ``rate_limit_per_s`` in the last second) the message is
   deferred a moment instead, so one slow receiver holds only its own slots. Claimed: status ``delivering``, a
   lease (the timeout plus a margin, also written to ``next_attempt_at`` so the sweep finds it if the worker
   dies), ``attempts + 1``;
2. the request (observai.webhooks.sender: SSRF guard, Standard Webhooks signature with the current secret, and
   the previous one while it is valid, no redirects, the timeout);
3. record (one transaction): the ``webhook_attempts`` row, then a 2xx → succeeded (the endpoint's failure run
   ends); 410 → the endpoint is disabled and the message fails; anything else → the next attempt by the schedule
   (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h; ±10% jitter; at least the receiver's
   Retry-After on 429 and 503), or failed after the last one. An endpoint whose failures have run for 5 days is
   disabled at its next failure and the organization's owners and admins are e-mailed (Amazon SES). The update is
   fenced on the attempt number: a worker whose lease expired and was taken over records its attempt but changes
   nothing else.

Short delays (≤ 15 minutes) go on the delivery queue as SQS delay messages after the commit; longer ones are found
by the minute sweep. The container has one database connection: the database steps of parallel deliveries (the
thread pool of ``deliver_many``) take turns on it under a lock, while their HTTP requests run side by side.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from psycopg import sql

from observai.config import Settings, get_settings
from observai.db.connection import Cursor, committing, transaction
from observai.observability import logger
from observai.webhooks.queue import send_wakeups

# Seconds before attempt n + 1 (index n): attempt 1 goes at once, the last (10th) a day after the 9th.
SCHEDULE_S: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_ATTEMPTS = len(SCHEDULE_S)
JITTER = 0.10
# Retry-After is honoured up to a day: a receiver cannot park a message for longer than the schedule's last step.
MAX_RETRY_AFTER_S = 86400
DISABLE_AFTER = timedelta(days=5)
GONE_REASON = "410 Gone from the receiver"
FAILING_REASON = "failing for 5 days in a row"
# A deferred message (the endpoint busy or over its rate) looks again this soon.
BUSY_DELAY_S = 2
RATE_DELAY_S = 1
# The lease covers the request's timeout and the recording after it.
LEASE_MARGIN_S = 30
# Advisory lock class of "one endpoint's in-flight count" (the second key is the endpoint id's hash).
_LOCK_CLASS = 1313
EXCERPT_MAX = 1024
ERROR_MAX = 1000

_db_lock = threading.Lock()


@dataclass(frozen=True)
class DeliveryOutcome:
    message_id: UUID
    # succeeded, retrying, failed, endpoint_disabled, busy, rate_limited, not_due, done, in_flight, superseded, gone
    outcome: str
    attempt: int | None = None
    status_code: int | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class _Claim:
    message_id: UUID
    org_id: UUID
    project_id: UUID
    endpoint_id: UUID
    event_id: UUID
    url: str
    payload: dict[str, Any]
    attempt: int
    secret_ciphertexts: tuple[bytes, ...]


def retry_delay_s(attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float | None:
    """Seconds before the next attempt after attempt ``attempt`` (1-based) failed, None when it was the last: the
    schedule's step ±10%, at least ``retry_after_s`` (the receiver's Retry-After, capped at a day)."""
    if attempt >= MAX_ATTEMPTS:
        return None
    delay = SCHEDULE_S[attempt] * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


def message_body(payload: dict[str, Any]) -> bytes:
    """The bytes sent and signed: the event's ``{"type", "timestamp", "data"}``, compact JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def deliver_message(
    message_id: UUID, now: datetime, *, settings: Settings | None = None, rng: random.Random | None = None
) -> DeliveryOutcome:
    """Claim, send and record one attempt of a message (see the module's text); never raises for the receiver's
    failures, only for the database's."""
    from observai.webhooks import sender, signing

    settings = settings or get_settings()
    with _db_lock, transaction() as cur:
        claim_or_outcome = _claim(cur, message_id, now, settings)
    if isinstance(claim_or_outcome, DeliveryOutcome):
        outcome = claim_or_outcome
        if outcome.next_attempt_at is not None:  # deferred: wake it again shortly
            send_wakeups([(message_id, outcome.next_attempt_at)], now, settings)
        return outcome
    claim = claim_or_outcome
    secrets = [signing.decrypt_secret(ct, settings) for ct in claim.secret_ciphertexts]
    attempt = sender.deliver(
        claim.url,
        msg_id=str(claim.event_id),
        body=message_body(claim.payload),
        secrets=secrets,
        now=now,
        settings=settings,
    )
    with _db_lock, transaction() as cur:
        outcome, notify = _record(cur, claim, attempt, now, rng)
    if outcome.next_attempt_at is not None and outcome.outcome == "retrying":
        send_wakeups([(message_id, outcome.next_attempt_at)], now, settings)
    if notify:
        _notify_disabled(claim, now, settings)
    logger.info(
        "webhook attempt",
        extra={
            "webhook_message_id": str(message_id),
            "endpoint_id": str(claim.endpoint_id),
            "attempt": claim.attempt,
            "status_code": attempt.status_code,
            "duration_ms": attempt.duration_ms,
            "outcome": outcome.outcome,
        },
    )
    return outcome


def deliver_many(
    message_ids: Sequence[UUID],
    clock: Callable[[], datetime],
    *,
    max_workers: int = 16,
    settings: Settings | None = None,
) -> dict[UUID, DeliveryOutcome | BaseException]:
    """Deliver several messages side by side (a thread each, at most ``max_workers``): a receiver that takes its
    whole timeout holds only its own thread. The result (or the error) of each, by id."""
    settings = settings or get_settings()
    unique = list(dict.fromkeys(message_ids))
    results: dict[UUID, DeliveryOutcome | BaseException] = {}
    if not unique:
        return results
    with ThreadPoolExecutor(max_workers=min(max_workers, len(unique)), thread_name_prefix="webhook") as pool:
        futures = {mid: pool.submit(deliver_message, mid, clock(), settings=settings) for mid in unique}
        for mid, future in futures.items():
            try:
                results[mid] = future.result()
            except Exception as exc:  # the caller decides (SQS retries the message; the sweep logs it)
                results[mid] = exc
    return results


def _claim(cur: Cursor, message_id: UUID, now: datetime, settings: Settings) -> _Claim | DeliveryOutcome:
    # Two statements on the way (a delivery's database time is the engine's throughput): the row with its endpoint,
    # taking the endpoint's advisory lock as it is read; then the claim itself, conditional on the endpoint's live
    # leases (and its rate), counted after the lock so that two claims of one endpoint are counted one after the
    # other.
    cur.execute(
        "select m.id, m.org_id, m.project_id, m.endpoint_id, m.event_id, m.payload, m.status, m.attempts,"
        " m.next_attempt_at, w.url, w.enabled, w.deleted_at, w.rate_limit_per_s, w.secret_ciphertext,"
        " w.previous_secret_ciphertext, w.previous_secret_expires_at,"
        " pg_advisory_xact_lock(%s, hashtext(m.endpoint_id::text)) as locked"
        " from public.webhook_messages m join public.webhook_endpoints w on w.id = m.endpoint_id"
        " where m.id = %s for update of m skip locked",
        (_LOCK_CLASS, message_id),
    )
    row = cur.fetchone()
    if row is None:
        cur.execute("select 1 from public.webhook_messages where id = %s", (message_id,))
        return DeliveryOutcome(message_id, "in_flight" if cur.fetchone() else "gone")
    if row["status"] in ("succeeded", "failed"):
        return DeliveryOutcome(message_id, "done")
    if row["next_attempt_at"] is None or row["next_attempt_at"] > now:
        # Not yet: an early wake-up, or a live lease (the next_attempt_at of a delivering message is its lease).
        return DeliveryOutcome(message_id, "in_flight" if row["status"] == "delivering" else "not_due")
    if not row["enabled"] or row["deleted_at"] is not None:
        # Disabled or deleted since the fan-out: nothing more leaves for it (recover replays it once re-enabled).
        _finish(cur, message_id, "failed")
        return DeliveryOutcome(message_id, "endpoint_disabled")

    endpoint_id = row["endpoint_id"]
    rate = row["rate_limit_per_s"]
    lease_until = now + timedelta(seconds=settings.webhook_timeout_s + LEASE_MARGIN_S)
    params = {
        "id": message_id,
        "endpoint": endpoint_id,
        "now": now,
        "lease": lease_until,
        "max": settings.webhook_max_in_flight_per_endpoint,
        "rate": rate,
        "since": now - timedelta(seconds=1),
    }
    cur.execute(
        f"update public.webhook_messages set status = 'delivering', attempts = attempts + 1,"
        f" lease_until = %(lease)s, next_attempt_at = %(lease)s, last_attempt_at = %(now)s"
        f" where id = %(id)s and ({_IN_FLIGHT}) < %(max)s"
        f" and (%(rate)s::int is null or ({_RECENT}) + ({_IN_FLIGHT}) < %(rate)s)"
        " returning attempts",
        params,
    )
    claimed = cur.fetchone()
    if claimed is None:
        cur.execute(f"select ({_IN_FLIGHT}) as n", params)
        if _count(cur) >= settings.webhook_max_in_flight_per_endpoint:
            return _defer(cur, message_id, now + timedelta(seconds=BUSY_DELAY_S), "busy")
        return _defer(cur, message_id, now + timedelta(seconds=RATE_DELAY_S), "rate_limited")
    ciphertexts = [bytes(row["secret_ciphertext"])]
    expires = row["previous_secret_expires_at"]
    if row["previous_secret_ciphertext"] is not None and expires is not None and expires > now:
        ciphertexts.append(bytes(row["previous_secret_ciphertext"]))
    return _Claim(
        message_id=message_id,
        org_id=row["org_id"],
        project_id=row["project_id"],
        endpoint_id=endpoint_id,
        event_id=row["event_id"],
        url=row["url"],
        payload=row["payload"],
        attempt=int(claimed["attempts"]),
        secret_ciphertexts=tuple(ciphertexts),
    )


# The endpoint's deliveries in flight (a live lease) other than this message; its attempts in the last second.
_IN_FLIGHT = (
    "select count(*) from public.webhook_messages where endpoint_id = %(endpoint)s and status = 'delivering'"
    " and next_attempt_at > %(now)s and id <> %(id)s"
)
_RECENT = (
    "select count(*) from (select at from public.webhook_attempts where endpoint_id = %(endpoint)s"
    " order by id desc limit %(rate)s) recent where at > %(since)s"
)
_INSERT_ATTEMPT = (
    "insert into public.webhook_attempts (org_id, project_id, message_id, endpoint_id, attempt, at, status_code,"
    " duration_ms, response_excerpt, error, succeeded) values (%(org)s, %(project)s, %(id)s, %(endpoint)s,"
    " %(attempt)s, %(now)s, %(status)s, %(duration)s, %(excerpt)s, %(error)s, %(succeeded)s)"
)


def _record(
    cur: Cursor, claim: _Claim, attempt: Any, now: datetime, rng: random.Random | None
) -> tuple[DeliveryOutcome, bool]:
    """Record the attempt and decide what follows; (the outcome, whether the owners and admins must be told the
    endpoint was disabled for failing 5 days). Every update of the message is fenced on the attempt number: if this
    lease expired and another worker claimed the message, that worker decides."""
    finished = now + timedelta(milliseconds=attempt.duration_ms)
    params = {
        "org": claim.org_id,
        "project": claim.project_id,
        "id": claim.message_id,
        "endpoint": claim.endpoint_id,
        "attempt": claim.attempt,
        "now": now,
        "status": attempt.status_code,
        "duration": max(0, attempt.duration_ms),
        "excerpt": attempt.response_excerpt[:EXCERPT_MAX] if attempt.response_excerpt is not None else None,
        "error": attempt.error[:ERROR_MAX] if attempt.error is not None else None,
        "succeeded": bool(attempt.succeeded),
    }

    def outcome(name: str, next_at: datetime | None = None) -> DeliveryOutcome:
        return DeliveryOutcome(claim.message_id, name, claim.attempt, attempt.status_code, next_at)

    if attempt.succeeded:
        # One statement: the attempt, the end of the endpoint's failure run, the message done.
        cur.execute(
            f"with attempt as ({_INSERT_ATTEMPT}),"
            " healthy as (update public.webhook_endpoints set failing_since = null"
            " where id = %(endpoint)s and failing_since is not null)"
            " update public.webhook_messages set status = 'succeeded', next_attempt_at = null, lease_until = null"
            " where id = %(id)s and status = 'delivering' and attempts = %(attempt)s returning id",
            params,
        )
        return (outcome("succeeded") if cur.fetchone() else outcome("superseded")), False

    # A failure: the attempt, and the start of the endpoint's failure run (kept when it had started), if the lease
    # is still ours.
    cur.execute(
        f"with attempt as ({_INSERT_ATTEMPT}),"
        " fence as (select id from public.webhook_messages where id = %(id)s and status = 'delivering'"
        " and attempts = %(attempt)s for update)"
        " update public.webhook_endpoints set failing_since = coalesce(failing_since, %(now)s)"
        " where id = %(endpoint)s and exists (select 1 from fence) returning failing_since",
        params,
    )
    failing = cur.fetchone()
    if failing is None:
        return outcome("superseded"), False
    if attempt.gone:
        _finish(cur, claim.message_id, "failed")
        _disable(cur, claim.endpoint_id, GONE_REASON, finished)
        return outcome("endpoint_disabled"), False
    if failing["failing_since"] <= finished - DISABLE_AFTER:
        _finish(cur, claim.message_id, "failed")
        return outcome("endpoint_disabled"), _disable(cur, claim.endpoint_id, FAILING_REASON, finished)
    retry_after = attempt.retry_after_s if attempt.status_code in (429, 503) else None
    delay = retry_delay_s(claim.attempt, retry_after, rng)
    if delay is None:
        _finish(cur, claim.message_id, "failed")
        return outcome("failed"), False
    next_at = finished + timedelta(seconds=delay)
    with committing(cur) as statements:  # the last statement and COMMIT in one round trip
        statements.append(
            sql.SQL(
                "update public.webhook_messages set status = 'pending', next_attempt_at = {}, lease_until = null"
                " where id = {}"
            ).format(sql.Literal(next_at), sql.Literal(claim.message_id))
        )
    return outcome("retrying", next_at), False


def _finish(cur: Cursor, message_id: UUID, status: str) -> None:
    cur.execute(
        "update public.webhook_messages set status = %s, next_attempt_at = null, lease_until = null where id = %s",
        (status, message_id),
    )


def _defer(cur: Cursor, message_id: UUID, until: datetime, why: str) -> DeliveryOutcome:
    # pending again (a delivering row here had an expired lease: its worker is gone), due a moment later.
    cur.execute(
        "update public.webhook_messages set status = 'pending', next_attempt_at = %s, lease_until = null where id = %s",
        (until, message_id),
    )
    return DeliveryOutcome(message_id, why, next_attempt_at=until)


def _disable(cur: Cursor, endpoint_id: UUID, reason: str, at: datetime) -> bool:
    """Disable the endpoint; True only for the transaction that turned it off (one notice, not one per worker)."""
    cur.execute(
        "update public.webhook_endpoints set enabled = false, disabled_reason = %s, disabled_at = %s,"
        " updated_at = %s where id = %s and enabled returning id",
        (reason, at, at, endpoint_id),
    )
    return cur.fetchone() is not None


def _count(cur: Cursor, column: str = "n") -> int:
    row = cur.fetchone()
    assert row is not None
    return int(row[column])


def _notify_disabled(claim: _Claim, now: datetime, settings: Settings) -> None:
    """E-mail the organization's owners and admins that the endpoint was disabled (after the commit). A failure to
    send is logged, never raised: the endpoint shows disabled_reason in the API either way."""
    from observai.webhooks import notices

    try:
        with _db_lock, transaction() as cur:
            notice = notices.disabled_notice(cur, claim.org_id, claim.project_id, claim.endpoint_id, now)
        notices.send(notice, settings)
    except Exception as exc:
        logger.error(
            "webhook disabled notice not sent",
            extra={"endpoint_id": str(claim.endpoint_id), "error": exc.__class__.__name__},
        )


def display_url(url: str) -> str:
    """The URL without its query and credentials: receivers often carry a token there, never shown or logged."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
