"""The notification delivery worker (observai.notify.deliveries), invoked two ways:

* SQS (NotificationQueue): each message wakes one delivery up; a batch is claimed, sent side by side (a thread
  each: a slow receiver does not delay the others) and recorded together (partial batch failures: when the
  database fails, the batch's records are retried by SQS; a message that does not decode ends in the DLQ);
* every minute (EventBridge Scheduler): every delivery whose next attempt has come (retries past SQS's 15 minutes,
  lost wake-ups, expired leases), in bounded rounds while time is left.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.notify import deliveries
from observai.observability import logger, traced
from observai.scheduled import bounded_rounds, scheduled_job, summed_outcomes
from observai.sqs_batches import is_sqs_event

# Start another bounded round only with this much of the invocation left (a round may wait a receiver's timeout).
MIN_REMAINING_MS = 20_000
MAX_ROUNDS = 5


def _now() -> datetime:
    return datetime.now(UTC)


@scheduled_job
def sweep_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rounds = bounded_rounds(
        lambda: deliveries.sweep(_now), context, max_rounds=MAX_ROUNDS, min_remaining_ms=MIN_REMAINING_MS
    )
    summary = {
        "rounds": len(rounds),
        "claimed": sum(r.claimed for r in rounds),
        "abandoned": sum(r.abandoned for r in rounds),
        "outcomes": summed_outcomes(r.outcomes for r in rounds),
        "more_pending": rounds[-1].more_pending,
    }
    logger.info("notification sweep done", extra=summary)
    return summary


@logger.inject_lambda_context(log_event=False)
@traced
def queue_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return deliveries.handle_queue_messages(event, context)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        return queue_handler(event, context)
    return sweep_handler(event, context)
