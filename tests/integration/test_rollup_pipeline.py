"""The aggregate-metrics job's two stages side by side (observai.metrics.pipeline): the same rows as runs one after
another, the group stage's own lock, and a minute re-rolled while the group stage holds it.

Points are stored with the real writer; every test uses metrics of its own and drains the job before it starts, so
other tests' points never matter.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.metrics import rollup, sketch_sql
from observai.metrics.pipeline import run_side_by_side
from observai.metrics.rollup import aggregate, roll_group_queue, run_aggregation
from observai.telemetry.model import MetricPoint, MetricType
from observai.telemetry.series import series_id

from tests.helpers.ingest import IngestProject, make_project, store_points

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROLLUP_COLUMNS = "series_id, resolution, bucket_start, count, sum, min, max, last, last_time, increase, sketch"
GROUP_COLUMNS = (
    "name, group_key, group_value, resolution, bucket_start, series, count, sum, min, max, last, last_time, increase,"
    " sketch, p50, p90, p95, p99, hourly_p50, hourly_p90, hourly_p95, hourly_p99"
)


def gauge(name: str, at: datetime, value: float, **attributes: Any) -> MetricPoint:
    return MetricPoint(
        name=name, type=MetricType.GAUGE, time_ns=(at - EPOCH) // timedelta(microseconds=1) * 1000,
        attributes=attributes, value=value,
    )  # fmt: skip


def drain_sequentially() -> None:
    for _ in range(1000):
        if not run_aggregation(lag_s=0).more_pending:
            return
    raise AssertionError("the job never caught up")


def rows(db: psycopg.Connection, project: IngestProject, table: str, columns: str) -> list[str]:
    """The project's rows as text (NaN equals NaN there), in key order."""
    with db.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        found = cur.execute(
            f"select row({columns})::text from public.{table} where project_id = %s"
            f" order by {columns.split(', sketch')[0]}",
            (project.project_id,),
        ).fetchall()
    return [r[0] for r in found]


def queued_minute(label: str) -> tuple[IngestProject, str, datetime]:
    """A fresh project's gauge with two points (1.0 each) in one minute, rolled per series only: the minute waits in
    the group queue."""
    drain_sequentially()
    project = make_project(label=label)
    name = f"pipeline.{label.lower()}.{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    store_points(project, [gauge(name, at + timedelta(seconds=s), 1.0) for s in (1, 2)])
    assert run_aggregation(lag_s=0, groups=False).ran
    return project, name, at


def assert_next_group_run_counts_every_point(database_url: str, db: psycopg.Connection, project: IngestProject) -> None:
    """The next group run rolls the queued minute again; its whole-metric row then holds the two points and the late
    one (5.0)."""
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
        assert roll_group_queue(conn.cursor()).minutes == 1
    (row,) = db.execute(
        "select count, sum from public.metric_group_rollups"
        " where project_id = %s and group_key = '' and resolution = 60",
        (project.project_id,),
    ).fetchall()
    assert (row["count"], row["sum"]) == (3, 7.0)


