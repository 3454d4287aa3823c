"""Scheduled every minute (EventBridge Scheduler): roll metric points up into 1m/5m/1h/1d buckets, per series and per
group.

The per-series runs and the group roll-ups run side by side, each on a connection of its own
(``observai.metrics.pipeline``). Each run is bounded (``max_points``; the group step's rows and seconds); while a
backlog remains and the invocation has time left, a stage runs again, so a backlog drains quickly without ever
risking the Lambda timeout.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.metrics.pipeline import run_side_by_side
from observai.observability import logger
from observai.scheduled import scheduled_job

# Start another bounded run only with this much of the invocation left (a run of max_points takes seconds).
MIN_REMAINING_MS = 40_000
MAX_RUNS = 5


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = run_side_by_side(
        max_runs=MAX_RUNS, time_left=lambda: context.get_remaining_time_in_millis() >= MIN_REMAINING_MS
    )
    runs, groups = job.series, job.groups
    summary = {
        "ran": runs[0].ran,
        "runs": len(runs),
        "points_read": sum(r.points_read for r in runs),
        "buckets_touched": sum(r.buckets_touched for r in runs),
        "buckets_written": {
            label: sum(r.buckets_written.get(label, 0) for r in runs) for label in runs[0].buckets_written
        },
        "group_runs": len(groups),
        "group_buckets_written": {
            label: sum(g.written.get(label, 0) for g in groups) for label in runs[0].group_buckets_written
        },
        "group_minutes": sum(g.minutes for g in groups),
        "watermark": runs[-1].watermark.isoformat() if runs[-1].watermark else None,
        "more_pending": runs[-1].more_pending or bool(groups and groups[-1].more_pending),
        "seconds": round(sum(r.seconds for r in runs), 3),
        "group_seconds": round(sum(g.seconds for g in groups), 3),
    }
    logger.info("metrics aggregation done", extra=summary)
    return summary
