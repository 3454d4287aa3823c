"""The alert dispatcher, invoked two ways:

* SQS (the alert timer queue): each message is a group's timer; the group is flushed if due (partial batch
  failures: a failed flush is retried by SQS, an early or redelivered message is a no-op);
* every minute (EventBridge Scheduler): the safety net: routes waiting transitions and flushes every group whose
  timer has passed (timers past SQS's 15 minutes, lost messages), in bounded rounds while time is left.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.alerts import dispatch
from observai.observability import logger, traced
from observai.scheduled import bounded_rounds, scheduled_job, summed_outcomes
from observai.sqs_batches import is_sqs_event

# Start another bounded round only with this much of the invocation left.
MIN_REMAINING_MS = 20_000
MAX_ROUNDS = 5


@scheduled_job
def sweep_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rounds = bounded_rounds(
        lambda: dispatch.sweep(datetime.now(UTC)), context, max_rounds=MAX_ROUNDS, min_remaining_ms=MIN_REMAINING_MS
    )
    outcomes = summed_outcomes(r.outcomes for r in rounds)
    summary = {
        "rounds": len(rounds),
        "routed": sum(r.routed for r in rounds),
        "due": sum(r.due for r in rounds),
        "outcomes": outcomes,
        "more_pending": rounds[-1].more_pending,
    }
    logger.info("alert dispatch sweep done", extra=summary)
    return summary


@logger.inject_lambda_context(log_event=False)
@traced
def timer_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatch.handle_timer_messages(event, context)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        return timer_handler(event, context)
    return sweep_handler(event, context)
