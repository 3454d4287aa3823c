"""The notification delivery worker: sends the recorded deliveries (observai.notify.deliveries_enqueue) through
their channels, and records what came of each.

A batch of deliveries goes through three steps, and no database transaction is held while receivers are called:

1. prepare (one transaction): claim the due deliveries of the batch (pending with ``next_attempt_at <= now``, or
   sending with an expired lease: its worker died) with SKIP LOCKED; a sent, failed or skipped delivery is never
   due, so a redelivered queue message or a second sweep never sends twice. Claimed: status ``sending``,
   ``attempts + 1``, a lease (the channel timeout plus a margin, also its ``next_attempt_at``). Their contact
   points are read and their secrets opened (``contact_points.channel_config``); a delivery whose contact point was
   deleted or disabled since is ``skipped``. Rate-limited channels (Slack 1 message/s per webhook URL, PagerDuty
   120 events/min per routing key) take their send slots (``notification_send_slots``, keyed by a hash of the
   secret); a delivery without a slot is deferred to the next window, not counted as an attempt;
2. send: every message of the batch side by side, a thread each (``channels.send``): a slow receiver holds only its
   own thread;
3. record (one transaction, one statement for the batch): sent (the response code, ``sent_at``), a retry by the
   schedule (10 s, 30 s, 2 min, 5 min, 15 min; at least the receiver's Retry-After), or failed (not retryable, or
   after the 6th attempt); a ``disable_reason`` disables the contact point and fails the delivery with the reason.
   Each record is fenced on the attempt number: a worker whose lease expired and was taken over changes nothing.
   Each delivery of an incident sent or failed adds a ``notification_sent`` / ``notification_failed`` timeline
   event.

Retries and deferrals within SQS's 15 minutes are woken on the notification queue after the commit; the minute
sweep (``sweep``) sends whatever is due beyond that, or was woken by a message that got lost.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from observai.config import Settings, get_settings
from observai.db.connection import after_commit, transaction
from observai.notify import deliveries_store as store
from observai.notify import render
from observai.notify.message import Message, SendResult
from observai.notify.queue import send_wakeups
from observai.observability import logger
from observai.sqs_batches import MAX_DELAY_S

# Seconds before attempt n + 1 after attempt n failed (index n - 1); 6 attempts at most.
RETRY_DELAYS_S: tuple[int, ...] = (10, 30, 120, 300, 900)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1
# A receiver's Retry-After is honoured up to an hour.
MAX_RETRY_AFTER_S = 3600
# The lease covers the channel's timeout and the recording after it.
LEASE_MARGIN_S = 30
# Deliveries claimed, sent and recorded together (one claim statement and one record statement each): at most one
# per sending thread, so that a batch is one round of sends and its lease (one timeout + the margin) covers it.
MAX_WORKERS = 16
ERROR_MAX = 1000
# Channels that use the database themselves (the webhook channel hands its message over in a transaction of its
# own): the container has one connection, so their sends take turns; the HTTP channels run side by side.
_DB_CHANNELS = frozenset({"webhook"})
_db_turn = threading.Lock()


@dataclass(frozen=True)
class RateLimit:
    messages: int  # per window
    window_s: int


# Slack: 1 message per second per incoming webhook; PagerDuty Events API v2: about 120 events per minute per
# routing key.
RATE_LIMITS: Mapping[str, RateLimit] = {"slack": RateLimit(1, 1), "pagerduty": RateLimit(120, 60)}
# The secret a channel's limit is keyed by (hashed).
_LIMIT_SECRET = {"slack": "url", "pagerduty": "routing_key"}
# Configuration values never recorded or logged (scrubbed from receivers' errors).
_SECRET_KEYS = ("url", "routing_key", "secret", "token", "signing_secret")


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery in this run: ``sent``, ``retrying``, ``failed``, ``disabled`` (its contact point
    was disabled by the receiver's answer), ``deferred`` (over its channel's rate), ``skipped`` (its contact point
    is gone or off), ``superseded`` (its lease was taken over) or ``not_due`` (not claimed: not due, in flight
    elsewhere, already done or unknown)."""

    delivery_id: UUID
    outcome: str
    attempt: int | None = None
    status_code: int | None = None
    next_attempt_at: datetime | None = None


