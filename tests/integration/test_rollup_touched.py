"""Step 2 of the aggregation in numpy (observai.metrics.touched): the window's (series, minute) pairs, their ranges
and the run's bookkeeping tables, on a real Postgres.

Points are inserted directly with an ingested_at of their own (a window nothing else shares), so that a series
without a metric_series row can be stored too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from observai.metrics.touched import touched

from tests.helpers.ingest import make_project

pytestmark = pytest.mark.integration


def test_the_windows_pairs_become_ranges_metric_minutes_and_distribution_minutes(
    database_url: str, db: psycopg.Connection
) -> None:
    # Given two projects' points ingested in one window (and one point just after it):
    # - project A, gauge 1: minutes 0, 1, 2 (two points in minute 1), then 5 (a gap), plus a 1m row already at 5;
    # - project A, histogram 2: minute 3; project A, series 3 with no metric_series row: minute 0;
    # - project B, gauge 1 (the same series id in another tenant): minute 0
    a, b = make_project(label="Touched A"), make_project(label="Touched B")
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    ingested = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(seconds=uuid.uuid4().int % 10**8)
    name = f"touched.{uuid.uuid4().hex[:8]}"
    series = [
        (a, 1, "gauge", name), (a, 2, "histogram", f"{name}.h"), (b, 1, "gauge", name),
    ]  # fmt: skip
    for project, sid, kind, metric in series:
        db.execute(
            "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes)"
            " values (%s, %s, %s, %s, %s, '{}')",
            (project.org_id, project.project_id, sid, metric, kind),
        )
    points = [
        (a, 1, 0, 5), (a, 1, 1, 1), (a, 1, 1, 40), (a, 1, 2, 0), (a, 1, 5, 59), (a, 2, 3, 7), (a, 3, 0, 1),
        (b, 1, 0, 30),
    ]  # fmt: skip
    for project, sid, minute, second in points:
        db.execute(
            "insert into public.metric_points (org_id, project_id, series_id, time, value, ingested_at)"
            " values (%s, %s, %s, %s, 1, %s)",
            (project.org_id, project.project_id, sid, base + timedelta(minutes=minute, seconds=second), ingested),
        )
    db.execute(
        "insert into public.metric_points (org_id, project_id, series_id, time, value, ingested_at)"
        " values (%s, %s, 1, %s, 1, %s)",
        (a.org_id, a.project_id, base + timedelta(minutes=9), ingested + timedelta(microseconds=1)),
    )
    db.execute(
        "insert into public.metric_rollups (org_id, project_id, series_id, resolution, bucket_start, count)"
        " values (%s, %s, 1, 60, %s, 1)",
        (a.org_id, a.project_id, base + timedelta(minutes=5)),
    )

    # When the window (just before the points' ingested_at, that instant] is looked at
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
        cur = conn.cursor()
        window = touched(cur, ingested - timedelta(microseconds=1), ingested)
        ranges = cur.execute(
            "select project_id, series_id, kind, type, range_start, range_end, no, sid, fresh, org_id"
            " from rollup_ranges order by no"
        ).fetchall()
        metrics = cur.execute(
            "select org_id, project_id, name, bucket_start from rollup_touched_metrics"
            " order by project_id, name, bucket_start"
        ).fetchall()
        distribution = cur.execute("select * from rollup_distribution_minutes").fetchall()

    # Then the pairs of known series count (the unknown series' point rolls into nothing)
    assert (window.points, window.minutes) == (7, 6)
    # And each series' minutes are cut into ranges of consecutive minutes, numbered in (project, series) order
    at = lambda m: base + timedelta(minutes=m)  # noqa: E731
    first, second = sorted([a, b], key=lambda p: p.project_id.bytes)
    expected = {
        a.project_id: [(1, "gauge", "gauge", at(0), at(3), True), (1, "gauge", "gauge", at(5), at(6), False),
                       (2, "distribution", "histogram", at(3), at(4), True)],
        b.project_id: [(1, "gauge", "gauge", at(0), at(1), True)],
    }  # fmt: skip
    ordered = expected[first.project_id] + expected[second.project_id]
    got = [(r["series_id"], r["kind"], r["type"], r["range_start"], r["range_end"], r["fresh"]) for r in ranges]
    assert got == ordered
    assert [r["no"] for r in ranges] == list(range(4))
    sids = [(r["project_id"], r["series_id"]) for r in ranges]
    assert [r["sid"] for r in ranges] == [sorted(set(sids), key=lambda k: (k[0].bytes, k[1])).index(k) for k in sids]
    assert all(r["org_id"] == (a if r["project_id"] == a.project_id else b).org_id for r in ranges)
    # And the group queue gets each (metric, minute) once, the histogram's minute is listed for its sketch entries
    assert [(r["project_id"], r["name"], r["bucket_start"]) for r in metrics] == sorted(
        [(a.project_id, name, at(m)) for m in (0, 1, 2, 5)] + [(a.project_id, f"{name}.h", at(3))]
        + [(b.project_id, name, at(0))],
        key=lambda k: (str(k[0]), k[1], k[2]),
    )  # fmt: skip
    assert [(r["project_id"], r["series_id"], r["bucket_start"]) for r in distribution] == [(a.project_id, 2, at(3))]


def test_an_empty_window_leaves_empty_tables(database_url: str) -> None:
    # Given a window no point was ingested in
    instant = datetime(2000, 6, 1, tzinfo=UTC)
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
        cur = conn.cursor()
        # When it is looked at
        window = touched(cur, instant, instant + timedelta(microseconds=1))
        # Then nothing is counted and the tables exist, empty
        assert (window.points, window.minutes) == (0, 0)
        for table in ("rollup_ranges", "rollup_touched_metrics", "rollup_distribution_minutes"):
            assert cur.execute(f"select count(*) as n from {table}").fetchone()["n"] == 0
