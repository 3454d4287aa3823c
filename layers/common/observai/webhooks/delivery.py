"""The delivery engine: attempts at webhook messages, their record, and what comes next.

``deliver_many(message_ids, clock)`` delivers a batch (an SQS batch, a sweep's due messages) in three steps, and
holds no database transaction while receivers are being called (a receiver may take the whole timeout). The
container has one database connection, so the database steps work on the whole batch at once: a batch costs a few
round trips in all, not a few per message (``deliver_message`` is a batch of one).

1. claim (one transaction, three round trips): the per-endpoint advisory locks of the batch's endpoints (in one
   order, so two claiming workers never deadlock), then the messages' rows with SKIP LOCKED, then each endpoint's
   live leases and recent attempts counted after the locks (so two workers' claims of one endpoint are counted one
   after the other). Nothing happens to a message unless it is due (pending with ``next_attempt_at <= now``, or
   delivering with a lease that expired: its worker died). A finished message (a redelivered SQS wake-up after the
   success) is a no-op, so nothing is ever delivered twice after a success. Past
   ``webhook_max_in_flight_per_endpoint`` live leases (or past its ``rate_limit_per_s`` in the last second), counting
   the messages claimed before it in the same batch, a message is deferred a moment instead, so one slow receiver
   holds only its own slots. Claimed: status ``delivering``, a lease (the timeout plus a margin, also written to
   ``next_attempt_at`` so the sweep finds it if the worker dies), ``attempts + 1``. The claims, deferrals and
   finished messages are written with the COMMIT, in one round trip;
2. the requests, side by side (a thread each, at most ``max_workers``; observai.webhooks.sender: SSRF guard,
   Standard Webhooks signature with the current secret, and the previous one while it is valid, no redirects, the
   timeout, connections kept per receiver);
3. record (one transaction per chunk of finished attempts, three round trips): the ``webhook_attempts`` rows in one
   statement, then a 2xx → succeeded (the endpoint's failure run ends); 410 → the endpoint is disabled and the
   message fails; anything else → the next attempt by the schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
   10 h, 14 h, 20 h, 24 h; ±10% jitter; at least the receiver's Retry-After on 429 and 503), or failed after the
   last one. An endpoint whose failures have run for 5 days is disabled at its next failure and the organization's
   owners and admins are e-mailed (Amazon SES). Every update of a message is fenced on its attempt number: a worker
   whose lease expired and was taken over records its attempt but changes nothing else (``superseded``).

Finished attempts are recorded when the pool goes quiet (no other attempt finished for ``_LULL_S``) or all are
done: the fast receivers of a batch are recorded at once, not after a slow one's timeout. A sweep's long list is
claimed as threads free up (never more claimed than threads, so no lease starts before its request can), half a
pool at a time, or whatever is free when the rest are slow.

Short delays (≤ 15 minutes) go on the delivery queue as SQS delay messages after the commit; longer ones are found
by the minute sweep.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

from psycopg import sql

from observai.config import Settings, get_settings
from observai.db.connection import Cursor, committing, transaction
from observai.observability import logger
from observai.webhooks.queue import send_wakeups

if TYPE_CHECKING:
    from observai.webhooks.sender import Attempt

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
# Finished attempts wait at most this long for others before they are recorded: the fast receivers of a batch
# finish within it of each other, a slow one does not hold their recording.
_LULL_S = 0.05

# Whole claims and records take turns on the container's one connection (two deliver_many in one process).
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
    now: datetime  # the claim's time: the webhook-timestamp and the attempt's ``at``


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
    """Claim, send and record one attempt of a message (a batch of one); never raises for the receiver's failures,
    only for the database's."""
    result = deliver_many([message_id], lambda: now, settings=settings, rng=rng)[message_id]
    if isinstance(result, BaseException):
        raise result
    return result