@dataclass
class Claimed:
    """A claimed delivery, ready to send (or with its result already known: its secret could not be opened)."""

    row: dict[str, Any]
    kind: str
    config: dict[str, Any]
    message: Message
    contact_point_name: str | None = None
    result: SendResult | None = None

    @property
    def id(self) -> UUID:
        return UUID(str(self.row["id"]))

    @property
    def attempt(self) -> int:
        return int(self.row["attempts"])


@dataclass
class Batch:
    ready: list[Claimed] = field(default_factory=list)
    outcomes: dict[UUID, Outcome] = field(default_factory=dict)
    claimed: int = 0


def retry_delay_s(attempt: int, retry_after_s: float | None = None) -> float | None:
    """Seconds before the next attempt after attempt ``attempt`` (1-based) failed; None when it was the last. At
    least the receiver's Retry-After (capped at an hour)."""
    if attempt >= MAX_ATTEMPTS:
        return None
    delay = float(RETRY_DELAYS_S[attempt - 1])
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(float(retry_after_s), MAX_RETRY_AFTER_S))
    return delay


def limit_key(kind: str, config: Mapping[str, Any]) -> str | None:
    """The send-slot key of a rate-limited channel: the channel and a hash of its secret (never the secret)."""
    name = _LIMIT_SECRET.get(kind)
    secret = config.get(name) if name else None
    if not isinstance(secret, str) or not secret:
        return None
    return f"{kind}:{hashlib.sha256(secret.encode()).hexdigest()[:40]}"


def _secrets(config: Mapping[str, Any]) -> list[str]:
    return [v for k, v in config.items() if k in _SECRET_KEYS and isinstance(v, str) and len(v) >= 6]


def scrub(text: str | None, config: Mapping[str, Any]) -> str | None:
    """``text`` without the channel's secrets (a receiver's error may quote the URL), at most ERROR_MAX."""
    if text is None:
        return None
    for secret in _secrets(config):
        text = text.replace(secret, "[secret]")
    return text[:ERROR_MAX]


def _window_start(now: datetime, window_s: int) -> datetime:
    return datetime.fromtimestamp(math.floor(now.timestamp() / window_s) * window_s, UTC)


# --- 1. prepare ----------------------------------------------------------------------------------------------


