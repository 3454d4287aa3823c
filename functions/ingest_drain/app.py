"""SQS (the ingest spool): write spooled batches through the idempotent write path; partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.observability import logger, traced
from observai.telemetry.drain import drain


@logger.inject_lambda_context(log_event=False)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return drain(event, context)
