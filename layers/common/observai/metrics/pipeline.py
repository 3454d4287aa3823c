"""The aggregate-metrics job's two stages side by side: per-series roll-ups and group roll-ups, each on a connection
of its own (issue 17).

The per-series runs (``rollup.run_aggregation(groups=False)``: steps 1–4 and 6) queue the (metric, minute) pairs
they re-rolled, in their own transaction; the group stage (``rollup.run_group_rollups``: step 5) works that queue off
in transactions of its own, on a second connection, from the per-series rows those runs committed. A backlog splits
about evenly between the two, and the work of each is mostly the database's, so the stages run on two of its cores
at once: the job drains a backlog in a little over half the time it takes run after run.

Why this is safe:
- Each stage keeps its own advisory lock (LOCK_KEY, GROUP_LOCK_KEY): two invocations never run the same stage at
  once, and the stages never wait on each other's advisory locks.
- What they share is the queue (``metric_group_pending``), whose rows carry a version. A per-series run that queues
  a minute again bumps it; the group stage deletes the rows it took only at the version it took, so a minute
  re-rolled while the group stage works on it stays queued and is rolled again. Both lock queue rows in key order,
  one statement each (the group stage takes one chunk per transaction), so they never wait on each other in a
  cycle.
- Until the group stage has rolled a queued minute, the query API reads the per-series rows for it (a pending minute
  makes the group rows incomplete there), so answers never miss a point; they only take the slower path.

The group stage waits for work on an event the per-series stage sets after each commit (no polling, no sleep), and
ends once the per-series stage has ended and the queue is empty, or the invocation's time is short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from observai.db.connection import own_connection
from observai.metrics.groups import GroupReport
from observai.metrics.rollup import (
    DEFAULT_LAG_S,
    DEFAULT_MAX_POINTS,
    AggregationReport,
    run_aggregation,
    run_group_rollups,
)

# The group stage's longest wait for the per-series stage between two of its runs. Only a bound: the event wakes it
# as soon as a per-series run commits or the stage ends.
IDLE_WAIT_S = 30.0


@dataclass
class JobReport:
    """The runs of one invocation: the per-series stage's, in order, and the group stage's that got the lock."""

    series: list[AggregationReport] = field(default_factory=list)
    groups: list[GroupReport] = field(default_factory=list)


def run_side_by_side(
    *,
    max_runs: int,
    time_left: Callable[[], bool],
    max_points: int = DEFAULT_MAX_POINTS,
    lag_s: float = DEFAULT_LAG_S,
) -> JobReport:
    """Per-series runs (at most ``max_runs``, again while more is pending and ``time_left()``) on the current
    connection, and the group stage beside them on a connection of its own. An error of either stage is raised
    (the per-series stage's first); the per-series runs it committed stay."""
    report = JobReport()
    stage = _GroupStage(time_left)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-rollups") as pool:
        groups = pool.submit(stage.run)
        try:
            for _ in range(max_runs):
                run = run_aggregation(max_points=max_points, lag_s=lag_s, groups=False)
                report.series.append(run)
                if run.buckets_touched:
                    stage.queued_runs += 1
                    stage.queued.set()
                if not (run.ran and run.more_pending) or not time_left():
                    break
        finally:
            stage.series_done.set()
            stage.queued.set()
        report.groups = groups.result()
    return report


class _GroupStage:
    def __init__(self, time_left: Callable[[], bool]) -> None:
        self.time_left = time_left
        self.queued = threading.Event()  # a per-series run queued minutes and committed, or the stage ended
        self.queued_runs = 0  # how many did (only the per-series stage's thread writes it)
        self.series_done = threading.Event()

    def run(self) -> list[GroupReport]:
        reports: list[GroupReport] = []
        with own_connection(kept="group-rollups"):
            more = True  # the first run: an earlier invocation may have left minutes queued
            seen = self.queued_runs
            while True:
                # Read before the run: once the per-series stage has ended, a run that then finds the queue empty
                # has seen everything it queued.
                last = self.series_done.is_set()
                self.queued.clear()
                # Run again only for minutes queued since the last run started (not once more per idle invocation).
                if more or self.queued_runs != seen:
                    seen = self.queued_runs
                    report = run_group_rollups()
                    if report.ran:
                        reports.append(report)
                    if not self.time_left():
                        return reports
                    more = report.ran and report.more_pending
                    if more:
                        continue
                if last:
                    return reports
                self.queued.wait(IDLE_WAIT_S)