def _incident(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if row["incident_id"] is None or row.get("incident_number") is None:
        return None
    return {
        "id": row["incident_id"],
        "org_id": row["org_id"],
        "project_id": row["project_id"],
        "number": row["incident_number"],
        "title": row["incident_title"],
        "status": row["incident_status"],
        "severity": row["incident_severity"],
        "service": row["incident_service"],
    }


def prepare(
    *,
    ids: Sequence[UUID] | None,
    limit: int,
    now: datetime,
    settings: Settings,
    limits: Mapping[str, RateLimit] | None = None,
) -> Batch:
    """Step 1 (one transaction): claim, open the channels' configurations, take rate-limit slots; deferred and
    skipped deliveries are handed back (their wake-ups leave after the commit)."""
    limits = RATE_LIMITS if limits is None else limits
    batch = Batch()
    lease_until = now + timedelta(seconds=settings.notify_timeout_s + LEASE_MARGIN_S)
    releases: list[store.Release] = []
    with transaction() as cur:
        rows = store.claim(cur, ids=ids, limit=limit, now=now, lease_until=lease_until, max_attempts=MAX_ATTEMPTS)
        batch.claimed = len(rows)
        if not rows:
            return batch
        points = store.contact_points(cur, [r["contact_point_id"] for r in rows if r["contact_point_id"]])
        configs: dict[UUID, dict[str, Any] | BaseException] = {}
        candidates: list[Claimed] = []
        for row in rows:
            claimed_or_why = _ready(cur, row, points, configs, now, settings)
            if isinstance(claimed_or_why, str):
                releases.append(store.Release(row["id"], row["attempts"], "skipped", None, claimed_or_why))
                batch.outcomes[row["id"]] = Outcome(row["id"], "skipped", row["attempts"] - 1)
            else:
                candidates.append(claimed_or_why)
        granted = _take_slots(cur, candidates, now, limits)
        for claimed in candidates:
            key = limit_key(claimed.kind, claimed.config) if claimed.result is None else None
            if key is None or key not in granted:
                batch.ready.append(claimed)
            elif granted[key] > 0:
                granted[key] -= 1
                batch.ready.append(claimed)
            else:
                rate = limits[claimed.kind]
                until = _window_start(now, rate.window_s) + timedelta(seconds=rate.window_s)
                releases.append(store.Release(claimed.id, claimed.attempt, "pending", until))
                batch.outcomes[claimed.id] = Outcome(claimed.id, "deferred", claimed.attempt - 1, next_attempt_at=until)
        store.release(cur, releases, now)
        deferred = [(r.id, r.next_attempt_at) for r in releases if r.next_attempt_at is not None]
        if deferred:
            after_commit(lambda: _wake(deferred, now, settings))
    return batch


def _ready(
    cur: Any,
    row: dict[str, Any],
    points: Mapping[UUID, dict[str, Any]],
    configs: dict[UUID, dict[str, Any] | BaseException],
    now: datetime,
    settings: Settings,
) -> Claimed | str:
    """The claimed delivery with its channel's configuration and its message; or why it is skipped."""
    kind = str(row["channel"])
    payload: Mapping[str, Any] = row["payload"] or {}
    point = points.get(row["contact_point_id"]) if row["contact_point_id"] else None
    incident = _incident(row)
    message = render.build_message(row, incident, links=render.links_for(incident, row["user_id"], now, settings))
    if row["contact_point_id"] is None and row["user_id"] is not None and kind == "email":
        to = payload.get("to")
        if not isinstance(to, str) or not to:
            return "the person has no e-mail address"
        return Claimed(row, kind, {"addresses": [to]}, message)
    if point is None:
        return "the contact point was deleted"
    if point.get("deleted_at") is not None:
        return "the contact point was deleted"
    if not point.get("enabled", True):
        return "the contact point is disabled"
    point_id = point["id"]
    if point_id not in configs:
        configs[point_id] = _open(cur, point, settings)
    config = configs[point_id]
    if isinstance(config, BaseException):
        return Claimed(
            row,
            kind,
            {},
            message,
            point.get("name"),
            SendResult(ok=False, retryable=True, error="the contact point's secret could not be opened"),
        )
    return Claimed(row, kind, config, message, point.get("name"))


def _open(cur: Any, point: Mapping[str, Any], settings: Settings) -> dict[str, Any] | BaseException:
    from observai.notify import contact_points

    try:
        return dict(contact_points.channel_config(cur, point, settings))
    except Exception as exc:  # KMS out, a damaged secret: this contact point's deliveries retry later
        logger.error(
            "contact point secret not opened",
            extra={"contact_point_id": str(point["id"]), "error": exc.__class__.__name__},
        )
        return exc


def _take_slots(
    cur: Any, candidates: Sequence[Claimed], now: datetime, limits: Mapping[str, RateLimit]
) -> dict[str, int]:
    wanted: dict[str, tuple[int, RateLimit]] = {}
    for claimed in candidates:
        if claimed.result is not None or claimed.kind not in limits:
            continue
        key = limit_key(claimed.kind, claimed.config)
        if key is not None:
            count, rate = wanted.get(key, (0, limits[claimed.kind]))
            wanted[key] = (count + 1, rate)
    requests = [
        store.SlotRequest(key, count, rate.messages, _window_start(now, rate.window_s))
        for key, (count, rate) in wanted.items()
    ]
    return store.take_slots(cur, requests)


# --- 2. send -------------------------------------------------------------------------------------------------


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    """The container's sending threads, kept across batches and invocations (starting threads for every batch
    costs about as much as the database's part of it)."""
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="notify")
        return pool


def send_all(ready: Sequence[Claimed], settings: Settings, max_workers: int = MAX_WORKERS) -> list[SendResult]:
    """Every message side by side (a thread each, at most ``max_workers``): a receiver that takes its whole timeout
    holds only its own thread. The results in order."""
    if not ready:
        return []
    if len(ready) == 1:
        return [_send_one(ready[0], settings)]
    pool = _pool(max(1, max_workers))
    futures = [pool.submit(_send_one, claimed, settings) for claimed in ready]
    return [f.result() for f in futures]


def _send_one(claimed: Claimed, settings: Settings) -> SendResult:
    if claimed.result is not None:
        return claimed.result
    from observai.notify import channels

    try:
        if claimed.kind in _DB_CHANNELS:
            with _db_turn:
                return channels.send(claimed.kind, claimed.config, claimed.message, settings=settings)
        return channels.send(claimed.kind, claimed.config, claimed.message, settings=settings)
    except Exception as exc:  # a channel must not raise; if one does, the delivery is retried
        logger.error(
            "notification channel raised",
            extra={"delivery_id": str(claimed.id), "channel": claimed.kind, "error": exc.__class__.__name__},
        )
        return SendResult(ok=False, retryable=True, error=f"internal error ({exc.__class__.__name__})")