def deliver_many(
    message_ids: Sequence[UUID],
    clock: Callable[[], datetime],
    *,
    max_workers: int = 16,
    settings: Settings | None = None,
    rng: random.Random | None = None,
) -> dict[UUID, DeliveryOutcome | BaseException]:
    """Deliver several messages side by side (a thread each, at most ``max_workers``): a receiver that takes its
    whole timeout holds only its own thread. The result (or the error: the database's) of each, by id."""
    settings = settings or get_settings()
    todo = list(dict.fromkeys(message_ids))
    results: dict[UUID, DeliveryOutcome | BaseException] = {}
    if not todo:
        return results
    workers = min(max_workers, len(todo))
    running: dict[Future[Attempt], _Claim] = {}
    finished: list[tuple[_Claim, Attempt]] = []
    half = workers // 2
    lull = True
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook") as pool:
        while todo or running or finished:
            free = workers - len(running)
            if todo and free and (lull or len(running) <= half):
                # Claimed only as threads free up (a lease starts when its request can), half a pool at a time
                # or whatever is free when the rest are slow: a claim is a transaction, not one per message.
                take, todo = todo[:free], todo[free:]
                for claim in _claim_batch(take, clock(), settings, results):
                    running[pool.submit(_send, claim, settings)] = claim
            lull = True
            if running:
                waiting = bool(finished) or (bool(todo) and len(running) < workers)
                done, _ = wait(running, timeout=_LULL_S if waiting else None, return_when=FIRST_COMPLETED)
                lull = not done
                for future in done:
                    claim = running.pop(future)
                    try:
                        finished.append((claim, future.result()))
                    except Exception as exc:  # not the receiver's doing (a secret that does not open): the sweep
                        results[claim.message_id] = exc  # takes the message over when its lease expires
            if finished and (lull or not running or (todo and len(running) <= half)):
                _record_batch(finished, settings, rng, results)
                finished = []
    return results


def _send(claim: _Claim, settings: Settings) -> Attempt:
    from observai.webhooks import sender, signing

    secrets = [signing.decrypt_secret(ct, settings) for ct in claim.secret_ciphertexts]
    return sender.deliver(
        claim.url,
        msg_id=str(claim.event_id),
        body=message_body(claim.payload),
        secrets=secrets,
        now=claim.now,
        settings=settings,
    )


# --- claim ----------------------------------------------------------------------------------------------------------


def _claim_batch(
    ids: list[UUID], now: datetime, settings: Settings, results: dict[UUID, DeliveryOutcome | BaseException]
) -> list[_Claim]:
    """Claim what may be sent now of ``ids``; the outcome of every other one goes into ``results`` (its error if the
    database failed), and the deferred ones get their wake-up after the commit."""
    try:
        with _db_lock, transaction() as cur:
            claims, outcomes = _claim(cur, ids, now, settings)
    except Exception as exc:  # the caller decides (SQS retries the message; the sweep logs it)
        for mid in ids:
            results[mid] = exc
        return []
    results.update(outcomes)
    deferred = [(o.message_id, o.next_attempt_at) for o in outcomes.values() if o.next_attempt_at is not None]
    if deferred:
        send_wakeups(deferred, now, settings)
    return claims


