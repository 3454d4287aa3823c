"""The aggregate-metrics job on a real Postgres: exact bucket statistics, percentiles from rollups within 1%
of the exact ones, counters across resets and both temporalities, histograms, late points, idempotence,
overlapping runs, the per-run bound and tenant columns.

Points are stored with the real writer (store_batch); every test uses series of its own (a fresh project or
a fresh metric name), and drains the job (lag 0) before looking at the rollups, so other tests' points never
matter.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.metrics import rollup, sketch_sql
from observai.metrics.rollup import AggregationReport, aggregate, run_aggregation
from observai.metrics.sketch import ZERO_THRESHOLD, Sketch, nearest_rank
from observai.telemetry.model import MetricPoint, MetricType, Temporality
from observai.telemetry.series import series_id

from tests.helpers.ingest import IngestProject, make_project, store_points
from tests.helpers.inprocess import load_function

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RELATIVE = 0.01 + 1e-9  # α, and float noise at bucket boundaries


# --- helpers ---------------------------------------------------------------------------------------------------


def ns(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1) * 1000


def hour_ago(hours: int = 3) -> datetime:
    """The start of an hour a few hours back (inside the migrated partitions), on a 5-minute boundary."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)


def gauge(name: str, at: datetime, value: float, **attributes: Any) -> MetricPoint:
    return MetricPoint(name=name, type=MetricType.GAUGE, time_ns=ns(at), attributes=attributes, value=value)


def counter(
    name: str, at: datetime, value: float, *, start: datetime | None = None, delta: bool = False
) -> MetricPoint:
    return MetricPoint(
        name=name,
        type=MetricType.SUM,
        time_ns=ns(at),
        attributes={},
        value=value,
        monotonic=True,
        temporality=Temporality.DELTA if delta else Temporality.CUMULATIVE,
        start_time_ns=ns(start) if start else None,
    )


store = store_points


def drain(max_points: int = rollup.DEFAULT_MAX_POINTS) -> list[AggregationReport]:
    """Run the job (no lag) until nothing is pending."""
    reports = []
    for _ in range(1000):
        report = run_aggregation(max_points=max_points, lag_s=0)
        assert report.ran
        reports.append(report)
        if not report.more_pending:
            return reports
    raise AssertionError("the job never caught up")


def rollups(db: psycopg.Connection, project: IngestProject, name: str, resolution: int, **attributes: Any) -> dict:
    """The series' rollup rows of one resolution, by bucket_start; ``sketch`` as readers read it
    (``sketch_sql.sketch_text``: a 1m row of one gauge value stores none), ``stored_sketch`` the column."""
    rows = db.execute(
        f"select r.*, r.sketch as stored_sketch, {sketch_sql.sketch_text('r')}::jsonb as sketch"
        " from public.metric_rollups r where project_id = %s and series_id = %s and resolution = %s"
        " order by bucket_start",
        (project.project_id, series_id(name, attributes), resolution),
    ).fetchall()
    return {r["bucket_start"]: r for r in rows}


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[nearest_rank(q, len(ordered)) - 1]


def assert_close(estimate: float | None, exact: float) -> None:
    assert estimate is not None
    assert abs(estimate - exact) <= max(RELATIVE * abs(exact), ZERO_THRESHOLD), (estimate, exact)


@pytest.fixture(scope="module")
def project(database_url: str) -> IngestProject:
    return make_project(("ingest", "read"), label="Rollup")


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


# --- gauges: exact statistics ----------------------------------------------------------------------------------