# --- 3. record -----------------------------------------------------------------------------------------------


def record(
    ready: Sequence[Claimed], results: Sequence[SendResult], now: datetime, settings: Settings | None = None
) -> dict[UUID, Outcome]:
    """Step 3 (one transaction): record each attempt's result (fenced on its attempt number), disable the contact
    points the receivers said are gone, add the timeline events; retries within 15 minutes are woken after the
    commit."""
    settings = settings or get_settings()
    records: list[store.Record] = []
    planned: dict[UUID, Outcome] = {}
    disables: list[tuple[Claimed, str]] = []
    for claimed, result in zip(ready, results, strict=True):
        record_, outcome = _decide(claimed, result, now)
        records.append(record_)
        planned[claimed.id] = outcome
        if outcome.outcome == "disabled" and result.disable_reason:
            disables.append((claimed, result.disable_reason))
    with transaction() as cur:
        held = store.record(cur, records, now)
        for claimed, reason in disables:
            if claimed.id in held and claimed.row["contact_point_id"] is not None:
                from observai.notify import contact_points

                contact_points.disable(cur, claimed.row["contact_point_id"], reason[:500], now)
        outcomes = {
            did: outcome if did in held else Outcome(did, "superseded", outcome.attempt, outcome.status_code)
            for did, outcome in planned.items()
        }
        retries = [(o.delivery_id, o.next_attempt_at) for o in outcomes.values() if o.outcome == "retrying"]
        if retries:
            after_commit(lambda: _wake(retries, now, settings))
    for claimed, result in zip(ready, results, strict=True):
        outcome = outcomes[claimed.id]
        logger.info(
            "notification attempt",
            extra={
                "delivery_id": str(claimed.id),
                "channel": claimed.kind,
                "contact_point_id": str(claimed.row["contact_point_id"]) if claimed.row["contact_point_id"] else None,
                "event": claimed.row["event"],
                "attempt": claimed.attempt,
                "status_code": result.status_code,
                "duration_ms": result.duration_ms,
                "outcome": outcome.outcome,
            },
        )
    return outcomes


def _decide(claimed: Claimed, result: SendResult, now: datetime) -> tuple[store.Record, Outcome]:
    attempt = claimed.attempt
    finished = now + timedelta(milliseconds=max(0, result.duration_ms))

    def rec(status: str, next_at: datetime | None = None, error: str | None = None) -> store.Record:
        return store.Record(
            claimed.id,
            attempt,
            status,
            next_at,
            result.status_code,
            scrub(error, claimed.config),
            finished if status == "sent" else None,
            result.progress,
        )

    if result.ok:
        return rec("sent"), Outcome(claimed.id, "sent", attempt, result.status_code)
    error = _error_text(result)
    if result.disable_reason:
        return rec("failed", error=result.disable_reason), Outcome(claimed.id, "disabled", attempt, result.status_code)
    if not result.retryable:
        return rec("failed", error=error), Outcome(claimed.id, "failed", attempt, result.status_code)
    delay = retry_delay_s(attempt, result.retry_after_s)
    if delay is None:
        final = f"{error} (after {attempt} attempts)"
        return rec("failed", error=final), Outcome(claimed.id, "failed", attempt, result.status_code)
    next_at = finished + timedelta(seconds=delay)
    return rec("pending", next_at, error), Outcome(claimed.id, "retrying", attempt, result.status_code, next_at)


def _error_text(result: SendResult) -> str:
    if result.error:
        return result.error
    if result.status_code is not None:
        excerpt = (result.response_excerpt or "").strip()[:200]
        return f"HTTP {result.status_code}" + (f": {excerpt}" if excerpt else "")
    return "no answer"


def _wake(due: Iterable[tuple[UUID, datetime | None]], now: datetime, settings: Settings) -> None:
    """Delay messages for what is due within SQS's 15 minutes, grouped by delay; later ones are the sweep's."""
    by_delay: dict[int, list[UUID]] = {}
    for delivery_id, at in due:
        if at is None:
            continue
        delay = max(0, math.ceil((at - now).total_seconds()))
        if delay <= MAX_DELAY_S:
            by_delay.setdefault(delay, []).append(delivery_id)
    for delay, ids in by_delay.items():
        send_wakeups(ids, delay, settings)


