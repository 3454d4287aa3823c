"""Scheduled daily (EventBridge Scheduler): drop the telemetry partitions past each plan's retention, purge
expired Idempotency-Keys and old usage rows. Invoked with ``{"dry_run": true}`` it only lists what it would do."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.observability import logger
from observai.retention.cleanup import run_cleanup
from observai.scheduled import scheduled_job


def _dry_run(event: dict[str, Any]) -> bool:
    """``dry_run`` at the top of a manual invocation, or in a schedule's ``detail`` (a JSON string or object)."""
    detail = event.get("detail")
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            detail = None
    return bool(event.get("dry_run") or (isinstance(detail, dict) and detail.get("dry_run")))


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_cleanup(dry_run=_dry_run(event or {}))
    result = report.model_dump(mode="json")
    logger.info(
        "retention cleanup done",
        extra={k: v for k, v in result.items() if k != "drops"} | {"drops": len(report.drops)},
    )
    if report.failed:
        # Shows in the error metrics; what failed (a lock timeout) is retried by the next run.
        raise RuntimeError(f"retention could not drop {', '.join(report.failed)}; see the log")
    return result