def wait_for_lock_wait(db: psycopg.Connection, session: dict[str, Any], failure: str) -> None:
    """Until the backend whose pid the other thread puts in ``session["pid"]`` waits on a lock (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = db.execute(
            "select wait_event_type from pg_stat_activity where pid = %s", (session.get("pid", 0),)
        ).fetchone()
        if waiting and waiting["wait_event_type"] == "Lock":
            return
        time.sleep(0.05)
    raise AssertionError(failure)


def workload(project: IngestProject, name: str, base: datetime) -> None:
    """Three hosts × two routes, a point every 20 s for 40 minutes in four ingest transactions, then late points
    into minutes already stored."""
    for quarter in range(4):
        store_points(
            project,
            [
                gauge(name, base + timedelta(seconds=s), (s * 7 + h * 13 + r) % 97 / 3.0, host=f"h{h}", route=f"/r{r}")
                for s in range(quarter * 600, (quarter + 1) * 600, 20)
                for h in range(3)
                for r in range(2)
            ],
        )
    store_points(
        project, [gauge(name, base + timedelta(seconds=s), 1000.0 + s, host="h0", route="/r0") for s in (5, 65, 1805)]
    )
    # and a series with one point a minute: positive, negative, zero, NaN, tiny values (each minute's sketch is its
    # value's one entry, which the group stage computes instead of parsing)
    values = [3.5, -2.0, 0.0, math.nan, 1e-12, 7.25, -math.inf]
    store_points(
        project,
        [gauge(name, base + timedelta(minutes=m), values[m % len(values)], host="h9", route="/r0") for m in range(40)],
    )


def test_side_by_side_writes_the_rows_of_runs_one_after_another(db: psycopg.Connection) -> None:
    # Given the same points in two projects (the same series ids), the first rolled run after run with its group
    # step in each run
    drain_sequentially()
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    name = f"pipeline.{uuid.uuid4().hex[:8]}"
    one_after_another, side_by_side = make_project(label="Sequential"), make_project(label="Side by side")
    workload(one_after_another, name, base)
    drain_sequentially()
    assert not db.execute("select 1 from public.metric_group_pending").fetchall()

    # When the second's are rolled by the two stages side by side, a few hundred points per run
    workload(side_by_side, name, base)
    started = time.perf_counter()
    job = run_side_by_side(max_runs=100, time_left=lambda: True, max_points=300, lag_s=0)
    wall = time.perf_counter() - started

    # Then it took several per-series runs and group runs (each stage's time reported, within the whole), left
    # nothing pending, and wrote the same rows
    assert len(job.series) > 3 and job.groups and not job.series[-1].more_pending
    for stage in (job.series, job.groups):
        assert 0 < sum(run.seconds for run in stage) <= wall
    assert sum(r.points_read for r in job.series) == 4 * 30 * 6 + 3 + 40
    assert not db.execute("select 1 from public.metric_group_pending").fetchall()
    for table, columns in (("metric_rollups", ROLLUP_COLUMNS), ("metric_group_rollups", GROUP_COLUMNS)):
        expected = rows(db, one_after_another, table, columns)
        assert expected and rows(db, side_by_side, table, columns) == expected, table
    # And a group of one series of one-point minutes holds that series' own sketches (as readers read them: the
    # series stores none for a minute of one finite value)
    h9 = db.execute(
        f"select g.bucket_start, g.sketch as group_sketch, {sketch_sql.sketch_text('r')}::jsonb as series_sketch,"
        " r.sketch as stored_sketch"
        " from public.metric_group_rollups g join public.metric_rollups r on r.project_id = g.project_id"
        "   and r.resolution = 60 and r.bucket_start = g.bucket_start and r.series_id = %s"
        " where g.project_id = %s and g.group_key = 'host' and g.group_value = '\"h9\"' and g.resolution = 60",
        (series_id(name, {"host": "h9", "route": "/r0"}), side_by_side.project_id),
    ).fetchall()
    assert len(h9) == 40 and all(r["group_sketch"] == r["series_sketch"] for r in h9)
    assert sum(r["series_sketch"] is None for r in h9) == 11  # NaN and -inf: no entry
    assert all(r["stored_sketch"] is None for r in h9)
    kinds = db.execute(
        "select distinct group_key, resolution from public.metric_group_rollups where project_id = %s",
        (side_by_side.project_id,),
    ).fetchall()
    assert {(r["group_key"], r["resolution"]) for r in kinds} >= {("", 60), ("host", 60), ("route", 3600), ("", 86400)}


def test_the_group_stage_skips_while_another_session_holds_it(database_url: str, db: psycopg.Connection) -> None:
    # Given a minute queued by a per-series run that left the group step to the group stage
    drain_sequentially()
    project = make_project(label="Group lock")
    name = f"pipeline.lock.{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    store_points(project, [gauge(name, at + timedelta(seconds=s), float(s)) for s in (1, 2, 3)])
    assert run_aggregation(lag_s=0, groups=False).ran
    assert db.execute("select count(*) as n from public.metric_group_pending").fetchone()["n"] == 1

    # When another session holds the group step's lock
    with psycopg.connect(database_url) as holder, holder.transaction():
        holder.execute("select pg_advisory_xact_lock(%s)", (rollup.GROUP_LOCK_KEY,))
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
            skipped = roll_group_queue(conn.cursor())
            # and a run with its own group step runs its per-series part all the same
            store_points(project, [gauge(name, at + timedelta(minutes=1), 9.0)])
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
            run = aggregate(conn.cursor(), lag_s=0)

    # Then the group stage skipped, the run wrote its per-series rows and only queued its minute
    assert not skipped.ran and skipped.minutes == 0
    assert run.ran and run.buckets_written["1m"] == 1 and run.group_minutes == 0
    assert db.execute("select count(*) as n from public.metric_group_pending").fetchone()["n"] == 2
    # And once the lock is free, the group stage works the queue off
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
        done = roll_group_queue(conn.cursor())
    assert done.ran and done.minutes == 2 and not done.more_pending
    counts = db.execute(
        "select bucket_start, count from public.metric_group_rollups"
        " where project_id = %s and group_key = '' and resolution = 60 order by bucket_start",
        (project.project_id,),
    ).fetchall()
    assert [(r["bucket_start"], r["count"]) for r in counts] == [(at, 3), (at + timedelta(minutes=1), 1)]


def test_a_minute_re_rolled_while_the_group_stage_holds_it_is_queued_again(
    database_url: str, db: psycopg.Connection
) -> None:
    # Given a minute rolled per series and queued for the group stage
    project, name, at = queued_minute("Requeue")

    # When the group stage has taken the minute (uncommitted) and a late point into it is rolled meanwhile
    late: dict[str, Any] = {}
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as group_conn:
        with group_conn.transaction():
            taken = roll_group_queue(group_conn.cursor())
            store_points(project, [gauge(name, at + timedelta(seconds=30), 5.0)])

            def per_series() -> None:
                with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
                    late["pid"] = conn.info.backend_pid
                    with conn.transaction():
                        late["report"] = aggregate(conn.cursor(), lag_s=0, groups=False)

            thread = threading.Thread(target=per_series)
            thread.start()
            # the per-series run waits for the group stage's commit (it queues the minute the stage deleted) ...
            wait_for_lock_wait(db, late, "the per-series run never waited for the group stage")
        # ... and goes on once it has committed
        thread.join(timeout=30)

    # Then the minute is queued again, and the next group run counts the late point
    assert taken.minutes == 1 and late["report"].buckets_written["1m"] == 1
    queued = db.execute("select bucket_start from public.metric_group_pending").fetchall()
    assert [r["bucket_start"] for r in queued] == [at]
    assert_next_group_run_counts_every_point(database_url, db, project)


def test_an_error_of_the_group_stage_reaches_the_caller_after_the_per_series_runs(db: psycopg.Connection) -> None:
    # Given points to roll, and a database that refuses the project's group rows (a trigger raising)
    drain_sequentially()
    project = make_project(label="Stage error")
    name = f"pipeline.error.{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    store_points(project, [gauge(name, at, 1.0)])
    db.execute(
        f"""
        create function public.refuse_group_rows() returns trigger language plpgsql as $$
        begin
            if new.project_id = '{project.project_id}' then raise exception 'group rows refused'; end if;
            return new;
        end $$;
        create trigger refuse_group_rows before insert on public.metric_group_rollups
            for each row execute function public.refuse_group_rows();
        """
    )
    try:
        # When the job runs
        with pytest.raises(psycopg.errors.RaiseException, match="group rows refused"):
            run_side_by_side(max_runs=5, time_left=lambda: True, lag_s=0)
    finally:
        db.execute(
            "drop trigger refuse_group_rows on public.metric_group_rollups; drop function public.refuse_group_rows()"
        )

    # Then the per-series run committed its rows, and its minute waits in the queue for the next group run
    assert (
        db.execute(
            "select count(*) as n from public.metric_rollups where project_id = %s", (project.project_id,)
        ).fetchone()["n"]
        == 4
    )
    assert db.execute("select count(*) as n from public.metric_group_pending").fetchone()["n"] == 1
    assert sum(g.minutes for g in run_side_by_side(max_runs=5, time_left=lambda: True, lag_s=0).groups) == 1


def test_a_minute_queued_again_as_the_group_stage_takes_it_stays_queued(
    database_url: str, db: psycopg.Connection
) -> None:
    # Given a minute rolled per series and queued for the group stage
    project, name, at = queued_minute("Version")
    store_points(project, [gauge(name, at + timedelta(seconds=30), 5.0)])

    # When a per-series run re-rolls the minute and queues it again (not yet committed) ...
    taken: dict[str, Any] = {}
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as per_series:
        with per_series.transaction():
            late = aggregate(per_series.cursor(), lag_s=0, groups=False)

            # ... while the group stage takes the minute: it waits for that run's commit
            def group_stage() -> None:
                with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
                    taken["pid"] = conn.info.backend_pid
                    with conn.transaction():
                        taken["report"] = roll_group_queue(conn.cursor())

            thread = threading.Thread(target=group_stage)
            thread.start()
            wait_for_lock_wait(db, taken, "the group stage never waited for the per-series run")
        thread.join(timeout=30)

    # Then the group stage rolled the minute, but left it queued at its new version (it took the old one)
    assert late.buckets_written["1m"] == 1 and taken["report"].minutes == 1
    (queued,) = db.execute("select bucket_start, version from public.metric_group_pending").fetchall()
    assert (queued["bucket_start"], queued["version"]) == (at, 1)
    # And the next group run rolls it again: the group row counts every point
    assert_next_group_run_counts_every_point(database_url, db, project)
    assert not db.execute("select 1 from public.metric_group_pending").fetchall()


def test_an_idle_invocation_runs_the_group_stage_once(database_url: str, db: psycopg.Connection) -> None:
    # Given a job with nothing left to roll
    drain_sequentially()

    # When an invocation runs both stages
    job = run_side_by_side(max_runs=5, time_left=lambda: True, lag_s=0)

    # Then the group stage ran once, plus once per per-series run that queued minutes (another test's points)
    queued = sum(1 for run in job.series if run.buckets_touched)
    assert 1 <= len(job.groups) <= 1 + queued


def test_the_group_stage_keeps_its_session_from_one_invocation_to_the_next(database_url: str) -> None:
    # Given a kept own connection (the group stage's) used in one thread, as an invocation does
    from observai.db.connection import own_connection, transaction

    def backend() -> int:
        with transaction() as cur:
            row = cur.execute("select pg_backend_pid() as pid").fetchone()
        assert row is not None
        return int(row["pid"])

    def invocation(kept: str | None) -> int:
        seen: list[int] = []

        def work() -> None:
            with own_connection(kept=kept):
                seen.append(backend())

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        return seen[0]

    # When two invocations run it
    kept = [invocation("test-kept"), invocation("test-kept")]

    # Then it is the same session both times, apart from the container's, and still open between invocations
    assert kept[0] == kept[1] != backend()
    with psycopg.connect(database_url) as check:
        live = {r[0] for r in check.execute("select pid from pg_stat_activity").fetchall()}
    assert kept[0] in live


def test_side_by_side_rolls_minutes_of_one_value_each_without_reading_sketches(db: psycopg.Connection) -> None:
    # Given the same gauges of one point a minute (positive, negative, zero, NaN, tiny, infinite values) in two
    # projects, the first rolled run after run with its group step in each run (the run's own sketch entries)
    drain_sequentially()
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    name = f"pipeline.single.{uuid.uuid4().hex[:8]}"
    values = [3.5, -2.0, 0.0, math.nan, 1e-12, 7.25, -math.inf, 1e300]
    points = [
        gauge(name, base + timedelta(minutes=m), values[(m + h) % len(values)] * (h + 1), host=f"h{h}")
        for m in range(90)
        for h in range(4)
    ]
    one_after_another, side_by_side = make_project(label="Single sequential"), make_project(label="Single side")
    store_points(one_after_another, points)
    drain_sequentially()

    # When the second's are rolled by the two stages side by side (no row with a sketch to parse: the group stage
    # reads no sketch entries at all)
    for start in range(0, len(points), 60):  # 15 minutes per ingest transaction: a run per transaction
        store_points(side_by_side, points[start : start + 60])
    job = run_side_by_side(max_runs=100, time_left=lambda: True, max_points=60, lag_s=0)

    # Then it wrote the same rows, every level
    assert len(job.series) > 3 and job.groups and not job.series[-1].more_pending
    for table, columns in (("metric_rollups", ROLLUP_COLUMNS), ("metric_group_rollups", GROUP_COLUMNS)):
        expected = rows(db, one_after_another, table, columns)
        assert expected and rows(db, side_by_side, table, columns) == expected, table