# --- entry points --------------------------------------------------------------------------------------------


def _run_batch(
    ids: Sequence[UUID] | None,
    limit: int,
    clock: Callable[[], datetime],
    settings: Settings,
    max_workers: int,
    limits: Mapping[str, RateLimit] | None,
) -> Batch:
    batch = prepare(ids=ids, limit=limit, now=clock(), settings=settings, limits=limits)
    if batch.ready:
        results = send_all(batch.ready, settings, max_workers)
        batch.outcomes.update(record(batch.ready, results, clock(), settings))
    return batch


def deliver_many(
    ids: Sequence[UUID],
    clock: Callable[[], datetime],
    *,
    settings: Settings | None = None,
    max_workers: int = MAX_WORKERS,
    limits: Mapping[str, RateLimit] | None = None,
) -> dict[UUID, Outcome]:
    """Deliver the due ones among ``ids`` (a batch of queue wake-ups), ``max_workers`` at a time; the outcome of
    each id.
    Raises only for the database's failures (the queue then delivers the wake-ups again)."""
    settings = settings or get_settings()
    unique = list(dict.fromkeys(ids))
    outcomes: dict[UUID, Outcome] = {}
    size = max(1, max_workers)
    for start in range(0, len(unique), size):
        chunk = unique[start : start + size]
        outcomes.update(_run_batch(chunk, len(chunk), clock, settings, max_workers, limits).outcomes)
    for did in unique:
        outcomes.setdefault(did, Outcome(did, "not_due"))
    return outcomes


@dataclass
class SweepReport:
    claimed: int = 0
    abandoned: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    more_pending: bool = False


def sweep(
    clock: Callable[[], datetime],
    *,
    limit: int = 200,
    settings: Settings | None = None,
    max_workers: int = MAX_WORKERS,
    limits: Mapping[str, RateLimit] | None = None,
) -> SweepReport:
    """One bounded round of the minute sweep: the most overdue deliveries (retries past SQS's 15 minutes, lost
    wake-ups, expired leases), at most ``limit``, ``max_workers`` at a time. Overlap-safe: claims skip what another
    worker holds, and a claimed delivery is not due for anyone else until its lease expires. Resumes where it
    stopped: whatever it leaves is still due at the next run."""
    settings = settings or get_settings()
    report = SweepReport()
    with transaction() as cur:
        report.abandoned = store.fail_abandoned(cur, clock(), MAX_ATTEMPTS, limit)
    while report.claimed < limit:
        size = min(max(1, max_workers), limit - report.claimed)
        batch = _run_batch(None, size, clock, settings, max_workers, limits)
        report.claimed += batch.claimed
        for outcome in batch.outcomes.values():
            report.outcomes[outcome.outcome] = report.outcomes.get(outcome.outcome, 0) + 1
        if batch.claimed < size:
            break
    report.more_pending = report.claimed >= limit
    return report


def handle_queue_messages(
    event: dict[str, Any],
    context: Any = None,
    *,
    clock: Callable[[], datetime] | None = None,
    max_workers: int = MAX_WORKERS,
    limits: Mapping[str, RateLimit] | None = None,
) -> dict[str, Any]:
    """The SQS event's partial batch response (Powertools' batch utility): the batch's deliveries run first, side
    by side; then each record is reported by its delivery's result. A record that does not decode fails (to the
    DLQ, to be looked at); when the database fails, every record fails and SQS delivers them again."""
    import contextlib

    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from observai.notify.queue import parse_message

    clock = clock or (lambda: datetime.now(UTC))
    if not event.get("Records"):
        return {"batchItemFailures": []}
    ids: dict[str, UUID] = {}
    for item in event.get("Records") or []:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            ids[item["messageId"]] = parse_message(item["body"])
    failure: Exception | None = None
    outcomes: dict[UUID, Outcome] = {}
    try:
        outcomes = deliver_many(list(ids.values()), clock, max_workers=max_workers, limits=limits)
    except Exception as exc:
        failure = exc
        logger.error("notification deliveries failed; SQS retries them", extra={"error": exc.__class__.__name__})

    def record_handler(record: Any) -> str:  # the batch utility passes it by this name
        delivery_id = ids.get(record.message_id)
        if delivery_id is None:
            logger.error("notification wake-up cannot be decoded", extra={"message_id": record.message_id})
            raise ValueError("not a notification delivery message")
        if failure is not None:
            raise failure
        return outcomes[delivery_id].outcome

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
