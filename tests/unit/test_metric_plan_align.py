"""The query planner with an alignment origin (``plan(..., align=)``): an alert window is one slot ending at its
evaluation time, read from the coarsest rollup dividing both the window and the origin's offset; without an
origin, slots stay aligned to the epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from observai.metrics.query import ORIGIN, plan
from observai.metrics.query_models import MetricQuery

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def window(eval_at: datetime, seconds: int) -> MetricQuery:
    return MetricQuery.model_validate(
        {"name": "m", "from": eval_at - timedelta(seconds=seconds), "to": eval_at, "step": seconds}
    )


@pytest.mark.parametrize(
    ("eval_at", "seconds", "resolution"),
    [
        (NOON, 3600, 3600),  # on the hour: 1h rollups
        (NOON + timedelta(minutes=10), 600, 300),  # on a 5-minute boundary: 5m
        (NOON + timedelta(minutes=7), 600, 60),  # 7 minutes past: only minutes fit
        (NOON + timedelta(minutes=7), 300, 60),
        (NOON + timedelta(minutes=30), 3600, 300),  # an hour's window at half past: 5m buckets
    ],
)
def test_an_aligned_window_is_one_slot_from_a_rollup_that_fits(
    eval_at: datetime, seconds: int, resolution: int
) -> None:
    # When a window ending at eval_at is planned an hour later (complete in the rollups)
    planned = plan(window(eval_at, seconds), eval_at + timedelta(hours=1), align=eval_at)
    # Then it is exactly one slot [eval_at - window, eval_at), read at the coarsest resolution dividing both
    assert planned.start == eval_at - timedelta(seconds=seconds) and planned.end == eval_at
    assert planned.resolution == resolution and planned.origin == eval_at


def test_without_an_origin_slots_stay_on_the_epoch() -> None:
    eval_at = NOON + timedelta(minutes=7)
    planned = plan(window(eval_at, 600), eval_at + timedelta(hours=1))
    # The same range spans two epoch-aligned 10-minute slots
    assert planned.origin == ORIGIN and planned.resolution == 300
    assert planned.start == NOON - timedelta(minutes=10) and planned.end == NOON + timedelta(minutes=10)


def test_an_origin_with_seconds_reads_raw_points() -> None:
    eval_at = NOON + timedelta(minutes=7, seconds=30)
    planned = plan(window(eval_at, 300), eval_at + timedelta(hours=1), align=eval_at)
    assert planned.resolution == "raw" and planned.end == eval_at