def _claim(
    cur: Cursor, ids: list[UUID], now: datetime, settings: Settings
) -> tuple[list[_Claim], dict[UUID, DeliveryOutcome]]:
    literal_ids = sql.Literal(ids)
    # One round trip, three statements, each with its own snapshot (READ COMMITTED): the advisory locks of the
    # batch's endpoints in the order of their keys (never two workers holding one each and waiting for the other's);
    # the rows (SKIP LOCKED: another worker's claim or record is not waited for); and, after the locks, each
    # endpoint's live leases and attempts in the last second (``rate_limit_per_s`` of its latest are enough).
    cur.execute(
        sql.SQL(
            "select count(pg_advisory_xact_lock({cls}, k)) from (select distinct hashtext(endpoint_id::text) as k"
            " from public.webhook_messages where id = any({ids}) order by k) keys;"
            " select m.id, m.org_id, m.project_id, m.endpoint_id, m.event_id, m.payload, m.status, m.attempts,"
            " m.next_attempt_at, w.url, w.enabled, w.deleted_at, w.rate_limit_per_s, w.secret_ciphertext,"
            " w.previous_secret_ciphertext, w.previous_secret_expires_at"
            " from public.webhook_messages m join public.webhook_endpoints w on w.id = m.endpoint_id"
            " where m.id = any({ids}) for update of m skip locked;"
            " select w.id,"
            " (select count(*) from public.webhook_messages f where f.endpoint_id = w.id and f.status = 'delivering'"
            " and f.next_attempt_at > {now}) as in_flight,"
            " case when w.rate_limit_per_s is null then 0 else (select count(*) from (select a.at"
            " from public.webhook_attempts a where a.endpoint_id = w.id order by a.id desc limit w.rate_limit_per_s)"
            " recent where recent.at > {since}) end as recent"
            " from public.webhook_endpoints w"
            " where w.id in (select endpoint_id from public.webhook_messages where id = any({ids}))"
        ).format(
            cls=sql.Literal(_LOCK_CLASS),
            ids=sql.SQL("{}::uuid[]").format(literal_ids),
            now=sql.Literal(now),
            since=sql.Literal(now - timedelta(seconds=1)),
        )
    )
    cur.nextset()
    rows = {row["id"]: row for row in cur.fetchall()}
    cur.nextset()
    counts = {row["id"]: (int(row["in_flight"]), int(row["recent"])) for row in cur.fetchall()}
    missing = [mid for mid in ids if mid not in rows]
    existing: set[UUID] = set()
    if missing:
        cur.execute("select id from public.webhook_messages where id = any(%s)", (missing,))
        existing = {row["id"] for row in cur.fetchall()}

    lease_until = now + timedelta(seconds=settings.webhook_timeout_s + LEASE_MARGIN_S)
    max_in_flight = settings.webhook_max_in_flight_per_endpoint
    taken: dict[UUID, int] = {}  # claimed in this batch, by endpoint: in flight as soon as this commits
    claims: list[_Claim] = []
    outcomes: dict[UUID, DeliveryOutcome] = {}
    finished: list[UUID] = []
    deferred: dict[str, list[UUID]] = {"busy": [], "rate_limited": []}
    for mid in ids:
        row = rows.get(mid)
        if row is None:
            outcomes[mid] = DeliveryOutcome(mid, "in_flight" if mid in existing else "gone")
        elif row["status"] in ("succeeded", "failed"):
            outcomes[mid] = DeliveryOutcome(mid, "done")
        elif row["next_attempt_at"] is None or row["next_attempt_at"] > now:
            # Not yet: an early wake-up, or a live lease (the next_attempt_at of a delivering message is its lease).
            outcomes[mid] = DeliveryOutcome(mid, "in_flight" if row["status"] == "delivering" else "not_due")
        elif not row["enabled"] or row["deleted_at"] is not None:
            # Disabled or deleted since the fan-out: nothing more leaves for it (recover replays it once re-enabled).
            finished.append(mid)
            outcomes[mid] = DeliveryOutcome(mid, "endpoint_disabled")
        else:
            endpoint_id = row["endpoint_id"]
            live, recent = counts.get(endpoint_id, (0, 0))
            in_flight = live + taken.get(endpoint_id, 0)
            rate = row["rate_limit_per_s"]
            if in_flight >= max_in_flight:
                deferred["busy"].append(mid)
                outcomes[mid] = DeliveryOutcome(mid, "busy", next_attempt_at=now + timedelta(seconds=BUSY_DELAY_S))
            elif rate is not None and recent + in_flight >= rate:
                deferred["rate_limited"].append(mid)
                outcomes[mid] = DeliveryOutcome(
                    mid, "rate_limited", next_attempt_at=now + timedelta(seconds=RATE_DELAY_S)
                )
            else:
                taken[endpoint_id] = taken.get(endpoint_id, 0) + 1
                claims.append(_claim_of(row, now))

    statements: list[sql.Composable] = []
    if claims:
        statements.append(
            sql.SQL(
                "update public.webhook_messages set status = 'delivering', attempts = attempts + 1,"
                " lease_until = {lease}, next_attempt_at = {lease}, last_attempt_at = {now} where id = any({ids})"
            ).format(lease=sql.Literal(lease_until), now=sql.Literal(now), ids=_uuids([c.message_id for c in claims]))
        )
    for why, delay_s in (("busy", BUSY_DELAY_S), ("rate_limited", RATE_DELAY_S)):
        if deferred[why]:
            # pending again (a delivering row here had an expired lease: its worker is gone), due a moment later.
            statements.append(
                sql.SQL(
                    "update public.webhook_messages set status = 'pending', next_attempt_at = {}, lease_until = null"
                    " where id = any({})"
                ).format(sql.Literal(now + timedelta(seconds=delay_s)), _uuids(deferred[why]))
            )
    if finished:
        statements.append(_finish_statement(finished))
    if statements:
        with committing(cur) as last:  # the writes and COMMIT in one round trip
            last.extend(statements)
    return claims, outcomes


