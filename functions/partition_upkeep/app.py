"""Scheduled hourly (EventBridge Scheduler): daily partitions of the telemetry tables, the usage roll-up, then the
compaction of the log volume increments (observai.logs.volume)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.logs.volume import compact_log_volume
from observai.observability import logger
from observai.scheduled import scheduled_job
from observai.telemetry.partitions import run_upkeep


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_upkeep()
    logger.info("partition upkeep done", extra=report.model_dump(mode="json"))
    # Independent of the partitions: compacted even when a partition failed (the increments only grow).
    compacted = compact_log_volume()
    logger.info("log volume compacted", extra={"increments_merged": compacted})
    if report.failed:
        # A failed invocation is retried by the schedule's retry policy and shows in the error metrics.
        raise RuntimeError(f"partition upkeep failed for {', '.join(report.failed)}; see the log")
    return {**report.model_dump(mode="json"), "log_volume_increments_merged": compacted}
