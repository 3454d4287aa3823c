"""Scheduled every minute (EventBridge Scheduler): detect-anomalies (observai.anomalies.job).

Bounded rounds: each run claims at most ``LIMIT`` detectors (round robin over projects) and stops claiming after
``BUDGET_S`` seconds; while a round says more is due and the invocation has ``MIN_REMAINING_MS`` left, another
round goes. Overlapping invocations split the work (leases, SKIP LOCKED, fenced writes); nothing is lost when one
dies: its leases expire and the cursors it did not move are resumed by the next run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.anomalies.job import run
from observai.observability import logger
from observai.scheduled import scheduled_job

LIMIT = 500
BUDGET_S = 30.0
MAX_ROUNDS = 5
MIN_REMAINING_MS = 40_000


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for _ in range(MAX_ROUNDS):
        report = run(datetime.now(UTC), limit=LIMIT, budget_s=BUDGET_S)
        for key, value in report.model_dump().items():
            totals[key] = value if isinstance(value, bool) else totals.get(key, 0) + value
        if not report.more_due or context.get_remaining_time_in_millis() < MIN_REMAINING_MS:
            break
    logger.info("anomaly detection done", extra=totals)
    return totals
