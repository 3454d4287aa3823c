"""The AI worker (observai.ai.worker), invoked two ways:

* SQS (AiTaskQueue): each message wakes one AI task up (an incident's summary, its embedding); the named tasks that
  are due run (partial batch failures: when the database fails, the batch's records are retried by SQS; a message
  that does not decode ends in the DLQ);
* every minute (EventBridge Scheduler): every task that is due (retries with backoff, debounced regenerations,
  lost wake-ups, expired leases), in bounded rounds while time is left.

The model is called only from here and IncidentSummariesFunction: google-genai is in this function's own
requirements.txt, imported on the first model call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.ai import worker
from observai.observability import logger, traced
from observai.scheduled import bounded_rounds, scheduled_job, summed_outcomes
from observai.sqs_batches import is_sqs_event

# A task may take two model calls of at most AI_TOTAL_TIMEOUT_S (25 s) each: start one only with this much of the
# invocation left.
MIN_REMAINING_MS = 70_000
MAX_ROUNDS = 5
ROUND_LIMIT = 20


def _now() -> datetime:
    return datetime.now(UTC)


@scheduled_job
def sweep_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rounds = bounded_rounds(
        lambda: worker.run(
            _now,
            limit=ROUND_LIMIT,
            time_left_ms=context.get_remaining_time_in_millis,
            min_remaining_ms=MIN_REMAINING_MS,
        ),
        context,
        max_rounds=MAX_ROUNDS,
        min_remaining_ms=MIN_REMAINING_MS,
    )
    summary = {
        "rounds": len(rounds),
        "claimed": sum(r.claimed for r in rounds),
        "outcomes": summed_outcomes(r.outcomes for r in rounds),
        "more_pending": rounds[-1].more_pending,
    }
    logger.info("AI task sweep done", extra=summary)
    return summary


@logger.inject_lambda_context(log_event=False)
@traced
def queue_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return worker.handle_queue_messages(event, context)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        return queue_handler(event, context)
    return sweep_handler(event, context)
