"""Scheduled every minute (EventBridge Scheduler): roll metric points up into 1m/5m/1h/1d buckets.

Each run is bounded (``max_points``); while a backlog remains and the invocation has time left, the
handler runs again, so a backlog drains quickly without ever risking the Lambda timeout.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.metrics.rollup import run_aggregation
from observai.observability import logger
from observai.scheduled import scheduled_job

# Start another bounded run only with this much of the invocation left (a run of max_points takes seconds).
MIN_REMAINING_MS = 40_000
MAX_RUNS = 5


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runs = []
    for _ in range(MAX_RUNS):
        report = run_aggregation()
        runs.append(report)
        if not (report.ran and report.more_pending) or context.get_remaining_time_in_millis() < MIN_REMAINING_MS:
            break
    summary = {
        "ran": runs[0].ran,
        "runs": len(runs),
        "points_read": sum(r.points_read for r in runs),
        "buckets_touched": sum(r.buckets_touched for r in runs),
        "buckets_written": {
            label: sum(r.buckets_written.get(label, 0) for r in runs) for label in runs[0].buckets_written
        },
        "group_buckets_written": {
            label: sum(r.group_buckets_written.get(label, 0) for r in runs) for label in runs[0].group_buckets_written
        },
        "group_minutes": sum(r.group_minutes for r in runs),
        "watermark": runs[-1].watermark.isoformat() if runs[-1].watermark else None,
        "more_pending": runs[-1].more_pending,
        "seconds": round(sum(r.seconds for r in runs), 3),
    }
    logger.info("metrics aggregation done", extra=summary)
    return summary