def test_gauge_buckets_hold_exact_count_sum_min_max_last_at_every_resolution(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given gauge points over three minutes, out of time order in the batch
    name = unique("cpu")
    base = hour_ago()
    values = {
        base + timedelta(seconds=50): 7.0,
        base + timedelta(seconds=5): 3.5,
        base + timedelta(seconds=20): -2.0,
        base + timedelta(minutes=1, seconds=1): 10.0,
        base + timedelta(minutes=2, seconds=59): 0.0,
        base + timedelta(minutes=2, seconds=30): 4.25,
    }
    store(project, [gauge(name, at, v) for at, v in values.items()])

    # When the job catches up
    drain()

    # Then every minute has its exact statistics; last is the value of the latest point by time
    minutes = rollups(db, project, name, 60)
    assert sorted(minutes) == [base, base + timedelta(minutes=1), base + timedelta(minutes=2)]
    first = minutes[base]
    assert (first["count"], first["sum"], first["min"], first["max"], first["last"]) == (3, 8.5, -2.0, 7.0, 7.0)
    assert first["last_time"] == base + timedelta(seconds=50)
    assert first["increase"] is None
    third = minutes[base + timedelta(minutes=2)]
    assert (third["count"], third["sum"], third["min"], third["max"], third["last"]) == (2, 4.25, 0.0, 4.25, 0.0)
    # And the sketch counts every value (zeros apart, negatives in their own store)
    assert Sketch.from_json(first["sketch"]).count == 3
    assert third["sketch"]["z"] == 1
    assert Sketch.from_json(first["sketch"]).quantile(0.0) == pytest.approx(-2.0, rel=0.01)
    # And the coarser buckets merge them: 5m, 1h, 1d, with the tenant columns carried
    for resolution, start in ((300, base), (3600, base), (86400, base.replace(hour=0))):
        (row,) = rollups(db, project, name, resolution).values()
        assert row["bucket_start"] == start
        assert (row["count"], row["sum"], row["min"], row["max"], row["last"]) == (6, 22.75, -2.0, 10.0, 0.0)
        assert row["last_time"] == base + timedelta(minutes=2, seconds=59)
        assert Sketch.from_json(row["sketch"]).count == 6
        assert (row["org_id"], row["project_id"]) == (project.org_id, project.project_id)


# --- percentiles from the rollups ------------------------------------------------------------------------------

magnitudes = st.one_of(
    st.floats(min_value=1e-3, max_value=1e6),  # uniform-ish over a wide range
    st.floats(min_value=-12, max_value=14).map(lambda e: 2.718281828459045**e),  # log-uniform (lognormal-like)
    st.sampled_from([0.0, 1.0, 250.0, 1e-12]),  # repeats and zeros
)
signed = st.tuples(magnitudes, st.booleans()).map(lambda t: -t[0] if t[1] else t[0])
minute_values = st.lists(st.lists(signed, min_size=1, max_size=40), min_size=1, max_size=6)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minutes=minute_values, hour_back=st.integers(min_value=2, max_value=30))
def test_percentiles_from_1m_and_1h_rollups_are_within_1_percent_of_the_exact_ones(
    db: psycopg.Connection, project: IngestProject, minutes: list[list[float]], hour_back: int
) -> None:
    # Given a gauge whose points spread over a few minutes of one hour (several points per second at times)
    name = unique("latency")
    base = hour_ago(hour_back)
    points = [
        gauge(name, base + timedelta(minutes=m, seconds=i * 59 / len(values), microseconds=i), v)
        for m, values in enumerate(minutes)
        for i, v in enumerate(values)
    ]
    store(project, points)

    # When the job catches up
    drain()

    # Then p50/p90/p95/p99 of every minute and of the hour are within 1% of the exact nearest-rank ones
    by_minute = rollups(db, project, name, 60)
    for m, values in enumerate(minutes):
        sketch = Sketch.from_json(by_minute[base + timedelta(minutes=m)]["sketch"])
        assert sketch.count == len(values)
        for q in (0.5, 0.9, 0.95, 0.99):
            assert_close(sketch.quantile(q), exact_quantile(values, q))
    everything = [v for values in minutes for v in values]
    hour = Sketch.from_json(rollups(db, project, name, 3600)[base]["sketch"])
    assert hour.count == len(everything)
    for q in (0.5, 0.9, 0.95, 0.99):
        assert_close(hour.quantile(q), exact_quantile(everything, q))


# --- counters --------------------------------------------------------------------------------------------------


