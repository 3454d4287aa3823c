"""Group rollups (metric_group_rollups): cross-series rollups per metric name kept by the aggregation job, and the
query planner reading them.

The group rows must equal the merge of the per-series rows they come from, follow late points, stay unchanged
when rolled again, answer the queries they can (``source: "group"``) with the values of the per-series path, and
never exist for a key over the cardinality bound. Every test uses metrics of its own (fresh names) and drains the
job before looking.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.metrics import groups as group_rollups
from observai.metrics.query import RECENT
from observai.metrics.rollup import run_aggregation
from observai.metrics.sketch import Sketch, nearest_rank
from observai.telemetry.model import MetricPoint, MetricType, Temporality

from tests.helpers.ingest import IngestProject, iso, make_project, store_points
from tests.helpers.inprocess import invoke

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RESOLUTIONS = (60, 300, 3600, 86400)
HOSTS = ("h1", "h2", "h3")
ROUTES = ("/a", "/b")
# Forces the per-series path: a filter on another attribute than the group_by one (it matches every series).
EVERY_ROUTE = {"attribute": "route", "op": "=~", "value": ".*"}


def ns(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1) * 1000


def base_time(hours: int = 5) -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def drain() -> None:
    for _ in range(1000):
        report = run_aggregation(lag_s=0)
        assert report.ran
        if not report.more_pending:
            return


def attributes(i: int) -> dict[str, Any]:
    return {"host": HOSTS[i % 3], "route": ROUTES[i // 3 % 2], "code": 200 if i % 2 else 500}


def seed_gauges(project: IngestProject, name: str, base: datetime, minutes: int = 130) -> dict[int, list[float]]:
    """Six series (3 hosts × 2 routes, code 200/500), a point every 20 s; returns series index → values."""
    rng = random.Random(name)
    values: dict[int, list[float]] = defaultdict(list)
    points = []
    for i in range(6):
        for s in range(0, minutes * 60, 20):
            value = round(rng.lognormvariate(3, 1) * (1 + i / 10), 6)
            values[i].append(value)
            points.append(
                MetricPoint(name, MetricType.GAUGE, ns(base + timedelta(seconds=s)), attributes(i), value=value)
            )
    store_points(project, points)
    return values


def seed_counters(project: IngestProject, name: str, base: datetime) -> None:
    """Two cumulative counters (h1, h2), one reset each."""
    points = []
    for i, host in enumerate(HOSTS[:2]):
        total = 0.0
        for s in range(0, 7200, 30):
            total = 3.0 if s == 3600 + 30 * i else total + (s % 7) + i  # a reset in the second hour
            points.append(
                MetricPoint(
                    name, MetricType.SUM, ns(base + timedelta(seconds=s)), {"host": host}, value=total,
                    monotonic=True, temporality=Temporality.CUMULATIVE, start_time_ns=ns(base),
                )
            )  # fmt: skip
    store_points(project, points)


def group_rows(db: psycopg.Connection, project: IngestProject, name: str) -> dict[tuple[str, str, int, datetime], dict]:
    rows = db.execute(
        "select * from public.metric_group_rollups where project_id = %s and name = %s",
        (project.project_id, name),
    ).fetchall()
    return {(r["group_key"], r["group_value"], r["resolution"], r["bucket_start"]): r for r in rows}


def series_rows(db: psycopg.Connection, project: IngestProject, name: str) -> list[dict]:
    return db.execute(
        "select r.*, s.attributes from public.metric_rollups r join public.metric_series s"
        " on s.project_id = r.project_id and s.series_id = r.series_id"
        " where s.project_id = %s and s.name = %s",
        (project.project_id, name),
    ).fetchall()


def group_keys(db: psycopg.Connection, project: IngestProject, name: str) -> dict[str, dict]:
    rows = db.execute(
        "select group_key, cardinality, org_id, updated_at,"
        " case when complete_from <> '-infinity' then complete_from end as complete_from"  # None: from the start
        " from public.metric_group_keys where project_id = %s and name = %s",
        (project.project_id, name),
    ).fetchall()
    return {r["group_key"]: r for r in rows}


def canonical(value: Any) -> str:
    """group_value of an attribute value: its jsonb text."""
    return f'"{value}"' if isinstance(value, str) else str(value).lower()


def assert_hourly_quantiles(db: psycopg.Connection, project: IngestProject, name: str) -> None:
    """Every 1d group row's hourly_pNN is its day's 1h rows' pNN (None where the hour has no row); no other row has
    one."""
    groups = group_rows(db, project, name)
    days = [key for key in groups if key[2] == 86400]
    assert days
    for (key, value, resolution, start), row in groups.items():
        if resolution != 86400:
            assert [row[f"hourly_p{q}"] for q in (50, 90, 95, 99)] == [None] * 4
            continue
        for q in (50, 90, 95, 99):
            hours = [groups.get((key, value, 3600, start + timedelta(hours=h))) for h in range(24)]
            assert row[f"hourly_p{q}"] == [hour[f"p{q}"] if hour else None for hour in hours], (key, value, start, q)


@pytest.fixture(scope="module")
def project(database_url: str) -> IngestProject:
    return make_project(("ingest", "read"), label="Groups")


def query(project: IngestProject, *queries: dict[str, Any]) -> list[dict[str, Any]]:
    result = invoke(
        "metrics",
        "POST",
        f"/v1/projects/{project.project_id}/metrics/query",
        headers=project.headers,
        json_body={"queries": list(queries)},
    )
    assert result.status == 200, result.text
    return result.data["results"]


# --- the job ----------------------------------------------------------------------------------------------------


def test_group_rows_are_the_merge_of_the_per_series_rows_at_every_resolution(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given six gauge series (hosts h1..h3, routes /a /b, code 200/500) and two counters, rolled up
    name, counter_name = unique("lat"), unique("req")
    base = base_time()
    values = seed_gauges(project, name, base)
    seed_counters(project, counter_name, base)

    # When the job catches up
    drain()

    # Then the metric has the whole-metric group and one per low-cardinality key
    assert set(group_keys(db, project, name)) == {"", "host", "route", "code"}
    assert group_keys(db, project, name)["host"]["cardinality"] == 3
    # (complete from the metric's first rollup: none older existed)
    assert {k["complete_from"] for k in group_keys(db, project, name).values()} == {None}
    for metric in (name, counter_name):
        groups = group_rows(db, project, metric)
        # And every group row is the merge of its series' rows: count, sum, min, max, increase, series, sketch
        expected: dict[tuple[str, str, int, datetime], list[dict]] = defaultdict(list)
        for row in series_rows(db, project, metric):
            expected[("", "", row["resolution"], row["bucket_start"])].append(row)
            for key, value in row["attributes"].items():
                expected[(key, canonical(value), row["resolution"], row["bucket_start"])].append(row)
        assert set(groups) == set(expected)
        for key, rows in expected.items():
            group = groups[key]
            assert group["count"] == sum(r["count"] for r in rows)
            assert group["sum"] == pytest.approx(sum(r["sum"] for r in rows), rel=1e-12)
            assert (group["min"], group["max"]) == (min(r["min"] for r in rows), max(r["max"] for r in rows))
            increases = [r["increase"] for r in rows if r["increase"] is not None]
            assert group["increase"] == (pytest.approx(sum(increases), rel=1e-12) if increases else None)
            latest = max((r["last_time"], r["last"]) for r in rows)
            assert (group["last_time"], group["last"]) == latest
            if key[2] == 60:
                assert group["series"] == len(rows)
            merged = Sketch()
            for r in rows:
                if r["sketch"] is not None:
                    merged.merge(Sketch.from_json(r["sketch"]))
            if merged.count:
                assert Sketch.from_json(group["sketch"]) == merged
                # And the 1h and 1d rows' precomputed quantiles are the sketch's (1m and 5m rows keep none)
                for q in (50, 90, 95, 99):
                    if key[2] in (3600, 86400):
                        assert group[f"p{q}"] == pytest.approx(merged.quantile(q / 100), rel=1e-12)
                    else:
                        assert group[f"p{q}"] is None
            else:
                assert group["sketch"] is None and group["p99"] is None

    # And percentiles of an hour per host are within 1% of the exact ones over the raw values
    groups = group_rows(db, project, name)
    for h, host in enumerate(HOSTS):
        raw = [v for i in (h, h + 3) for v in values[i][:180]]  # the first hour: 180 points per series
        row = groups[("host", canonical(host), 3600, base)]
        for q in (50, 90, 95, 99):
            exact = sorted(raw)[nearest_rank(q / 100, len(raw)) - 1]
            assert abs(row[f"p{q}"] - exact) <= 0.01 * exact + 1e-9, (q, row[f"p{q}"], exact)


def test_a_late_point_re_rolls_its_group_rows_and_leaves_the_others_alone(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a metric rolled up
    name = unique("late")
    base = base_time(6)
    seed_gauges(project, name, base, minutes=70)
    drain()
    before = group_rows(db, project, name)

    # When a point of host h1, route /a, code 500 arrives late for minute 7, and the job runs
    at = base + timedelta(minutes=7, seconds=31)
    store_points(project, [MetricPoint(name, MetricType.GAUGE, ns(at), attributes(0), value=1e4)])
    drain()
    after = group_rows(db, project, name)

    # Then the rows of its groups at every resolution count it
    starts = {
        60: base + timedelta(minutes=7),
        300: base + timedelta(minutes=5),
        3600: base,
        86400: base.replace(hour=0),
    }
    touched = {
        (key, value, res, start)
        for key, value in (("", ""), ("host", '"h1"'), ("route", '"/a"'), ("code", "500"))
        for res, start in starts.items()
    }
    for key in touched:
        assert after[key]["count"] == before[key]["count"] + 1
        assert after[key]["max"] == 1e4
    # And every other group row is untouched, to the updated_at
    assert {k: v for k, v in after.items() if k not in touched} == {k: v for k, v in before.items() if k not in touched}


def test_the_1d_rows_carry_their_day_s_hourly_quantiles_and_follow_late_points(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given six gauge series over a day boundary (from 22:00 to 02:10 UTC, two days ago), rolled up
    name = unique("hourly")
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    base = midnight - timedelta(hours=2)
    seed_gauges(project, name, base, minutes=250)

    # When the job catches up
    drain()

    # Then both days' 1d rows carry the 1h rows' quantiles, hour by hour, and nothing where no hour has a row
    assert_hourly_quantiles(db, project, name)
    before = group_rows(db, project, name)
    day = before[("host", '"h1"', 86400, midnight)]
    assert [p is not None for p in day["hourly_p99"]] == [True] * 3 + [False] * 21
    previous_day = before[("host", '"h1"', 86400, midnight - timedelta(days=1))]
    assert [p is not None for p in previous_day["hourly_p99"]] == [False] * 22 + [True] * 2

    # When 20 late points of 10,000 arrive for 01:07 (host h1, route /a), and the job runs
    at = midnight + timedelta(hours=1, minutes=7)
    late = [ns(at + timedelta(seconds=s)) for s in range(20)]
    store_points(project, [MetricPoint(name, MetricType.GAUGE, t, attributes(0), value=1e4) for t in late])
    drain()

    # Then the re-rolled hour's element of its groups' 1d rows is the hour's new p99, and the arrays still equal the
    # 1h rows' quantiles everywhere
    after = group_rows(db, project, name)
    for key, value in (("", ""), ("host", '"h1"'), ("route", '"/a"'), ("code", "500")):
        hour = after[(key, value, 3600, midnight + timedelta(hours=1))]
        assert hour["p99"] == pytest.approx(1e4, rel=0.01)
        daily = after[(key, value, 86400, midnight)]["hourly_p99"]
        assert daily[1] == hour["p99"] != before[(key, value, 86400, midnight)]["hourly_p99"][1]
        assert daily[0] == before[(key, value, 86400, midnight)]["hourly_p99"][0]
    assert after[("host", '"h2"', 86400, midnight)] == before[("host", '"h2"', 86400, midnight)]
    assert_hourly_quantiles(db, project, name)


def test_rolling_the_same_points_again_changes_no_group_row(db: psycopg.Connection, project: IngestProject) -> None:
    # Given a gauge metric and a counter rolled up
    name, counter_name = unique("again"), unique("again.req")
    base = base_time(7)
    seed_gauges(project, name, base, minutes=20)
    seed_counters(project, counter_name, base)
    drain()
    snapshot = [group_rows(db, project, n) for n in (name, counter_name)]
    keys = group_keys(db, project, name)

    # When the watermark is moved back so that the same points are rolled again
    db.execute("update public.metric_rollup_state set watermark = watermark - interval '10 minutes'")
    drain()

    # Then every group row is the same, to the updated_at, and so are the groups
    assert [group_rows(db, project, n) for n in (name, counter_name)] == snapshot
    assert group_keys(db, project, name) == keys


def test_a_key_over_the_cardinality_bound_gets_no_group_rows(
    db: psycopg.Connection, project: IngestProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bound of 2 values: host (3 values) is over it, route and code (2) are not
    monkeypatch.setattr(group_rollups, "GROUP_MAX_CARDINALITY", 2)
    name = unique("bound")
    base = base_time(8)
    seed_gauges(project, name, base, minutes=60)

    # When the job rolls the metric up
    drain()

    # Then host has neither a group nor rows
    assert set(group_keys(db, project, name)) == {"", "route", "code"}
    assert {key for key, *_ in group_rows(db, project, name)} == {"", "route", "code"}

    # And a query grouped by host falls back to the per-series rollups, one by route reads the groups
    common = {"name": name, "from": iso(base), "to": iso(base + timedelta(hours=1)), "step": 3600}
    by_host, by_route = query(project, {**common, "id": "h", "group_by": ["host"]}, {**common, "group_by": ["route"]})
    assert (by_host["source"], by_route["source"]) == ("series", "group")
    assert len(by_host["series"]) == 3 and len(by_route["series"]) == 2


def test_a_key_that_outgrows_the_bound_is_dropped(
    db: psycopg.Connection, project: IngestProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a metric whose host key has group rollups
    name = unique("grow")
    base = base_time(9)
    seed_gauges(project, name, base, minutes=10)
    drain()
    assert "host" in group_keys(db, project, name)

    # When the bound falls under its cardinality and a new point arrives
    monkeypatch.setattr(group_rollups, "GROUP_MAX_CARDINALITY", 2)
    store_points(
        project, [MetricPoint(name, MetricType.GAUGE, ns(base + timedelta(minutes=20)), attributes(1), value=1.0)]
    )
    drain()

    # Then host is no longer a group, and queries by host read the per-series rollups
    assert "host" not in group_keys(db, project, name)
    common = {"name": name, "from": iso(base), "to": iso(base + timedelta(hours=1)), "step": 3600, "group_by": ["host"]}
    assert query(project, common)[0]["source"] == "series"


def rolled_then_forgotten(
    db: psycopg.Connection, project: IngestProject, prefix: str
) -> tuple[str, datetime, dict[int, list[float]]]:
    """A metric of six series rolled up over 30 minutes, its group keys and rows then deleted (as a metric older than
    the group rollups): its name, first minute and values."""
    name = unique(prefix)
    base = base_time(10)
    values = seed_gauges(project, name, base, minutes=30)
    drain()
    db.execute("delete from public.metric_group_keys where project_id = %s and name = %s", (project.project_id, name))
    db.execute(
        "delete from public.metric_group_rollups where project_id = %s and name = %s", (project.project_id, name)
    )
    return name, base, values


def test_a_group_registered_after_the_metric_had_rollups_is_read_only_from_when_it_is_complete(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a metric rolled up whose groups are then forgotten (as a metric older than the group rollups)
    name, base, _ = rolled_then_forgotten(db, project, "old")

    # When a point of the second hour arrives and the job runs
    later = base + timedelta(hours=1, minutes=5)
    store_points(project, [MetricPoint(name, MetricType.GAUGE, ns(later), attributes(0), value=5.0)])
    drain()

    # Then the groups are complete from that minute only
    assert {k["complete_from"] for k in group_keys(db, project, name).values()} == {later}
    # And a query over both hours reads the per-series rollups, one from the second hour on (5m steps) the groups
    first = {"name": name, "from": iso(base), "to": iso(base + timedelta(hours=2)), "step": 3600}
    second = {"name": name, "from": iso(later), "to": iso(later + timedelta(minutes=10)), "step": 300, "id": "b"}
    whole, recent = query(project, first, second)
    assert (whole["source"], recent["source"]) == ("series", "group")
    assert recent["series"][0]["points"] == [[int(later.timestamp()), 5.0]]


def test_a_group_registered_by_a_late_point_back_fills_the_minutes_rolled_after_it(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a metric rolled up over 30 minutes whose groups are then forgotten
    name, base, values = rolled_then_forgotten(db, project, "backfill")

    # When a late point into minute 10 arrives and the job runs
    late = base + timedelta(minutes=10, seconds=5)
    store_points(project, [MetricPoint(name, MetricType.GAUGE, ns(late), attributes(0), value=5.0)])
    drain()

    # Then the groups are complete from minute 10, and every minute from there to the last rolled one has its group
    # rows again: the late point's, and the later minutes queued with it
    assert {k["complete_from"] for k in group_keys(db, project, name).values()} == {base + timedelta(minutes=10)}
    whole = {k[3]: r for k, r in group_rows(db, project, name).items() if k[0] == "" and k[2] == 60}
    assert sorted(whole) == [base + timedelta(minutes=m) for m in range(10, 30)]
    assert whole[base + timedelta(minutes=10)]["count"] == 6 * 3 + 1
    assert all(whole[base + timedelta(minutes=m)]["count"] == 6 * 3 for m in range(11, 30))
    # (host h1: series 0 and 3, three points a minute each)
    h1 = group_rows(db, project, name)[("host", '"h1"', 60, base + timedelta(minutes=29))]
    assert h1["sum"] == pytest.approx(sum(values[0][87:90]) + sum(values[3][87:90]), rel=1e-12)
    assert not db.execute("select 1 from public.metric_group_pending where name = %s", (name,)).fetchall()


def test_the_group_step_is_bounded_per_run_and_the_next_runs_resume_it(
    db: psycopg.Connection, project: IngestProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a group step bounded to 20 per-series rows per chunk and per run, and a metric of 6 series × 60 minutes
    monkeypatch.setattr(group_rollups, "CHUNK_ROWS", 20)
    monkeypatch.setattr(group_rollups, "RUN_MAX_ROWS", 20)
    name = unique("bounded")
    base = base_time(12)
    seed_gauges(project, name, base, minutes=60)

    # When the job runs once
    first = run_aggregation(lag_s=0)

    # Then it merged a few minutes only (20 rows: 3 minutes of 6 series, at least one minute a chunk), queued the rest
    # and says more is pending
    assert first.ran and first.more_pending
    assert 1 <= first.group_minutes <= 4
    pending = db.execute(
        "select count(*) as n from public.metric_group_pending where project_id = %s and name = %s",
        (project.project_id, name),
    ).fetchone()
    assert pending is not None and pending["n"] > 0
    # And a query over the hour reads the per-series rollups meanwhile (the groups are incomplete), with the answer
    # of the per-series path
    common = {"name": name, "from": iso(base), "to": iso(base + timedelta(hours=1)), "step": 3600}
    (during,) = query(project, {**common, "aggregation": "count"})
    assert during["source"] == "series" and during["series"][0]["points"][0][1] == 6 * 180

    # When the next runs go on until nothing is pending
    runs = 0
    while run_aggregation(lag_s=0).more_pending:
        runs += 1
        assert runs < 200

    # Then the queue is empty, and the same query reads the groups with the same answer
    assert db.execute(
        "select count(*) as n from public.metric_group_pending where project_id = %s and name = %s",
        (project.project_id, name),
    ).fetchone() == {"n": 0}
    (after,) = query(project, {**common, "aggregation": "count"})
    assert after["source"] == "group" and after["series"] == during["series"]


# --- the query planner ------------------------------------------------------------------------------------------

AGGREGATIONS = ("avg", "sum", "min", "max", "count", "last", "p50", "p99")


@pytest.fixture(scope="module")
def metrics(project: IngestProject) -> tuple[str, str, datetime]:
    name, counter_name = unique("q.lat"), unique("q.req")
    base = base_time(11)
    seed_gauges(project, name, base)
    seed_counters(project, counter_name, base)
    drain()
    return name, counter_name, base


def assert_same(group: dict[str, Any], series: dict[str, Any]) -> None:
    assert group["source"] == "group" and series["source"] == "series"
    assert group["resolution"] == series["resolution"] and group["step"] == series["step"]
    assert [s["labels"] for s in group["series"]] == [s["labels"] for s in series["series"]]
    for a, b in zip(group["series"], series["series"], strict=True):
        assert [t for t, _ in a["points"]] == [t for t, _ in b["points"]]
        assert [v for _, v in a["points"]] == pytest.approx([v for _, v in b["points"]], rel=1e-9)


@pytest.mark.parametrize("step", [300, 3600, 7200])
@pytest.mark.parametrize("group_by", [[], ["host"], ["code"]])
def test_a_query_by_a_low_cardinality_key_reads_the_groups_with_the_per_series_values(
    project: IngestProject, metrics: tuple[str, str, datetime], step: int, group_by: list[str]
) -> None:
    # Given a rolled-up metric
    name, _, base = metrics
    common = {"name": name, "from": iso(base), "to": iso(base + timedelta(hours=2)), "step": step, "group_by": group_by}

    for aggregation in AGGREGATIONS:
        # When the same query is asked as is, and with a filter that forces the per-series path
        group, series = query(
            project,
            {**common, "id": "g", "aggregation": aggregation},
            {**common, "id": "s", "aggregation": aggregation, "filters": [EVERY_ROUTE]},
        )
        # Then the first reads the group rollups, and both answer the same
        assert_same(group, series)
        assert len(group["series"]) == {(): 1, ("host",): 3, ("code",): 2}[tuple(group_by)]


def test_filters_on_the_group_by_key_read_the_groups_and_other_filters_do_not(
    project: IngestProject, metrics: tuple[str, str, datetime]
) -> None:
    name, _, base = metrics
    common = {"name": name, "from": iso(base), "to": iso(base + timedelta(hours=2)), "step": 3600, "aggregation": "p95"}

    # When filtering on the group_by key with = and in
    hosts = {"attribute": "host", "op": "in", "value": ["h1", "h3"]}
    eq, within, series = query(
        project,
        {**common, "id": "eq", "group_by": ["code"], "filters": [{"attribute": "code", "op": "=", "value": 200}]},
        {**common, "id": "in", "group_by": ["host"], "filters": [hosts]},
        {**common, "id": "s", "group_by": ["host"], "filters": [hosts, EVERY_ROUTE]},
    )

    # Then the groups answer, only the values asked for
    assert eq["source"] == "group" and [s["labels"] for s in eq["series"]] == [{"code": 200}]
    assert [s["labels"] for s in within["series"]] == [{"host": "h1"}, {"host": "h3"}]
    assert_same(within, series)
    # And a filter without group_by, a != filter, a float value or two group_by keys use the per-series path
    others = query(
        project,
        {**common, "id": "a", "filters": [{"attribute": "host", "op": "=", "value": "h1"}]},
        {**common, "id": "b", "group_by": ["host"], "filters": [{"attribute": "host", "op": "!=", "value": "h1"}]},
        {**common, "id": "c", "group_by": ["code"], "filters": [{"attribute": "code", "op": "=", "value": 200.0}]},
        {**common, "id": "d", "group_by": ["host", "code"]},
        {**common, "id": "e", "step": 450},
    )
    assert [r["source"] for r in others] == ["series", "series", "series", "series", "raw"]


@pytest.mark.parametrize("aggregation", ["increase", "rate"])
def test_counter_increase_and_rate_from_the_groups_equal_the_per_series_ones(
    project: IngestProject, metrics: tuple[str, str, datetime], aggregation: str
) -> None:
    _, counter_name, base = metrics
    common = {"name": counter_name, "from": iso(base), "to": iso(base + timedelta(hours=2)), "step": 3600}
    group, series = query(
        project,
        {**common, "id": "g", "aggregation": aggregation, "group_by": ["host"]},
        {**common, "id": "s", "aggregation": aggregation, "group_by": ["host"],
         "filters": [{"attribute": "host", "op": "=~", "value": ".*"}]},
    )  # fmt: skip
    assert_same(group, series)
    assert len(group["series"]) == 2


def hourly_points(
    db: psycopg.Connection, project: IngestProject, name: str, key: str, q: int, start: datetime, end: datetime
) -> dict[str, list[list[float]]]:
    """The 1h group rows' pNN per group value over [start, end): what a query at a 1h step answers."""
    rows = db.execute(
        f"select group_value, extract(epoch from bucket_start)::bigint as slot, p{q} as value"
        " from public.metric_group_rollups where project_id = %s and name = %s and group_key = %s"
        f" and resolution = 3600 and bucket_start >= %s and bucket_start < %s and p{q} is not null"
        " order by group_value, bucket_start",
        (project.project_id, name, key, start, end),
    ).fetchall()
    points: dict[str, list[list[float]]] = defaultdict(list)
    for r in rows:
        points[r["group_value"]].append([r["slot"], r["value"]])
    return points


