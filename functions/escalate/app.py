"""The escalation engine's timers, invoked two ways:

* SQS (the escalation timer queue): each message names an incident's run and the seq it was set for; the run moves
  if that seq is still current and its time has come (partial batch failures: a failed move is retried by SQS; a
  stale, early or redelivered message is a no-op, an early one re-arms itself);
* every minute (EventBridge Scheduler): the safety net: every run whose time has passed moves (waits past SQS's 15
  minutes, lost messages), in bounded rounds while time is left; SKIP LOCKED, so overlapping runs are safe.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.escalation import engine
from observai.observability import logger, traced
from observai.scheduled import bounded_rounds, scheduled_job, summed_outcomes
from observai.sqs_batches import is_sqs_event

# Start another bounded round only with this much of the invocation left.
MIN_REMAINING_MS = 20_000
MAX_ROUNDS = 5


@scheduled_job
def sweep_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rounds = bounded_rounds(
        lambda: engine.sweep(datetime.now(UTC)), context, max_rounds=MAX_ROUNDS, min_remaining_ms=MIN_REMAINING_MS
    )
    summary = {
        "rounds": len(rounds),
        "due": sum(r.due for r in rounds),
        "outcomes": summed_outcomes(r.outcomes for r in rounds),
        "more_pending": rounds[-1].more_pending,
    }
    logger.info("escalation sweep done", extra=summary)
    return summary


@logger.inject_lambda_context(log_event=False)
@traced
def timer_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return engine.handle_timer_messages(event, context)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        return timer_handler(event, context)
    return sweep_handler(event, context)
