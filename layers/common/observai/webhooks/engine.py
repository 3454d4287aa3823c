"""The delivery engine's two entry points (DeliverWebhooksFunction):

* the delivery queue: a batch of wake-ups is delivered side by side (``delivery.deliver_many``), so one slow
  endpoint does not hold up the others of the batch; a message whose delivery raised (the database out) is reported
  as a batch item failure and retried by SQS, every other one is done (a retry is a new wake-up);
* the minute sweep: the outbox fan-out, the pruning of old dispatched events, then every message whose
  ``next_attempt_at`` has passed (retries past SQS's 15 minutes, lost wake-ups, expired leases), bounded. Overlap
  safe: the fan-out claims events with SKIP LOCKED and each delivery claims its message, so two sweeps share the
  work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from observai.db.connection import transaction
from observai.observability import logger
from observai.webhooks import delivery, fanout
from observai.webhooks.queue import parse_message


@dataclass
class SweepReport:
    events: int = 0
    messages: int = 0
    pruned: int = 0
    due: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    more_pending: bool = False


def sweep(
    clock: Callable[[], datetime],
    *,
    fanout_limit: int = 500,
    due_limit: int = 200,
    max_workers: int = 16,
) -> SweepReport:
    now = clock()
    report = SweepReport()
    fanned = fanout.fan_out(now, fanout_limit)
    report.events, report.messages = fanned.events, fanned.messages
    report.pruned = fanout.prune_dispatched(now)
    with transaction() as cur:
        cur.execute(
            "select id from public.webhook_messages where next_attempt_at <= %s order by next_attempt_at limit %s",
            (now, due_limit),
        )
        due = [row["id"] for row in cur.fetchall()]
    report.due = len(due)
    report.more_pending = fanned.more_pending or len(due) == due_limit
    for result in delivery.deliver_many(due, clock, max_workers=max_workers).values():
        if isinstance(result, BaseException):
            report.errors += 1
        else:
            report.outcomes[result.outcome] = report.outcomes.get(result.outcome, 0) + 1
    return report


def handle_queue_messages(
    event: dict[str, Any], context: Any = None, *, clock: Callable[[], datetime] | None = None, max_workers: int = 16
) -> dict[str, Any]:
    """The SQS event's partial batch response (Powertools' batch utility). The batch's deliveries run first, side
    by side; the batch utility then reports each record by its delivery's result."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    clock = clock or (lambda: datetime.now(UTC))
    ids: dict[str, UUID] = {}
    for record in event.get("Records") or []:
        # One that does not decode is reported as a failure below (it ends in the DLQ, to be looked at).
        with contextlib.suppress(ValueError):
            ids[record["messageId"]] = parse_message(record["body"])
    results = delivery.deliver_many(list(ids.values()), clock, max_workers=max_workers)

    def record_handler(record: Any) -> str:
        message_id = ids.get(record.message_id)
        if message_id is None:
            logger.error("webhook wake-up cannot be decoded", extra={"message_id": record.message_id})
            raise ValueError("not a webhook delivery message")
        result = results[message_id]
        if isinstance(result, BaseException):
            logger.error(
                "webhook delivery failed; SQS retries it",
                extra={"webhook_message_id": str(message_id), "error": result.__class__.__name__},
            )
            raise result
        return result.outcome

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