def _claim_of(row: dict[str, Any], now: datetime) -> _Claim:
    ciphertexts = [bytes(row["secret_ciphertext"])]
    expires = row["previous_secret_expires_at"]
    if row["previous_secret_ciphertext"] is not None and expires is not None and expires > now:
        ciphertexts.append(bytes(row["previous_secret_ciphertext"]))
    return _Claim(
        message_id=row["id"],
        org_id=row["org_id"],
        project_id=row["project_id"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        url=row["url"],
        payload=row["payload"],
        attempt=int(row["attempts"]) + 1,  # the row is locked: no one else changes it before the commit
        secret_ciphertexts=tuple(ciphertexts),
        now=now,
    )


def _uuids(ids: Sequence[UUID]) -> sql.Composable:
    return sql.SQL("{}::uuid[]").format(sql.Literal(list(ids)))


def _finish_statement(ids: Sequence[UUID]) -> sql.Composable:
    return sql.SQL(
        "update public.webhook_messages set status = 'failed', next_attempt_at = null, lease_until = null"
        " where id = any({})"
    ).format(_uuids(ids))


# --- record ---------------------------------------------------------------------------------------------------------

# The chunk's attempts as rows (``input``); their insert; the successes still ours (``done``); the failures still
# ours (``fence``, their rows locked for the decisions that follow); the endpoints' failure runs: ended by a success
# in the chunk, else started by its first failure if none had started. An endpoint with both a success and a failure
# in the chunk ends its run: it answers.
_RECORD = """
with input as (
    select * from unnest({ids}::uuid[], {attempts}::int[], {endpoints}::uuid[], {orgs}::uuid[], {projects}::uuid[],
        {ats}::timestamptz[], {statuses}::int[], {durations}::int[], {excerpts}::text[], {errors}::text[],
        {succeeded}::boolean[])
        as i(id, attempt, endpoint_id, org_id, project_id, at, status_code, duration_ms, excerpt, error, succeeded)
), inserted as (
    insert into public.webhook_attempts (org_id, project_id, message_id, endpoint_id, attempt, at, status_code,
        duration_ms, response_excerpt, error, succeeded)
    select org_id, project_id, id, endpoint_id, attempt, at, status_code, duration_ms, excerpt, error, succeeded
    from input
), done as (
    update public.webhook_messages m set status = 'succeeded', next_attempt_at = null, lease_until = null
    from input i where i.succeeded and m.id = i.id and m.status = 'delivering' and m.attempts = i.attempt
    returning m.id, m.endpoint_id
), fence as (
    select m.id, m.endpoint_id, i.at from public.webhook_messages m join input i on i.id = m.id
    where not i.succeeded and m.status = 'delivering' and m.attempts = i.attempt for update of m
), runs as (
    update public.webhook_endpoints w set failing_since = case when w.id in (select endpoint_id from done) then null
        else coalesce(w.failing_since, (select min(f.at) from fence f where f.endpoint_id = w.id)) end
    where w.id in (select endpoint_id from fence)
        or (w.id in (select endpoint_id from done) and w.failing_since is not null)
    returning w.id, w.failing_since
)
select d.id, true as ours, null::timestamptz as failing_since from done d
union all
select f.id, true, r.failing_since from fence f left join runs r on r.id = f.endpoint_id
"""


def _record_batch(
    finished: list[tuple[_Claim, Attempt]],
    settings: Settings,
    rng: random.Random | None,
    results: dict[UUID, DeliveryOutcome | BaseException],
) -> None:
    """Record finished attempts in one transaction; their outcomes (or the database's error) into ``results``.
    After the commit: the retries' wake-ups, the disabled notices, the log lines."""
    try:
        with _db_lock, transaction() as cur:
            outcomes, notify = _record(cur, finished, rng)
    except Exception as exc:  # the leases stay: the sweep takes these messages over once they expire
        for claim, _ in finished:
            results[claim.message_id] = exc
        return
    retries = [(o.message_id, o.next_attempt_at) for o in outcomes if o.outcome == "retrying" and o.next_attempt_at]
    if retries:
        send_wakeups(retries, min(claim.now for claim, _ in finished), settings)
    for claim in notify:
        _notify_disabled(claim, claim.now, settings)
    for (claim, attempt), outcome in zip(finished, outcomes, strict=True):
        results[claim.message_id] = outcome
        logger.info(
            "webhook attempt",
            extra={
                "webhook_message_id": str(claim.message_id),
                "endpoint_id": str(claim.endpoint_id),
                "attempt": claim.attempt,
                "status_code": attempt.status_code,
                "duration_ms": attempt.duration_ms,
                "outcome": outcome.outcome,
            },
        )


def _record(
    cur: Cursor, finished: list[tuple[_Claim, Attempt]], rng: random.Random | None
) -> tuple[list[DeliveryOutcome], list[_Claim]]:
    """Record the attempts and decide what follows; (each one's outcome in order, the claims whose endpoints this
    transaction disabled for failing 5 days: their owners and admins are told). Every update of a message is fenced
    on its attempt number: if its lease expired and another worker claimed it, that worker decides."""
    claims = [claim for claim, _ in finished]
    attempts = [attempt for _, attempt in finished]
    failing = sorted({c.endpoint_id for c, a in finished if not a.succeeded})
    healthy = sorted({c.endpoint_id for c, a in finished if a.succeeded})
    # Two recorders of overlapping endpoints lock them in one order first (no deadlock between their updates); then
    # the one statement of the chunk. One round trip.
    cur.execute(
        sql.SQL(
            "select id from public.webhook_endpoints where id = any({failing})"
            " or (id = any({healthy}) and failing_since is not null) order by id for no key update; "
        ).format(failing=_uuids(failing), healthy=_uuids(healthy))
        + sql.SQL(_RECORD).format(
            ids=_uuids([c.message_id for c in claims]),
            attempts=sql.Literal([c.attempt for c in claims]),
            endpoints=_uuids([c.endpoint_id for c in claims]),
            orgs=_uuids([c.org_id for c in claims]),
            projects=_uuids([c.project_id for c in claims]),
            ats=sql.Literal([c.now for c in claims]),
            statuses=sql.Literal([a.status_code for a in attempts]),
            durations=sql.Literal([max(0, a.duration_ms) for a in attempts]),
            excerpts=sql.Literal([_cut(a.response_excerpt, EXCERPT_MAX) for a in attempts]),
            errors=sql.Literal([_cut(a.error, ERROR_MAX) for a in attempts]),
            succeeded=sql.Literal([bool(a.succeeded) for a in attempts]),
        )
    )
    cur.nextset()
    ours = {row["id"]: row["failing_since"] for row in cur.fetchall()}

    outcomes: list[DeliveryOutcome] = []
    notify: list[_Claim] = []
    to_finish: list[UUID] = []
    retries: list[tuple[UUID, datetime]] = []
    for claim, attempt in finished:
        decided, told = _decide(cur, claim, attempt, ours, rng)
        outcomes.append(decided)
        if told:
            notify.append(claim)
        if decided.outcome == "retrying" and decided.next_attempt_at is not None:
            retries.append((claim.message_id, decided.next_attempt_at))
        elif decided.outcome in ("failed", "endpoint_disabled"):
            to_finish.append(claim.message_id)

    statements: list[sql.Composable] = []
    if retries:
        statements.append(
            sql.SQL(
                "update public.webhook_messages m set status = 'pending', next_attempt_at = r.at, lease_until = null"
                " from unnest({}::uuid[], {}::timestamptz[]) as r(id, at) where m.id = r.id"
            ).format(sql.Literal([mid for mid, _ in retries]), sql.Literal([at for _, at in retries]))
        )
    if to_finish:
        statements.append(_finish_statement(to_finish))
    if statements:
        with committing(cur) as last:  # the last statements and COMMIT in one round trip
            last.extend(statements)
    return outcomes, notify


def _decide(
    cur: Cursor, claim: _Claim, attempt: Attempt, ours: dict[UUID, datetime | None], rng: random.Random | None
) -> tuple[DeliveryOutcome, bool]:
    """What follows one recorded attempt: (its outcome, whether this transaction disabled the endpoint for failing
    5 days). ``ours``: the chunk's messages whose lease was still theirs, with the endpoint's failing_since."""

    def outcome(name: str, next_at: datetime | None = None) -> DeliveryOutcome:
        return DeliveryOutcome(claim.message_id, name, claim.attempt, attempt.status_code, next_at)

    if claim.message_id not in ours:
        return outcome("superseded"), False
    if attempt.succeeded:
        return outcome("succeeded"), False
    finished_at = claim.now + timedelta(milliseconds=attempt.duration_ms)
    failing_since = ours[claim.message_id]  # None: a success of the endpoint in this chunk ended the run
    if attempt.gone:
        _disable(cur, claim.endpoint_id, GONE_REASON, finished_at)
        return outcome("endpoint_disabled"), False
    if failing_since is not None and failing_since <= finished_at - DISABLE_AFTER:
        return outcome("endpoint_disabled"), _disable(cur, claim.endpoint_id, FAILING_REASON, finished_at)
    retry_after = attempt.retry_after_s if attempt.status_code in (429, 503) else None
    delay = retry_delay_s(claim.attempt, retry_after, rng)
    if delay is None:
        return outcome("failed"), False
    return outcome("retrying", finished_at + timedelta(seconds=delay)), False


def _cut(text: str | None, limit: int) -> str | None:
    return text[:limit] if text is not None else None


def _disable(cur: Cursor, endpoint_id: UUID, reason: str, at: datetime) -> bool:
    """Disable the endpoint; True only for the transaction that turned it off (one notice, not one per worker)."""
    cur.execute(
        "update public.webhook_endpoints set enabled = false, disabled_reason = %s, disabled_at = %s,"
        " updated_at = %s where id = %s and enabled returning id",
        (reason, at, at, endpoint_id),
    )
    return cur.fetchone() is not None


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
