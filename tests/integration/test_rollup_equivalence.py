"""The faster aggregation job gives the same rollups as before: the job of issue 17 (observai.metrics.rollup and
groups: sketches merged in SQL as entries, fresh minutes plainly inserted) against the job as it was
(tests/helpers/rollup_reference.py), over the same random points, replayed the same way into a private database.

Every row is compared, every column but updated_at, exactly: count, sum (same summation order), min, max, last,
last_time, increase, the sketch (the same counts per store and index, collapsing included), and the group rows with
their series count, p50..p99 and the 1d rows' hourly quantiles. The points come in batches (each batch a few ingest
transactions), out of time order (late points re-roll rolled minutes), over several runs with a small max_points
(bounded windows, minutes re-rolled across runs), for gauges, both counter temporalities and histograms, with group
keys (and a series without the key).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.metrics import rollup, sketch_sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers import rollup_reference

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("gauge", "counter", "delta_counter", "histogram", "cumulative_histogram")
BOUNDS = [1.0, 10.0, 100.0]


@dataclass(frozen=True)
class Series:
    name: str
    kind: str
    host: str | None

    @property
    def attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {"service.name": "eq"}
        if self.host is not None:
            attributes["host"] = self.host
        return attributes


@dataclass(frozen=True)
class Point:
    series: int
    minute: int
    second: int
    value: float
    counts: tuple[int, ...] = (0, 0, 0, 0)


@dataclass(frozen=True)
class Scenario:
    series: list[Series]
    batches: list[list[Point]]  # each batch: its points in ingest order (a few transactions)
    max_points: int


@pytest.fixture(scope="module")
def private_url(database_url: str) -> Iterator[str]:
    """A database of its own: both jobs roll up everything in it, and tables are emptied between replays."""
    from observai.db.migrations import apply_migrations

    name = f"rollup_eq_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    apply_migrations(url, ROOT / "migrations")
    yield url
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')


def _row(series: Series, org: uuid.UUID, project: uuid.UUID, sid: int) -> tuple[Any, ...]:
    kind = series.kind
    type_ = {"gauge": "gauge", "counter": "sum", "delta_counter": "sum"}.get(kind, "histogram")
    monotonic = True if type_ == "sum" else None
    temporality = {"gauge": None, "counter": "cumulative", "delta_counter": "delta", "histogram": "delta"}.get(
        kind, "cumulative"
    )
    return (org, project, sid, series.name, type_, Jsonb(series.attributes), monotonic, temporality)


def replay(url: str, job: ModuleType, scenario: Scenario, base: datetime) -> dict[str, list[dict[str, Any]]]:
    """Empty the private database, then per batch: store its points (each its own ingest transactions, with
    increasing ingested_at), and run ``job`` until nothing is pending; returns every rollup row."""
    org, project = uuid.UUID(int=1), uuid.UUID(int=2)
    ingest = datetime.now(UTC) - timedelta(hours=1)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.execute(
            "truncate public.metric_points, public.metric_series, public.metric_rollups, public.metric_rollup_state,"
            " public.metric_group_rollups, public.metric_group_pending, public.metric_group_keys"
        )
        conn.commit()
        for number, batch in enumerate(scenario.batches):
            used = {p.series for p in batch}
            conn.cursor().executemany(
                "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes, monotonic,"
                " temporality) values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict do nothing",
                [_row(scenario.series[i], org, project, 1000 + i) for i in sorted(used)],
            )
            rows = []
            for i, p in enumerate(batch):
                time = base + timedelta(minutes=p.minute, seconds=p.second)
                at = ingest + timedelta(seconds=number, milliseconds=i % 3)  # three transactions per batch
                kind = scenario.series[p.series].kind
                if kind in ("histogram", "cumulative_histogram"):
                    count = sum(p.counts)
                    rows.append(
                        (org, project, 1000 + p.series, time, base - timedelta(minutes=5), None, count,
                         abs(p.value) * count, None, None, Jsonb({"bounds": BOUNDS, "counts": list(p.counts)}), at)
                    )  # fmt: skip
                else:
                    start = base - timedelta(minutes=5) if kind == "counter" else None
                    rows.append(
                        (org, project, 1000 + p.series, time, start, p.value, None, None, None, None, None, at)
                    )  # fmt: skip
            conn.cursor().executemany(
                "insert into public.metric_points (org_id, project_id, series_id, time, start_time, value, count,"
                " sum, min, max, distribution, ingested_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " on conflict do nothing",
                rows,
            )
            conn.commit()
            for _ in range(500):
                with conn.transaction():
                    report = job.aggregate(conn.cursor(), max_points=scenario.max_points, lag_s=0)
                assert report.ran
                if not report.more_pending:
                    break
            else:
                raise AssertionError("the job never caught up")
        snapshot = {
            # Each row's sketch as readers read it (sketch_sql.sketch_text): the job stores none for a minute of one
            # gauge value (its one entry is read from min); the job before did.
            "rollups": conn.execute(
                f"select r.*, {sketch_sql.sketch_text('r')}::jsonb as read_sketch, s.type as series_type"
                " from public.metric_rollups r join public.metric_series s using (project_id, series_id)"
                " order by project_id, series_id, resolution, bucket_start"
            ).fetchall(),
            "groups": conn.execute(
                "select * from public.metric_group_rollups"
                " order by project_id, name, group_key, group_value, resolution, bucket_start"
            ).fetchall(),
            "keys": conn.execute(
                "select project_id, name, group_key, cardinality, complete_from::text from public.metric_group_keys"
                " order by project_id, name, group_key"
            ).fetchall(),
        }
    for rows in snapshot.values():
        for row in rows:
            row.pop("updated_at", None)
    for row in snapshot["rollups"]:
        row["stored_sketch"] = row["sketch"] is not None
        row["sketch"] = row.pop("read_sketch")
    return snapshot


def assert_same(new: dict[str, list[dict[str, Any]]], old: dict[str, list[dict[str, Any]]]) -> None:
    for table in ("rollups", "groups", "keys"):
        assert len(new[table]) == len(old[table]), table
        for mine, theirs in zip(new[table], old[table], strict=True):
            if table == "rollups":
                # The job stores a sketch for every row with observations but a 1m row of one finite gauge value
                mine, theirs = dict(mine), dict(theirs)
                one_value = mine["resolution"] == 60 and mine["count"] == 1 and mine["increase"] is None
                one_value = one_value and mine["series_type"] in ("gauge", "sum")
                one_value = one_value and mine["min"] is not None and math.isfinite(mine["min"])
                assert mine.pop("stored_sketch") == (theirs.pop("stored_sketch") and not one_value), (mine, theirs)
            assert _comparable(mine) == _comparable(theirs), (table, mine, theirs)


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    """NaN equals NaN (a sum of non-finite values), else exact."""
    return {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def play_both(private_url: str, scenario: Scenario) -> dict[str, list[dict[str, Any]]]:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    old = replay(private_url, rollup_reference, scenario, base)
    new = replay(private_url, rollup, scenario, base)
    assert_same(new, old)
    return new


# --- random scenarios ------------------------------------------------------------------------------------------

values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, 1e-12, 1.0, 250.0, -3.5, 1e-8, 1e12]),  # zeros, repeats, and a span past 2048 buckets
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    metrics = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3))
    series = [
        Series(f"eq.m{m}", kind, host)
        for m, kind in enumerate(metrics)
        for host in draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=3, unique=True))
    ]
    points = draw(
        st.lists(
            st.builds(
                Point,
                series=st.integers(0, len(series) - 1),
                minute=st.integers(0, 150),
                second=st.integers(0, 59),
                value=values,
                counts=st.tuples(*[st.integers(0, 5)] * 4),
            ),
            min_size=1,
            max_size=60,
            unique_by=lambda p: (p.series, p.minute, p.second),
        )
    )
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(points) - 1)), max_size=3, unique=True)))
    batches = [points[a:b] for a, b in zip([0, *cuts], [*cuts, len(points)], strict=True) if points[a:b]]
    return Scenario(series, batches, draw(st.integers(1, 40)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_the_faster_job_gives_the_same_rollups_as_before_over_random_points(
    private_url: str, scenario: Scenario
) -> None:
    # Given random points of gauges, counters and histograms, in batches out of time order
    # When the job of before and the faster one each roll them up, run after run with a small bound
    # Then every per-series and group rollup row is the same, column by column
    play_both(private_url, scenario)


def test_many_series_over_hours_give_the_same_rollups_group_rows_and_hourly_quantiles(private_url: str) -> None:
    # Given 60 gauge series (20 metrics on three hosts) over three hours, a point every 20 s (a few minutes missing),
    # stored in four batches of which the last brings late points into minutes rolled long before
    series = [Series(f"eq.latency.{r}", "gauge", host) for r in range(20) for host in ("a", "b", "c")]
    points = [
        Point(s, minute, second, math.exp((s * 7 + minute * 13 + second) % 23 / 3.0))
        for s in range(len(series))
        for minute in range(0, 180)
        for second in (0, 20, 40)
        if (s + minute) % 5
    ]
    late = [Point(s, minute, 50, 1000.0 + s) for s in range(0, len(series), 7) for minute in range(3, 180, 11)]
    quarter = len(points) // 3
    batches = [points[:quarter], points[quarter : 2 * quarter], points[2 * quarter :], late]

    # When both jobs roll them up with runs of at most 5,000 points
    snapshot = play_both(private_url, Scenario(series, batches, 5000))

    # Then (same rows, above) the group rows include 1h rows with quantiles and 1d rows with hourly ones
    hourly = [g for g in snapshot["groups"] if g["resolution"] == 86400 and g["group_key"] == "host"]
    assert hourly and all(g["hourly_p99"] is not None for g in hourly)
    assert any(g["p95"] is not None for g in snapshot["groups"] if g["resolution"] == 3600)


def test_sketches_past_2048_buckets_collapse_the_same_way_at_every_level_and_in_groups(private_url: str) -> None:
    # Given gauges whose values span more than 2,048 sketch buckets (1e-8 to 1e12, both signs) within one minute,
    # and across the minutes of one 5-minute bucket, on two hosts, in two batches
    series = [Series("eq.wide", "gauge", host) for host in ("a", "b")]
    first = [
        Point(s, minute, second, sign * magnitude)
        for s in range(2)
        for minute in (0, 1, 7)
        for second, (sign, magnitude) in enumerate([(1, 1e-8), (1, 1e12), (-1, 1e-8), (-1, 1e12), (1, 3.0)])
    ]
    second = [Point(s, 2, 30, 1e-7 * (s + 1)) for s in range(2)] + [Point(0, 61, 0, 1e15)]

    # When both jobs roll them up (the second batch re-rolls the 5m and 1h buckets of the first)
    snapshot = play_both(private_url, Scenario(series, [first, second], 3))

    # Then (same rows, above) the wide stores were collapsed to 2,048 buckets
    wide = [r for r in snapshot["rollups"] if r["sketch"] and len(r["sketch"]["p"]) > 1]
    assert wide and all(len(r["sketch"]["p"]) <= 2048 and len(r["sketch"]["n"]) <= 2048 for r in wide)
    assert any(max(map(int, r["sketch"]["p"])) - min(map(int, r["sketch"]["p"])) == 2047 for r in wide)


def test_non_finite_values_counter_resets_and_crowded_minutes_roll_up_the_same_way(private_url: str) -> None:
    # Given a gauge, a cumulative counter and a delta counter with NaN and ±Infinity among their values, counter
    # resets and a NaN before a counter value (Postgres orders NaN above every number), minutes of 60 points (the
    # vectorised pass adds long minutes with a running sum) and values that land on a sketch bucket's edge
    edge = math.exp(rollup_pass_log_gamma() * 37)  # γ^37: ln(x)/ln(γ) is an integer, up to an ulp
    series = [Series("eq.odd", kind, "a") for kind in ("gauge", "counter", "delta_counter")]
    specials = [math.nan, math.inf, -math.inf, 5.0, 1.0, math.nan, 7.0, edge, -edge, 0.0, 2.0, 1e-12]
    points = [
        Point(s, minute, second, specials[(second + minute + s) % len(specials)] if second % 7 == 0 else 1.5 + second)
        for s in range(3)
        for minute in (0, 1, 2, 9)
        for second in range(60)
    ]
    later = [Point(s, minute, 0, specials[(minute + s) % len(specials)]) for s in range(3) for minute in (3, 4, 61)]

    # When both jobs roll them up (the second batch re-rolls the first batch's coarse buckets)
    snapshot = play_both(private_url, Scenario(series, [points, later], 200))

    # Then (same rows, above) NaN and infinities were kept out of the sums but not out of the counts
    minute_rows = [r for r in snapshot["rollups"] if r["resolution"] == 60]
    assert any(r["count"] == 60 for r in minute_rows)
    assert all(r["sum"] is None or math.isfinite(r["sum"]) for r in minute_rows if r["series_id"] == 1000)


def rollup_pass_log_gamma() -> float:
    from observai.metrics.sketch import LOG_GAMMA

    return LOG_GAMMA
