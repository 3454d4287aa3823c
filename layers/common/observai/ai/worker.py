"""The AI worker: runs the due ``ai_tasks`` (observai.ai.tasks) through their kind's handler (``HANDLERS``).

* claim (one short transaction): due tasks (``due_at <= now``, not held by a live lease), ``FOR UPDATE SKIP
  LOCKED``, at most ``limit``; each gets a lease (``claimed_until``) and ``attempts + 1``. A redelivered wake-up,
  a second worker or an overlapping sweep finds nothing to claim.
* run: the handler, outside any transaction (a model call takes seconds); it opens its own transactions.
* record: done → the task is deleted, fenced on its ``due_at``: a task enqueued again while it ran (the incident
  changed) stays, due at its new time. Raised → retried with backoff (30 s, 2 min, 10 min, 30 min), the error
  kept; after ``MAX_ATTEMPTS`` it is dropped with an error log. Handlers turn the model's own failures into
  results (a summary with status "failed" or "unavailable"): what raises is the database or a bug.
* resumable: a worker that dies leaves its tasks leased; when the lease expires the sweep claims them again.

Invoked by functions/ai_worker (SQS wake-ups, and a minute sweep).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from observai.db.connection import Cursor, after_commit, transaction
from observai.observability import logger

Handler = Callable[[Mapping[str, Any], datetime], None]

# A task's lease: the model's timeout and retries fit well within it (ai_timeout_s <= 120 s).
LEASE_S = 300
RETRY_DELAYS_S: tuple[int, ...] = (30, 120, 600, 1800)
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1
# A task of a kind no handler of this deployment knows waits this long (a later deployment may know it).
UNKNOWN_KIND_DELAY_S = 3600
ERROR_MAX = 1000


def _summary(task: Mapping[str, Any], now: datetime) -> None:
    from observai.ai import summaries

    summaries.run_task(task, now)


def _embedding(task: Mapping[str, Any], now: datetime) -> None:
    from observai.ai import similar

    similar.embed_incident(task, now)


# kind -> handler(task row, now).
HANDLERS: dict[str, Handler] = {
    "summary": _summary,
    "embedding": _embedding,
}


@dataclass
class Report:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    more_pending: bool = False

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def retry_delay_s(attempt: int) -> int | None:
    """Seconds before attempt ``attempt + 1`` after attempt ``attempt`` (1-based) raised; None after the last."""
    return RETRY_DELAYS_S[attempt - 1] if attempt < MAX_ATTEMPTS else None


def claim(cur: Cursor, *, ids: Sequence[int] | None, limit: int, now: datetime) -> list[dict[str, Any]]:
    selector = "id = any(%(ids)s) and " if ids is not None else ""
    cur.execute(
        "with due as (select id from public.ai_tasks"
        f" where {selector}due_at <= %(now)s and (claimed_until is null or claimed_until <= %(now)s)"
        " order by due_at limit %(limit)s for update skip locked)"
        " update public.ai_tasks t set claimed_until = %(lease)s, attempts = t.attempts + 1"
        " from due where t.id = due.id"
        " returning t.id, t.org_id, t.project_id, t.incident_id, t.kind, t.reason, t.due_at, t.attempts, t.created_at",
        {
            "ids": list(ids) if ids is not None else None,
            "now": now,
            "limit": limit,
            "lease": now + timedelta(seconds=LEASE_S),
        },
    )
    return sorted((dict(r) for r in cur.fetchall()), key=lambda r: (r["due_at"], r["id"]))


def _done(cur: Cursor, task: Mapping[str, Any]) -> None:
    cur.execute("delete from public.ai_tasks where id = %s and due_at = %s", (task["id"], task["due_at"]))


def _failed(cur: Cursor, task: Mapping[str, Any], error: str, now: datetime) -> str:
    delay = retry_delay_s(int(task["attempts"]))
    if delay is None:
        cur.execute("delete from public.ai_tasks where id = %s and due_at = %s", (task["id"], task["due_at"]))
        logger.error(
            "AI task dropped after its last attempt",
            extra={
                "task_id": task["id"],
                "kind": task["kind"],
                "incident_id": str(task["incident_id"]),
                "error": error,
            },
        )
        return "dropped"
    _reschedule(cur, task, now, delay, error)
    return "retrying"


def _reschedule(cur: Cursor, task: Mapping[str, Any], now: datetime, delay: int, error: str | None) -> None:
    cur.execute(
        "update public.ai_tasks set due_at = %s, claimed_until = null, last_error = %s where id = %s and due_at = %s",
        (now + timedelta(seconds=delay), error[:ERROR_MAX] if error else None, task["id"], task["due_at"]),
    )
    if cur.rowcount:
        from observai.ai.tasks import send_wakeups

        task_id = int(task["id"])
        after_commit(lambda: send_wakeups([(task_id, delay)]))


def run_task(task: Mapping[str, Any], clock: Callable[[], datetime], handlers: Mapping[str, Handler]) -> str:
    """Run one claimed task and record what came of it: done, retrying, dropped or deferred (unknown kind)."""
    handler = handlers.get(str(task["kind"]))
    if handler is None:
        with transaction() as cur:
            _reschedule(cur, task, clock(), UNKNOWN_KIND_DELAY_S, f"no handler for {task['kind']}")
        return "deferred"
    try:
        handler(task, clock())
    except Exception as exc:
        error = f"{exc.__class__.__name__}: {exc}"
        logger.warning("AI task failed", extra={"task_id": task["id"], "kind": task["kind"], "error": error})
        with transaction() as cur:
            return _failed(cur, task, error, clock())
    with transaction() as cur:
        _done(cur, task)
    return "done"


def run(
    clock: Callable[[], datetime],
    *,
    ids: Sequence[int] | None = None,
    limit: int = 20,
    handlers: Mapping[str, Handler] | None = None,
    time_left_ms: Callable[[], int] | None = None,
    min_remaining_ms: int = 70_000,
) -> Report:
    """One bounded round: claim up to ``limit`` due tasks (among ``ids`` when given: a queue batch) and run them one
    after another while the invocation has ``min_remaining_ms`` left; the tasks not started are released (due
    again at once). Overlap-safe and resumable (see the module's notes)."""
    handlers = HANDLERS if handlers is None else handlers
    report = Report()
    with transaction() as cur:
        tasks = claim(cur, ids=ids, limit=limit, now=clock())
    report.claimed = len(tasks)
    report.more_pending = ids is None and len(tasks) >= limit
    for i, task in enumerate(tasks):
        if time_left_ms is not None and time_left_ms() < min_remaining_ms:
            _release(tasks[i:])
            report.more_pending = True
            report.outcomes["released"] = len(tasks) - i
            break
        report.count(run_task(task, clock, handlers))
    return report


def _release(tasks: Sequence[Mapping[str, Any]]) -> None:
    with contextlib.suppress(Exception), transaction() as cur:  # else their lease expires and the sweep has them
        cur.execute(
            "update public.ai_tasks set claimed_until = null, attempts = greatest(attempts - 1, 0) where id = any(%s)",
            ([t["id"] for t in tasks],),
        )


def handle_queue_messages(
    event: dict[str, Any], context: Any = None, *, clock: Callable[[], datetime] | None = None
) -> dict[str, Any]:
    """The SQS event's partial batch response: the named tasks run (those due and free), then each record is
    reported. A record that does not decode fails (to the DLQ); when the database fails, every record fails and
    SQS delivers them again. A task not due yet (a debounce moved it) or held by another worker is a success: its
    row wakes the sweep when due."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from observai.ai.tasks import parse_message

    now_fn = clock or (lambda: datetime.now(UTC))
    if not event.get("Records"):
        return {"batchItemFailures": []}
    ids: dict[str, int] = {}
    for item in event.get("Records") or []:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            ids[item["messageId"]] = parse_message(item["body"])
    failure: Exception | None = None
    try:
        time_left = context.get_remaining_time_in_millis if context is not None else None
        run(now_fn, ids=sorted(set(ids.values())), limit=max(1, len(ids)), time_left_ms=time_left)
    except Exception as exc:
        failure = exc
        logger.error("AI tasks failed; SQS retries them", extra={"error": exc.__class__.__name__})

    def record_handler(record: Any) -> str:
        if record.message_id not in ids:
            logger.error("AI task wake-up cannot be decoded", extra={"message_id": record.message_id})
            raise ValueError("not an AI task message")
        if failure is not None:
            raise failure
        return "ok"

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
