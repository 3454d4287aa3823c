"""Scheduled every minute (EventBridge Scheduler): incidents whose snooze has ended are triggered again.

Each run wakes at most ``MAX_PER_RUN`` incidents per transaction (claimed with SKIP LOCKED: overlapping runs are
safe), and goes on while a full batch came back and the invocation has time left; what remains waits a minute.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.incidents.timers import wake_snoozed
from observai.observability import logger
from observai.scheduled import scheduled_job

MAX_PER_RUN = 500
MAX_RUNS = 10
MIN_REMAINING_MS = 10_000


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    woken, runs = 0, 0
    for _ in range(MAX_RUNS):
        count = wake_snoozed(datetime.now(UTC), MAX_PER_RUN)
        woken, runs = woken + count, runs + 1
        if count < MAX_PER_RUN or context.get_remaining_time_in_millis() < MIN_REMAINING_MS:
            break
    summary = {"woken": woken, "runs": runs, "more_pending": count == MAX_PER_RUN}
    logger.info("snoozed incidents woken", extra=summary)
    return summary
