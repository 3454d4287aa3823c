"""The webhook delivery engine, invoked two ways:

* SQS (WebhookDeliveryQueue): each message wakes one webhook message up; a batch is delivered side by side, so a
  slow endpoint does not delay the others (partial batch failures: a delivery that raised is retried by SQS);
* every minute (EventBridge Scheduler): the outbox fan-out, then every message whose next attempt has come
  (retries past SQS's 15 minutes, lost wake-ups, dead workers' leases), in bounded rounds while time is left.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.observability import logger, traced
from observai.scheduled import bounded_rounds, scheduled_job, summed_outcomes
from observai.sqs_batches import is_sqs_event
from observai.webhooks import engine

# Start another bounded round only with this much of the invocation left (a round may wait a receiver's timeout).
MIN_REMAINING_MS = 30_000
MAX_ROUNDS = 5


def _now() -> datetime:
    return datetime.now(UTC)


@scheduled_job
def sweep_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rounds = bounded_rounds(
        lambda: engine.sweep(_now), context, max_rounds=MAX_ROUNDS, min_remaining_ms=MIN_REMAINING_MS
    )
    outcomes = summed_outcomes(r.outcomes for r in rounds)
    summary = {
        "rounds": len(rounds),
        "events": sum(r.events for r in rounds),
        "messages": sum(r.messages for r in rounds),
        "pruned": sum(r.pruned for r in rounds),
        "due": sum(r.due for r in rounds),
        "errors": sum(r.errors for r in rounds),
        "outcomes": outcomes,
        "more_pending": rounds[-1].more_pending,
    }
    logger.info("webhook sweep done", extra=summary)
    return summary


@logger.inject_lambda_context(log_event=False)
@traced
def queue_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return engine.handle_queue_messages(event, context)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        return queue_handler(event, context)
    return sweep_handler(event, context)
