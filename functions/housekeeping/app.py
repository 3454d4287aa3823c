"""Scheduled hourly (EventBridge Scheduler): prune idle rate-limit buckets and long-dead API keys."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.housekeeping import run_housekeeping
from observai.observability import logger
from observai.scheduled import scheduled_job


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_housekeeping()
    logger.info("housekeeping done", extra=report.model_dump())
    return report.model_dump()
