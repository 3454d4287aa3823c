"""SQS (the export queue): run each named export, rows streamed to S3 as gzip NDJSON; partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.exports.worker import handle
from observai.observability import logger, traced


@logger.inject_lambda_context(log_event=False)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
