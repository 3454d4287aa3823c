"""Scheduled every 15 minutes (EventBridge Scheduler): erase the telemetry of deleted projects and organizations,
bounded per run (the next run resumes)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.observability import logger
from observai.retention.purge import run_purge
from observai.scheduled import scheduled_job


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_purge()
    result = report.model_dump(mode="json")
    logger.info(
        "deleted projects purge done",
        extra={k: v for k, v in result.items() if k != "projects"}
        | {"projects": len(report.projects), "purged": [str(p.project_id) for p in report.projects if p.done]},
    )
    return result