def test_whole_days_at_a_1h_step_read_the_1d_rows_hourly_quantiles_with_the_1h_rows_values(
    db: psycopg.Connection, project: IngestProject
) -> None:
    # Given six gauge series with a point every 2 minutes from 18:00 four days ago to 12:00 two days ago (UTC)
    name = unique("days")
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    first, last = midnight - timedelta(hours=6), midnight + timedelta(hours=36)
    rng = random.Random(name)
    points = [
        MetricPoint(name, MetricType.GAUGE, ns(first + timedelta(minutes=m)), attributes(i),
                    value=round(rng.lognormvariate(3, 1) * (1 + i / 10), 6))
        for i in range(6)
        for m in range(0, int((last - first).total_seconds()) // 60, 2)
    ]  # fmt: skip
    store_points(project, points)
    drain()
    assert_hourly_quantiles(db, project, name)

    ranges = [
        (first, last),  # partial days at both edges, one whole day
        (midnight + timedelta(hours=-5, minutes=30), midnight + timedelta(hours=31, minutes=10)),  # mid-hour edges
        (midnight, midnight + timedelta(days=1)),  # exactly one day
        (midnight - timedelta(days=1), midnight + timedelta(days=2)),  # whole days, a part without rows
        (midnight + timedelta(hours=20), midnight + timedelta(hours=28)),  # over midnight, no whole day
        (first, datetime.now(UTC)),  # whole days up to the current one, and the raw tail
    ]
    for start, end in ranges:
        for group_by in ([], ["host"]):
            for q in (50, 99):
                # When the range is asked at a 1h step from the group rollups, and from the per-series ones
                common = {"name": name, "from": iso(start), "to": iso(end), "step": 3600, "group_by": group_by,
                          "aggregation": f"p{q}"}  # fmt: skip
                group, series = query(project, {**common, "id": "g"}, {**common, "id": "s", "filters": [EVERY_ROUTE]})

                # Then the group path answers exactly the 1h group rows' quantiles, slot by slot, as the per-series
                # path does
                hour_start = start.replace(minute=0, second=0, microsecond=0)
                expected = hourly_points(db, project, name, "host" if group_by else "", q, hour_start, end)
                assert {
                    (canonical(s["labels"]["host"]) if group_by else ""): s["points"] for s in group["series"]
                } == expected, (start, end, group_by, q)
                assert_same(group, series)
                assert len(group["series"]) == (3 if group_by else 1)

    # And at a 1d step, the 1d rows' own quantiles answer, as the per-series path does
    common = {
        "name": name,
        "from": iso(first),
        "to": iso(last),
        "step": 86400,
        "group_by": ["host"],
        "aggregation": "p99",
    }
    group, series = query(project, {**common, "id": "g"}, {**common, "id": "s", "filters": [EVERY_ROUTE]})
    assert_same(group, series)
    assert [len(s["points"]) for s in group["series"]] == [3, 3, 3]


def test_the_slot_holding_now_merges_the_1m_rollups_with_the_raw_points_after_them(project: IngestProject) -> None:
    # The engine reads its own clock: when now - RECENT passes an hour while the case runs (at most once an hour, more
    # likely on a loaded machine), the slot it reads raw moves under the case, which then runs once more, afresh.
    for attempt in (1, 2):
        started = datetime.now(UTC)
        try:
            _slot_holding_now_case(project)
            return
        except AssertionError:
            crossed = _hour_of(started - RECENT) != _hour_of(datetime.now(UTC) - RECENT)
            if attempt == 2 or not crossed:
                raise


def _hour_of(at: datetime) -> int:
    return int(at.timestamp()) // 3600


def _slot_holding_now_case(project: IngestProject) -> None:
    # Given six gauge series with a point every 20 s for the last 90 minutes, up to a few seconds ago, rolled up
    name = unique("now")
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(name)
    points, values = [], []
    for i in range(6):
        for s in range(5, 90 * 60, 20):
            at, value = now - timedelta(seconds=s), round(rng.lognormvariate(3, 1), 6)
            points.append(MetricPoint(name, MetricType.GAUGE, ns(at), attributes(i), value=value))
            values.append((at, value))
    store_points(project, points)
    drain()

    # When the last two hours are asked at a 1h step: the slot holding now reads 1m rollups, then raw points
    common = {"name": name, "from": iso(now - timedelta(hours=2)), "to": iso(now), "step": 3600}
    hour = int(now.timestamp()) // 3600 * 3600
    for group_by in ([], ["host"]):
        for aggregation in ("avg", "sum", "min", "max", "count", "last", "p99"):
            group, series = query(
                project,
                {**common, "id": "g", "aggregation": aggregation, "group_by": group_by},
                {**common, "id": "s", "aggregation": aggregation, "group_by": group_by, "filters": [EVERY_ROUTE]},
            )
            # Then the group and per-series paths agree (raw from the hour of now - RECENT: in the first minutes of
            # an hour, the previous one)
            assert group["raw_from"] == int((now - RECENT).timestamp()) // 3600 * 3600
            assert_same(group, series)
    # And the slot's values are those of its points
    in_slot = [v for at, v in values if at.timestamp() >= hour]
    earlier = [v for at, v in values if at.timestamp() < hour]
    answers = {
        a: query(project, {**common, "aggregation": a})[0]["series"][0]["points"]
        for a in ("count", "sum", "min", "max", "last", "p99")
    }
    assert answers["count"][-1] == [hour, len(in_slot)]
    assert answers["sum"][-1][1] == pytest.approx(sum(in_slot), rel=1e-9)
    assert (answers["min"][-1][1], answers["max"][-1][1]) == (min(in_slot), max(in_slot))
    latest = max(at for at, _ in values)
    assert answers["last"][-1][1] == max(v for at, v in values if at == latest)
    exact = sorted(in_slot)[nearest_rank(0.99, len(in_slot)) - 1]
    assert abs(answers["p99"][-1][1] - exact) <= 0.01 * exact
    assert sum(v for t, v in answers["count"] if t < hour) == len(earlier)


def test_the_slot_holding_now_reads_its_whole_group_row_only_when_its_rolled_minutes_hold_every_stored_point(
    project: IngestProject,
) -> None:
    from observai.auth.principal import Principal
    from observai.db.connection import tenant_transaction
    from observai.metrics import query as engine
    from observai.metrics.query_models import QueryRequest

    # Given six gauge series with a point every 20 s from an hour before H to H + 40 min (H: an hour 3 hours ago),
    # rolled up, and "now" at H + 47 min: the raw tail starts at H + 44 min, after the last rolled minute
    name = unique("tail")
    base = base_time(4)
    hour = base + timedelta(hours=1)
    values = seed_gauges(project, name, base, minutes=100)
    drain()
    now = hour + timedelta(minutes=47)
    reader = Principal(
        kind="api_key", key_id=project.key_id, org_id=project.org_id, project_id=project.project_id,
        scopes=frozenset({"read"}),
    )  # fmt: skip
    common = {"name": name, "from": iso(base), "to": iso(now), "step": 3600}

    def run(*queries: dict[str, Any]) -> list[dict[str, Any]]:
        request = QueryRequest.model_validate({"queries": list(queries)})
        response = engine.run_queries(reader, project.project_id, request, now=now)
        return [r.model_dump(mode="json") for r in response.results]

    def whole_tail() -> tuple[bool, datetime]:
        q = QueryRequest.model_validate({"queries": [{**common, "id": "q", "aggregation": "avg"}]}).queries[0]
        with tenant_transaction(reader.rls_claims()) as cur:
            query_plan = engine.plan(q, now)
            candidate = engine._group_candidate(q, query_plan)
            matches = engine._count_series(cur, project.project_id, q, group=(candidate or "", query_plan))
            _, whole, read_plan = engine._group_key(matches, q, candidate, query_plan)
            return whole, read_plan.minute_from

    def point(minutes: float, value: float) -> MetricPoint:
        return MetricPoint(name, MetricType.GAUGE, ns(hour + timedelta(minutes=minutes)), attributes(0), value=value)

    in_slot = [v for i in range(6) for k, v in enumerate(values[i]) if k * 20 >= 3600]
    assert len(in_slot) == 6 * 120
    cases = {
        # nothing rolled in the raw tail: the slot's group row, then raw points from H + 44
        "before": (True, hour + timedelta(minutes=44)),
        # a point at H + 45 rolled up (its group has a 1m row in the raw tail) and every point of the tail's rolled
        # minutes counted there: the group row up to H + 46, raw points after it
        "rolled": (True, hour + timedelta(minutes=46)),
        # then a point stored at H + 45 m 30 s that no run has rolled yet: the tail's rolled minutes lack it, so the
        # slot is read from its 5m and 1m group rows and raw points from H + 44, as before
        "unrolled": (False, hour + timedelta(minutes=44)),
    }
    for case, expected in cases.items():
        if case == "rolled":
            store_points(project, [point(45, 1e6)])
            drain()
            in_slot.append(1e6)
        if case == "unrolled":
            store_points(project, [point(45.5, 2e6)])
            in_slot.append(2e6)
        # When the last slot is read, by the group rows and by the per-series rows
        # Then the group path reads the slot's whole group row only when the tail's rolled minutes hold every point
        assert whole_tail() == expected, case
        for group_by in ([], ["host"]):
            for aggregation in ("avg", "sum", "min", "max", "count", "last", "p99"):
                group, series = run(
                    {**common, "id": "g", "aggregation": aggregation, "group_by": group_by},
                    {**common, "id": "s", "aggregation": aggregation, "group_by": group_by, "filters": [EVERY_ROUTE]},
                )
                assert group["raw_from"] == int(hour.timestamp())
                # And both paths agree, and every point of the slot counts once
                assert_same(group, series)
        answers = {a: run({**common, "id": "q", "aggregation": a})[0]["series"][0]["points"] for a in ("count", "sum")}
        assert answers["count"][-1] == [int(hour.timestamp()), len(in_slot)], case
        assert answers["sum"][-1][1] == pytest.approx(sum(in_slot), rel=1e-9)
    drain()


# --- tenant isolation -----------------------------------------------------------------------------------------


def test_group_rollups_and_keys_are_read_through_rls_by_the_projects_api_key_only(db: psycopg.Connection) -> None:
    from observai.db.connection import tenant_transaction

    # Given group rollups of the same metric name in two projects
    a, b = make_project(("ingest", "read"), label="Group RLS A"), make_project(("ingest", "read"), label="Group RLS B")
    name = unique("rls")
    base = base_time(4)
    for p in (a, b):
        seed_gauges(p, name, base, minutes=5)
    drain()

    def visible(project: IngestProject, table: str) -> set[uuid.UUID]:
        claims = {
            "role": "authenticated",
            "api_key": {"id": str(project.key_id), "org_id": str(project.org_id),
                        "project_id": str(project.project_id), "scopes": ["read"]},
        }  # fmt: skip
        with tenant_transaction(claims) as cur:
            cur.execute(f"select distinct project_id from public.{table} where name = %s", (name,))
            return {r["project_id"] for r in cur.fetchall()}

    # When each project's key reads the tables / Then it sees its own project's rows only
    for table in ("metric_group_rollups", "metric_group_keys"):
        assert visible(a, table) == {a.project_id}
        assert visible(b, table) == {b.project_id}
    # And a query of project B never returns A's values
    common = {
        "name": name,
        "from": iso(base),
        "to": iso(base + timedelta(hours=1)),
        "step": 3600,
        "aggregation": "count",
    }
    (answer,) = query(b, common)
    assert answer["source"] == "group" and answer["series"][0]["points"][0][1] == 6 * 15
    # And the API roles cannot write the tables
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("set role authenticated; delete from public.metric_group_rollups")
    db.execute("reset role")