def test_cumulative_counter_increase_is_right_across_resets_inside_and_across_buckets(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a cumulative counter that started 10 minutes before its first point, then resets inside minute 1,
    # across the boundary of minutes 1 and 2, and restarts (a later start_time) with a larger value in minute 3
    name = unique("requests")
    base = hour_ago()
    started, restarted = base - timedelta(minutes=10), base + timedelta(minutes=3)
    m = [base + timedelta(minutes=i) for i in range(4)]
    store(
        project,
        [
            counter(name, m[0] + timedelta(seconds=10), 100, start=started),  # a new counter: counts whole
            counter(name, m[1] + timedelta(seconds=10), 110, start=started),  # +10
            counter(name, m[1] + timedelta(seconds=20), 5, start=started),  # reset: +5
            counter(name, m[1] + timedelta(seconds=40), 15, start=started),  # +10
            counter(name, m[2] + timedelta(seconds=5), 3, start=started),  # reset across the boundary: +3
            counter(name, m[2] + timedelta(seconds=30), 8, start=started),  # +5
            counter(name, m[3] + timedelta(seconds=10), 20, start=restarted),  # restarted: +20, not +12
        ],
    )

    # When the job catches up
    drain()

    # Then each minute's increase counts the new value after a reset
    minutes = rollups(db, project, name, 60)
    assert [minutes[t]["increase"] for t in m] == [100, 25, 8, 20]
    assert minutes[m[1]]["last"] == 15 and minutes[m[1]]["count"] == 3
    assert minutes[m[1]]["sketch"] is None  # counters have no distribution of values
    (five,) = rollups(db, project, name, 300).values()
    assert five["increase"] == 153 and five["last"] == 20

    # And a late point in minute 2 re-rolls it alone: the point before the bucket (15, in minute 1) is looked up
    store(project, [counter(name, m[2] + timedelta(seconds=50), 9, start=started)])  # +1
    report = drain()[0]
    assert report.buckets_touched >= 1
    minutes = rollups(db, project, name, 60)
    assert [minutes[t]["increase"] for t in m] == [100, 25, 9, 20]
    assert rollups(db, project, name, 3600)[base]["increase"] == 154


def test_first_point_of_a_counter_with_an_old_start_counts_nothing_then_differences(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a counter that has been running for days (unknown baseline) and one without start time
    name, bare = unique("bytes"), unique("bare")
    base = hour_ago()
    old = base - timedelta(days=3)
    store(project, [counter(name, base + timedelta(seconds=s), v, start=old) for s, v in ((1, 5000), (61, 5600))])
    store(project, [counter(bare, base + timedelta(seconds=s), v) for s, v in ((1, 7), (2, 9))])

    # When the job catches up
    drain()

    # Then the first point only sets the baseline, the next one counts its difference
    minutes = rollups(db, project, name, 60)
    assert [r["increase"] for r in minutes.values()] == [0, 600]
    assert [r["increase"] for r in rollups(db, project, bare, 60).values()] == [2]


def test_delta_counter_increase_is_the_sum_of_its_values(db: psycopg.Connection, project: IngestProject) -> None:
    # Given a delta-temporality monotonic sum (each point is what happened since the previous one)
    name = unique("jobs")
    base = hour_ago()
    store(project, [counter(name, base + timedelta(seconds=s), v, delta=True) for s, v in ((1, 4), (20, 1), (70, 2))])

    # When the job catches up
    drain()

    # Then the increase of a bucket is the sum of its values (no differencing), and coarser buckets add them
    minutes = rollups(db, project, name, 60)
    assert [(r["increase"], r["count"], r["sum"]) for r in minutes.values()] == [(5, 2, 5), (2, 1, 2)]
    assert rollups(db, project, name, 86400)[base.replace(hour=0)]["increase"] == 7


# --- histograms and summaries ----------------------------------------------------------------------------------


def histogram(
    name: str, at: datetime, bounds: list[float], counts: list[int], *, cumulative: bool = False, **stats: Any
) -> MetricPoint:
    return MetricPoint(
        name=name,
        type=MetricType.HISTOGRAM,
        time_ns=ns(at),
        attributes={},
        temporality=Temporality.CUMULATIVE if cumulative else Temporality.DELTA,
        count=sum(counts),
        distribution={"bounds": bounds, "counts": counts},
        start_time_ns=ns(at - timedelta(minutes=5)) if cumulative else None,
        **stats,
    )


def test_delta_histograms_feed_count_sum_min_max_and_the_sketch(db: psycopg.Connection, project: IngestProject) -> None:
    # Given two delta histograms in one minute
    name = unique("http.duration")
    base = hour_ago()
    bounds = [10.0, 20.0, 50.0, 100.0]
    store(
        project,
        [
            histogram(name, base + timedelta(seconds=10), bounds, [1, 2, 0, 1, 0], sum=90.0, min=5.0, max=60.0),
            histogram(name, base + timedelta(seconds=40), bounds, [0, 0, 3, 0, 1], sum=300.0, min=30.0, max=150.0),
        ],
    )

    # When the job catches up
    drain()

    # Then the bucket counts the observations (not the points), sums and bounds them exactly
    (row,) = rollups(db, project, name, 60).values()
    assert (row["count"], row["sum"], row["min"], row["max"]) == (8, 390.0, 5.0, 150.0)
    assert row["last"] is None and row["increase"] is None
    sketch = Sketch.from_json(row["sketch"])
    assert sketch.count == 8
    # And percentiles come from bucket representatives: the median's bucket is (20, 50] → about 35
    assert sketch.quantile(0.5) == pytest.approx(35.0, rel=0.01)
    assert sketch.quantile(1.0) == pytest.approx(150.0, rel=0.01)  # the open last bucket uses max
    assert Sketch.from_json(rollups(db, project, name, 3600)[base]["sketch"]).count == 8


def test_cumulative_histograms_are_differenced_and_reset_aware(db: psycopg.Connection, project: IngestProject) -> None:
    # Given a cumulative histogram: 4 observations, then 3 more a minute later, then a reset to 2
    name = unique("queue.wait")
    base = hour_ago()
    bounds = [1.0, 10.0]
    start = base - timedelta(minutes=5)

    def point(at: datetime, counts: list[int], total: float) -> MetricPoint:
        p = histogram(name, at, bounds, counts, cumulative=True, sum=total, min=0.5, max=20.0)
        p.start_time_ns = ns(start)
        return p

    store(
        project,
        [
            point(base + timedelta(seconds=30), [1, 2, 1], 30.0),
            point(base + timedelta(minutes=1, seconds=30), [1, 4, 2], 55.0),
            point(base + timedelta(minutes=2, seconds=30), [2, 0, 0], 1.5),
        ],
    )

    # When the job catches up
    drain()

    # Then each minute holds what happened in it: the whole first point (a new series), the difference, the reset
    minutes = rollups(db, project, name, 60)
    assert [(r["count"], r["sum"]) for r in minutes.values()] == [(4, 30.0), (3, 25.0), (2, 1.5)]
    assert [Sketch.from_json(r["sketch"]).count for r in minutes.values()] == [4, 3, 2]
    # And the difference's sketch has the new observations only: two in (1, 10], one in (10, +inf)
    second = Sketch.from_json(minutes[base + timedelta(minutes=1)]["sketch"])
    assert second.quantile(0.5) == pytest.approx(5.5, rel=0.01) and second.quantile(1.0) == pytest.approx(20, rel=0.01)
    (five,) = rollups(db, project, name, 300).values()
    assert (five["count"], five["sum"]) == (9, 56.5)


def test_exponential_histograms_and_summaries(db: psycopg.Connection, project: IngestProject) -> None:
    # Given a delta exponential histogram (scale 3) and a (cumulative) summary with two points
    expo, summary = unique("expo"), unique("summary")
    base = hour_ago()
    store(
        project,
        [
            MetricPoint(
                name=expo,
                type=MetricType.EXPONENTIAL_HISTOGRAM,
                time_ns=ns(base + timedelta(seconds=5)),
                attributes={},
                temporality=Temporality.DELTA,
                count=6,
                sum=40.0,
                min=0.0,
                max=12.0,
                distribution={
                    "scale": 3,
                    "zero_count": 1,
                    "zero_threshold": 0.0,
                    "positive": {"offset": 20, "counts": [2, 0, 3]},  # (2^(20/8), 2^(21/8)] ≈ (5.66, 6.17] ...
                    "negative": {"offset": 0, "counts": []},
                },
            ),
            *(
                MetricPoint(
                    name=summary,
                    type=MetricType.SUMMARY,
                    time_ns=ns(base + timedelta(seconds=s)),
                    attributes={},
                    count=c,
                    sum=total,
                    start_time_ns=ns(base - timedelta(minutes=1)),
                    distribution={"quantiles": [[0.5, 1.0], [0.99, 9.0]]},
                )
                for s, c, total in ((10, 10, 50.0), (70, 15, 80.0))
            ),
        ],
    )

    # When the job catches up
    drain()

    # Then the exponential buckets feed the sketch at their midpoints (zeros apart)
    (row,) = rollups(db, project, expo, 60).values()
    sketch = Sketch.from_json(row["sketch"])
    assert (row["count"], sketch.count, row["sketch"]["z"]) == (6, 6, 1)
    lower, upper = 2 ** (20 / 8), 2 ** (21 / 8)
    assert lower < sketch.quantile(0.3) <= upper
    assert 2 ** (22 / 8) < sketch.quantile(0.99) <= 2 ** (23 / 8)
    # And summaries keep count and sum (differenced), no sketch: their quantiles cannot be merged
    minutes = rollups(db, project, summary, 60)
    assert [(r["count"], r["sum"], r["sketch"]) for r in minutes.values()] == [(10, 50.0, None), (5, 30.0, None)]


# --- incremental: late points, idempotence, overlap, bounds ----------------------------------------------------


def test_a_late_point_re_rolls_its_old_buckets_and_leaves_the_others_alone(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a gauge rolled up over two hours
    name = unique("temp")
    base = hour_ago(5)
    store(project, [gauge(name, base + timedelta(minutes=m), float(m)) for m in range(0, 120, 7)])
    drain()
    before = {res: rollups(db, project, name, res) for res in (60, 300, 3600, 86400)}

    # When a point for a minute of the first hour arrives late, and the job runs
    late_at = base + timedelta(minutes=7, seconds=30)
    store(project, [gauge(name, late_at, 1000.0)])
    report = drain()[0]

    # Then its 1m, 5m, 1h and 1d buckets include it
    assert report.points_read >= 1
    after = {res: rollups(db, project, name, res) for res in (60, 300, 3600, 86400)}
    touched = {60: base + timedelta(minutes=7), 300: base + timedelta(minutes=5), 3600: base, 86400: None}
    for res, start in touched.items():
        start = start or next(iter(after[res]))
        assert after[res][start]["count"] == before[res][start]["count"] + 1
        assert after[res][start]["max"] == 1000.0
    assert after[60][base + timedelta(minutes=7)]["last"] == 1000.0
    # And every other bucket is untouched (not even rewritten)
    for res, start in touched.items():
        start = start or next(iter(after[res]))
        others = {k: v for k, v in after[res].items() if k != start}
        assert others == {k: v for k, v in before[res].items() if k != start}


def test_a_late_point_re_rolls_its_5m_bucket_from_the_stored_minutes_of_one_value_without_a_sketch(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a gauge of one point a minute (negative, zero, positive), rolled up: its 1m rows store no sketch
    name = unique("late.single")
    base = hour_ago(5)
    values = [-4.0, 0.0, 2.5, 7.0, 1e6, 3.0]
    store(project, [gauge(name, base + timedelta(minutes=m), v) for m, v in enumerate(values)])
    drain()
    assert all(r["stored_sketch"] is None for r in rollups(db, project, name, 60).values())

    # When a late point lands in minute 2, and the job runs
    store(project, [gauge(name, base + timedelta(minutes=2, seconds=30), 40.0)])
    drain()

    # Then the 5m bucket, rolled again from minute 2 and the stored minutes 0, 1, 3 and 4, has every value's entry
    expected = Sketch()
    expected.add_many([*values[:5], 40.0])
    five = rollups(db, project, name, 300)[base]
    assert five["count"] == 6 and Sketch.from_json(five["stored_sketch"]) == expected
    # And the hour has all seven values
    hour = rollups(db, project, name, 3600)[base.replace(minute=0)]
    expected.add(values[5])
    assert hour["count"] == 7 and Sketch.from_json(hour["stored_sketch"]) == expected
    # And minute 2, now of two values, stores its sketch
    assert Sketch.from_json(rollups(db, project, name, 60)[base + timedelta(minutes=2)]["stored_sketch"]).count == 2


def test_fresh_minutes_write_their_coarse_rows_plainly_and_a_stray_coarse_row_is_upserted_instead(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given two gauges' points into minutes never rolled, and, for the second, a 5m and a 1h row already stored
    # without any of their minutes (rows the job itself never leaves behind)
    clean, stray = unique("fresh.clean"), unique("fresh.stray")
    base = hour_ago(4)
    points = [(base + timedelta(minutes=m, seconds=s), float(m + s)) for m in range(12) for s in (0, 30)]
    store(project, [gauge(clean, at, v) for at, v in points] + [gauge(stray, at, v) for at, v in points])
    for resolution, bucket in ((300, base + timedelta(minutes=5)), (3600, base)):
        db.execute(
            "insert into public.metric_rollups (org_id, project_id, series_id, resolution, bucket_start, count, sum)"
            " values (%s, %s, %s, %s, %s, 999, -1)",
            (project.org_id, project.project_id, series_id(stray, {}), resolution, bucket),
        )

    # When the job runs
    drain()

    # Then both series' rows hold their points at every level: the stray rows were overwritten, not a failure
    for name in (clean, stray):
        fives = rollups(db, project, name, 300)
        assert [(k - base, r["count"], r["sum"]) for k, r in fives.items()] == [
            (
                timedelta(minutes=5 * i),
                10 if i < 2 else 4,
                sum(
                    v for at, v in points if base + timedelta(minutes=5 * i) <= at < base + timedelta(minutes=5 * i + 5)
                ),
            )
            for i in range(3)
        ]
        (hour,) = rollups(db, project, name, 3600).values()
        assert (hour["count"], hour["sum"]) == (24, sum(v for _, v in points))
        assert hour["sketch"] is not None and rollups(db, project, name, 86400)


def test_rolling_the_same_points_again_changes_nothing(db: psycopg.Connection, project: IngestProject) -> None:
    # Given counters and gauges rolled up
    name, count_name = unique("mem"), unique("ops")
    base = hour_ago(4)
    store(project, [gauge(name, base + timedelta(seconds=s), s * 1.1) for s in range(0, 600, 13)])
    store(project, [counter(count_name, base + timedelta(seconds=s), s % 200, start=base) for s in range(0, 600, 13)])
    drain()
    snapshot = [rollups(db, project, n, res) for n in (name, count_name) for res in (60, 300, 3600, 86400)]

    # When the watermark is moved back so that the same points are rolled again
    db.execute("update public.metric_rollup_state set watermark = watermark - interval '10 minutes'")
    reports = drain()

    # Then every row is the same, to the updated_at (an unchanged row is not rewritten)
    assert sum(r.points_read for r in reports) >= 2 * len(range(0, 600, 13))
    assert [rollups(db, project, n, res) for n in (name, count_name) for res in (60, 300, 3600, 86400)] == snapshot
    # And a run with nothing new reads nothing
    assert run_aggregation(lag_s=0).points_read == 0


def test_two_runs_at_once_one_skips_and_totals_are_right(database_url: str, db: psycopg.Connection) -> None:
    # Given new points
    project = make_project(label="Overlap")
    name = unique("overlap")
    base = hour_ago()
    store(project, [gauge(name, base + timedelta(seconds=s), 1.0) for s in range(0, 300, 3)])
    drain_first = threading.Event()
    reports: dict[str, AggregationReport] = {}

    def first() -> None:
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
            reports["first"] = aggregate(conn.cursor(), lag_s=0)
            drain_first.wait(timeout=30)  # keep the lock until the other run has tried

    def second() -> None:
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
            while "first" not in reports:
                threading.Event().wait(0.01)
            reports["second"] = aggregate(conn.cursor(), lag_s=0)
        drain_first.set()

    # When two runs overlap (two connections, as two Lambda containers)
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # Then one ran and the other skipped
    assert reports["first"].ran and not reports["second"].ran
    # And the totals count every point once, also after more runs
    drain()
    (row,) = rollups(db, project, name, 3600).values()
    assert row["count"] == 100 and row["sum"] == 100.0


def test_a_run_reads_at_most_max_points_and_the_next_runs_finish_the_work(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given nothing pending, then five ingest transactions of 40 points each
    drain()
    name = unique("bounded")
    base = hour_ago()
    for batch in range(5):
        store(project, [gauge(name, base + timedelta(seconds=batch * 40 + i), 1.0) for i in range(40)])

    # When the job runs with a bound of 100 points per run
    reports = drain(max_points=100)

    # Then no run read more than 100 points (it never splits a transaction), several runs were needed,
    # and together they rolled every point once
    assert all(r.points_read <= 100 for r in reports)
    assert [r.more_pending for r in reports][:2] == [True, True] and not reports[-1].more_pending
    assert sum(r.points_read for r in reports) == 200
    assert sum(r["count"] for r in rollups(db, project, name, 60).values()) == 200
    assert rollups(db, project, name, 3600)[base]["count"] == 200


def test_one_transaction_larger_than_max_points_is_rolled_whole(db: psycopg.Connection, project: IngestProject) -> None:
    # Given nothing pending, then one ingest transaction of 30 points
    drain()
    name = unique("whole")
    base = hour_ago()
    store(project, [gauge(name, base + timedelta(seconds=i), 2.0) for i in range(30)])

    # When a run is bounded to 10 points
    report = run_aggregation(max_points=10, lag_s=0)

    # Then it takes the transaction whole rather than never progressing
    assert report.points_read == 30
    assert sum(r["count"] for r in rollups(db, project, name, 60).values()) == 30


# --- tenants ---------------------------------------------------------------------------------------------------


def test_the_same_series_in_two_tenants_rolls_up_apart_with_its_tenant_columns(db: psycopg.Connection) -> None:
    # Given two organizations' projects sending the same metric with the same attributes (same series id)
    a, b = make_project(label="Tenant A"), make_project(label="Tenant B")
    name = unique("shared")
    base = hour_ago()
    store(a, [gauge(name, base + timedelta(seconds=1), 1.0, host="h")])
    store(b, [gauge(name, base + timedelta(seconds=2), 50.0, host="h"), gauge(name, base, 70.0, host="h")])

    # When the job catches up
    drain()

    # Then each project has its own rows, carrying its own org_id
    for project, count, total in ((a, 1, 1.0), (b, 2, 120.0)):
        for res in (60, 300, 3600, 86400):
            (row,) = rollups(db, project, name, res, host="h").values()
            assert (row["org_id"], row["project_id"], row["count"], row["sum"]) == (
                project.org_id,
                project.project_id,
                count,
                total,
            )


def test_rollups_are_read_through_rls_by_the_projects_api_key_only(db: psycopg.Connection) -> None:
    # Given rollups of two projects
    from observai.db.connection import tenant_transaction

    a, b = make_project(label="RLS A"), make_project(label="RLS B")
    name = unique("rls")
    for p in (a, b):
        store(p, [gauge(name, hour_ago() + timedelta(seconds=3), 1.0)])
    drain()

    def visible(project: IngestProject) -> set[uuid.UUID]:
        claims = {
            "role": "authenticated",
            "api_key": {"id": str(project.key_id), "org_id": str(project.org_id),
                        "project_id": str(project.project_id), "scopes": ["read"]},
        }  # fmt: skip
        with tenant_transaction(claims) as cur:
            cur.execute("select distinct project_id from public.metric_rollups")
            return {r["project_id"] for r in cur.fetchall()}

    # When each project's key reads the table / Then it sees its own project's rows only
    assert visible(a) == {a.project_id}
    assert visible(b) == {b.project_id}
    # And the job's state is not readable by the API roles at all
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("set role authenticated; select * from public.metric_rollup_state")
    db.execute("reset role")


# --- the scheduled function ------------------------------------------------------------------------------------


def test_scheduled_handler_runs_the_aggregation(project: IngestProject) -> None:
    from observai_local.lambda_context import LambdaContext

    # Given the function's handler and its sample schedule event
    app = load_function("aggregate_metrics")
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "aggregate_metrics_schedule.json").read_text())

    # When EventBridge Scheduler invokes it
    result = app.lambda_handler(
        event, LambdaContext("observai-test-aggregate-metrics", memory_limit_in_mb=512, timeout_s=60)
    )

    # Then it reports the run (the default lag keeps the last two minutes for a later run)
    assert result["ran"] is True
    assert set(result["buckets_written"]) == {"1m", "5m", "1h", "1d"}
    assert result["watermark"] is not None and result["more_pending"] is False
    assert result["group_runs"] >= 1 and result["group_seconds"] >= 0


def test_the_sql_reading_of_a_one_value_minute_is_the_sketch_of_that_value(db: psycopg.Connection) -> None:
    # Given 1m rows of one gauge value without a stored sketch: positive, negative, zeros and values under the zero
    # threshold, bucket edges (gamma^k, where log's last bit decides the bucket), extremes; and rows that keep
    # theirs or have none (two points, a counter's increase, a coarser level, a non-finite value)
    from observai.metrics.sketch import GAMMA

    values = [1.0, 2.5, -2.5, 0.0, -0.0, 1e-10, -1e-10, ZERO_THRESHOLD, 1e-300, 1.7e308, -1.7e308, 123456.789]
    values += [GAMMA**k for k in (-500, -3, 1, 2, 7, 100, 1000)] + [-(GAMMA**k) for k in (1, 50)]
    rows = [(60, 1, None, v) for v in values]
    others = [(60, 2, None, 5.0), (60, 1, 3.0, 5.0), (300, 1, None, 5.0), (60, 1, None, math.inf)]
    others += [(60, 1, None, -math.inf), (60, 1, None, math.nan)]

    # When SQL reads their sketches
    found = db.execute(
        f"select {sketch_sql.sketch_text('r')}::jsonb as sketch from (select u.*, null::jsonb as sketch"
        " from unnest(%s::int[], %s::bigint[], %s::float8[], %s::float8[]) with ordinality"
        " as u(resolution, count, increase, min, i)) r order by r.i",
        [list(c) for c in zip(*(rows + others), strict=True)],
    ).fetchall()

    # Then each one-value minute's is Sketch.add's encoding of its value, bit for bit; the others have none
    for value, row in zip(values, found, strict=False):
        sketch = Sketch()
        sketch.add(value)
        assert row["sketch"] == sketch.to_json(), value
    assert [r["sketch"] for r in found[len(values) :]] == [None] * len(others)


def test_the_documented_sql_merge_equals_the_python_merge(db: psycopg.Connection, project: IngestProject) -> None:
    # Given the 1m sketches of two series (positive, negative and zero values)
    from observai.metrics.sketch import SQL_MERGE

    a, b = unique("merge.a"), unique("merge.b")
    base = hour_ago()
    store(project, [gauge(a, base + timedelta(seconds=i), v) for i, v in enumerate([1.5, -3.0, 0.0, 250.0, 1.5])])
    store(project, [gauge(b, base + timedelta(minutes=1, seconds=i), v) for i, v in enumerate([-0.2, 7.0, 1e6])])
    drain()
    rows = [r for name in (a, b) for r in rollups(db, project, name, 60).values()]

    # When they are merged in SQL with SQL_MERGE / Then it is the Python merge
    merged = db.execute(
        "with sketches as (select sketch from public.metric_rollups where project_id = %s and series_id = any(%s)"
        " and resolution = 60), " + SQL_MERGE,
        (project.project_id, [series_id(a, {}), series_id(b, {})]),
    ).fetchone()["sketch"]
    python = Sketch()
    for r in rows:
        python.merge(Sketch.from_json(r["sketch"]))
    assert Sketch.from_json(merged) == python and python.count == 8
    # And with no sketch at all it is null
    empty = db.execute("with sketches as (select null::jsonb as sketch), " + SQL_MERGE).fetchone()
    assert empty["sketch"] is None


def test_a_run_keeps_its_temp_tables_in_memory_when_the_session_allows_it_and_runs_either_way(
    database_url: str,
) -> None:
    # Given a fresh session, and one that has already used a temp table (Postgres then refuses a new temp_buffers)
    with (
        psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as fresh,
        psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as used,
    ):
        used.execute("create temp table earlier as select 1 as x")
        used.commit()
        before = used.execute("show temp_buffers").fetchone()["temp_buffers"]

        # When each runs the aggregation
        for conn in (fresh, used):
            with conn.transaction():
                report = aggregate(conn.cursor(), lag_s=0)
            assert isinstance(report, AggregationReport)  # no error: a session's refusal is not the run's

        # Then the fresh session took TEMP_BUFFERS, the other kept its own, and both runs completed
        assert fresh.execute("show temp_buffers").fetchone()["temp_buffers"] == rollup.TEMP_BUFFERS
        assert used.execute("show temp_buffers").fetchone()["temp_buffers"] == before != rollup.TEMP_BUFFERS
