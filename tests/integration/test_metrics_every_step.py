"""The same metric query gives the same answer at every step and from every source (issue 11, section 4): raw
points, the 1m, 5m, 1h and 1d rollups, the group rollups, and the raw tail (slots mixing rolled-up minutes with raw
points, a slot holding the whole range); on random gauges, delta and cumulative histograms and cumulative counters,
within the sketch's accuracy. Then the regressions that led here, over the API.

The sources are forced by giving the engine's reader a plan (``_run_one``): the planner's own choice is tested
apart (tests/unit/test_query_models.py), and here every source must agree on the same slots.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.metrics.rollup import run_aggregation
from observai.metrics.sketch import Sketch, nearest_rank
from observai.telemetry.model import MetricPoint, MetricType, Temporality

from tests.helpers.ingest import IngestProject, iso, make_project, store_points
from tests.helpers.inprocess import invoke

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Two whole UTC days, three days ago (the 1d rollups hold whole days).
FROM = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
TO = FROM + timedelta(days=2)
SPAN_S = 2 * 86400
BOUNDS = [0.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0]
HOSTS = ("a", "b", "c")
# Forces the per-series path: a `!=` filter (group rollups serve `=`/`in` filters only) that matches every series.
EVERY_SERIES = {"attribute": "host", "op": "!=", "value": "none"}
STEPS = (30, 60, 300, 450, 3600, 86400)
ROLLUPS = (60, 300, 3600, 86400)
# Percentiles: raw gauge points are exact, sketches within 1% of the exact value (a hair more for float noise).
SKETCH_REL = 0.0101


def ns(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1) * 1000


def drain() -> None:
    for _ in range(1000):
        report = run_aggregation(lag_s=0)
        assert report.ran
        if not report.more_pending:
            return


@pytest.fixture(scope="module")
def project(database_url: str) -> IngestProject:
    return make_project(("ingest", "read"), label="Every step")


def reader(project: IngestProject) -> Any:
    from observai.auth.principal import Principal

    return Principal(
        kind="api_key", key_id=project.key_id, org_id=project.org_id, project_id=project.project_id,
        scopes=frozenset({"read"}),
    )  # fmt: skip


# --- random data -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observations:
    """One histogram point's new observations (a delta)."""

    counts: tuple[int, ...]
    sum: float
    low: float
    high: float

    @property
    def count(self) -> int:
        return sum(self.counts)


quarters = st.integers(-40, 4000).map(lambda k: k / 4)  # exact in binary: sums do not depend on the order
observations = st.builds(
    lambda counts, total, low, width: Observations(tuple(counts), total if sum(counts) else 0.0, low, low + width),
    st.lists(st.integers(0, 3), min_size=len(BOUNDS) + 1, max_size=len(BOUNDS) + 1),
    quarters,
    st.integers(-40, 400).map(lambda k: k / 4),
    st.integers(0, 1200).map(lambda k: k / 4),
)
# Point times (seconds into the range): spread over both days, and clustered in one minute, one hour, and around
# the midnight between the days (slot edges of every step).
offsets = st.one_of(
    st.integers(0, SPAN_S - 1), st.integers(43_200, 43_500), st.integers(86_100, 86_700), st.integers(50, 3_650)
)


def timed(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[tuple[int, Any]]]:
    """(offset, value) points of one series, in time order, one per offset."""
    return st.lists(st.tuples(offsets, values), min_size=1, max_size=12, unique_by=lambda p: p[0]).map(sorted)


def per_host(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, list[tuple[int, Any]]]]:
    return st.dictionaries(st.sampled_from(HOSTS), timed(values), min_size=1, max_size=3)


@dataclass
class Dataset:
    gauge: dict[str, list[tuple[int, float]]]
    delta: dict[str, list[tuple[int, Observations]]]  # delta histogram
    # cumulative series: (delta, reset)
    cumulative: dict[str, list[tuple[int, tuple[Observations, bool]]]]  # explicit buckets
    exponential: dict[str, list[tuple[int, tuple[Observations, bool]]]]  # exponential buckets (scale 1)
    summary: dict[str, list[tuple[int, tuple[Observations, bool]]]]  # count and sum only
    counter: dict[str, list[tuple[int, tuple[float, bool]]]]  # cumulative counter: (increment, reset)


resetting = st.tuples(observations, st.booleans())
datasets = st.builds(
    Dataset,
    per_host(quarters),
    per_host(observations),
    per_host(resetting),
    per_host(resetting),
    per_host(resetting),
    per_host(st.tuples(st.integers(0, 400).map(lambda k: k / 4), st.booleans())),
)


def _histogram(
    name: str, host: str, at: datetime, obs: Observations, *, start: datetime | None, kind: str = "histogram"
) -> MetricPoint:
    """A histogram point (``start`` None: delta temporality); exponential: the counts are the positive buckets from
    offset 0 at scale 1; summary: count and sum."""
    distribution: dict[str, Any] = {"bounds": BOUNDS, "counts": list(obs.counts)}
    if kind == "exponential":
        distribution = {"scale": 1, "zero_count": 0, "positive": {"offset": 0, "counts": list(obs.counts)}}
    elif kind == "summary":
        distribution = {"quantiles": [[0.5, obs.low], [1.0, obs.high]]}
    return MetricPoint(
        name, {"exponential": MetricType.EXPONENTIAL_HISTOGRAM, "summary": MetricType.SUMMARY}.get(kind,
                                                                                           MetricType.HISTOGRAM),
        ns(at), {"host": host},
        temporality=Temporality.DELTA if start is None else Temporality.CUMULATIVE,
        start_time_ns=ns(at - timedelta(seconds=30)) if start is None else ns(start),
        count=obs.count, sum=obs.sum, min=obs.low if obs.count and kind != "summary" else None,
        max=obs.high if obs.count and kind != "summary" else None, distribution=distribution,
    )  # fmt: skip


def _running(total: Observations | None, obs: Observations) -> Observations:
    if total is None:
        return obs
    return Observations(
        tuple(a + b for a, b in zip(total.counts, obs.counts, strict=True)),
        total.sum + obs.sum,
        min(total.low, obs.low) if obs.count else total.low,
        max(total.high, obs.high) if obs.count else total.high,
    )


def store(project: IngestProject, names: dict[str, str], data: Dataset) -> None:
    """The dataset as points: cumulative series start 10 s before their first point and again 1 s before a reset."""
    points: list[MetricPoint] = []
    for host, series in data.gauge.items():
        for offset, value in series:
            at = FROM + timedelta(seconds=offset)
            points.append(MetricPoint(names["gauge"], MetricType.GAUGE, ns(at), {"host": host}, value=value))
    for host, histograms in data.delta.items():
        for offset, obs in histograms:
            points.append(_histogram(names["delta"], host, FROM + timedelta(seconds=offset), obs, start=None))
    for kind in ("cumulative", "exponential", "summary"):
        for host, cumulative in getattr(data, kind).items():
            total: Observations | None = None
            start = FROM + timedelta(seconds=cumulative[0][0] - 10)
            for offset, (obs, reset) in cumulative:
                at = FROM + timedelta(seconds=offset)
                if reset and total is not None:
                    total, start = None, at - timedelta(seconds=1)
                total = _running(total, obs)
                points.append(_histogram(names[kind], host, at, total, start=start, kind=kind))
    for host, counter in data.counter.items():
        value = 0.0
        start = FROM + timedelta(seconds=counter[0][0] - 10)
        for offset, (increment, reset) in counter:
            at = FROM + timedelta(seconds=offset)
            if reset:
                value, start = 0.0, at - timedelta(seconds=1)
            value += increment
            points.append(
                MetricPoint(
                    names["counter"], MetricType.SUM, ns(at), {"host": host}, value=value, monotonic=True,
                    temporality=Temporality.CUMULATIVE, start_time_ns=ns(start),
                )
            )  # fmt: skip
    store_points(project, points)


# --- the oracle: what the raw answer must be ---------------------------------------------------------------------


def gauge_oracle(data: Dataset, aggregation: str, step: int) -> dict[int, float]:
    """The whole gauge metric's value per slot, from the values themselves."""
    slots: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for series in data.gauge.values():
        for offset, value in series:
            slots[(int(FROM.timestamp()) + offset) // step * step].append((offset, value))
    out = {}
    for slot, items in slots.items():
        values = [v for _, v in items]
        if aggregation.startswith("p"):
            out[slot] = sorted(values)[nearest_rank(int(aggregation[1:]) / 100, len(values)) - 1]
        elif aggregation == "last":
            out[slot] = max(items)[1]  # the latest; simultaneous ones: the largest
        else:
            reduce = {"avg": lambda v: sum(v) / len(v), "sum": sum, "min": min, "max": max, "count": len}
            out[slot] = float(reduce[aggregation](values))
    return out


def histogram_counts(data: Dataset, kind: str, step: int) -> dict[int, tuple[float, float]]:
    """(count, sum) of the observations per slot: every delta counts once; a cumulative point after more than a day
    without one counts whole if its series started within the day, else nothing (the job's baseline rule)."""
    out: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    cumulative = getattr(data, kind)
    series = data.delta if kind == "delta" else {h: [(o, d) for o, (d, _) in p] for h, p in cumulative.items()}
    for host, points in series.items():
        previous: int | None = None
        started = points[0][0] - 10
        for i, (offset, obs) in enumerate(points):
            if kind != "delta" and cumulative[host][i][1][1] and previous is not None:
                started = offset - 1
            new = obs.count, obs.sum
            if kind != "delta" and previous is not None and previous < offset // 60 * 60 - 86400:
                if started < offset - 86400:
                    new = (0, 0.0)  # unknown baseline
                elif started < previous:
                    # counts whole: the running total since the start
                    since = [d for o, d in series[host][: i + 1] if o > started]
                    new = sum(d.count for d in since), sum(d.sum for d in since)
            slot = (int(FROM.timestamp()) + offset) // step * step
            out[slot][0] += new[0]
            out[slot][1] += new[1]
            previous = offset
    return {slot: (c, s) for slot, (c, s) in out.items()}


# --- every source -------------------------------------------------------------------------------------------------


def points_by_labels(result: Any) -> dict[str, list[tuple[int, float]]]:
    return {json.dumps(s.labels, sort_keys=True): [(int(t), v) for t, v in s.points] for s in result.series}


def assert_same(answer: Any, reference: Any, aggregation: str, what: str) -> None:
    got, want = points_by_labels(answer), points_by_labels(reference)
    assert got.keys() == want.keys(), what
    rel = SKETCH_REL if aggregation.startswith("p") else 1e-12
    for labels, points in want.items():
        assert [t for t, _ in got[labels]] == [t for t, _ in points], (what, labels)
        for (t, value), (_, expected) in zip(got[labels], points, strict=True):
            assert value == pytest.approx(expected, rel=rel, abs=1e-12), (what, labels, t)


def answers(
    project: IngestProject, name: str, aggregation: str, group_by: list[str], step: int, tail_now: datetime
) -> dict[str, Any]:
    """The query's answer per source: raw, each rollup dividing the step by the series and the group rows (the
    planner's choice now is the coarsest of them: the range is days old), and the planner's choice at ``tail_now``
    (the raw tail), by both paths."""
    from observai.db.connection import tenant_transaction
    from observai.metrics import query as engine
    from observai.metrics.query_models import MetricQuery

    common = {"id": "q", "name": name, "from": iso(FROM), "to": iso(TO), "step": step, "aggregation": aggregation}
    by_group = MetricQuery.model_validate({**common, "group_by": group_by})
    by_series = MetricQuery.model_validate({**common, "group_by": group_by, "filters": [EVERY_SERIES]})
    now = datetime.now(UTC)
    natural = engine.plan(by_group, now)
    plans: dict[str, tuple[MetricQuery, engine.Plan]] = {
        "raw": (by_group, dataclasses.replace(natural, resolution="raw", raw_from=natural.start,
                                              minute_from=natural.start)),
    }  # fmt: skip
    if step % 60 == 0:
        for resolution in (r for r in ROLLUPS if step % r == 0):
            rolled = dataclasses.replace(natural, resolution=resolution, raw_from=natural.end, minute_from=natural.end)
            plans[f"{resolution}/group"] = (by_group, rolled)
            plans[f"{resolution}/series"] = (by_series, rolled)
        plans["tail/group"] = (by_group, engine.plan(by_group, tail_now))
        plans["tail/series"] = (by_series, engine.plan(by_series, tail_now))
    out = {}
    with tenant_transaction(reader(project).rls_claims()) as cur:
        for source, (query, query_plan) in plans.items():
            out[source] = engine._run_one(cur, project.project_id, query, query_plan, ["body", "queries", 0])
    return out


AGGREGATIONS = {
    "gauge": ("avg", "sum", "min", "max", "count", "last", "p50", "p99"),
    "delta": ("avg", "sum", "min", "max", "count", "p50", "p90", "p99"),
    "cumulative": ("avg", "sum", "min", "max", "count", "p50", "p99"),
    "exponential": ("avg", "sum", "min", "max", "count", "p50", "p99"),
    "summary": ("avg", "sum", "count"),
    "counter": ("increase", "rate"),
}


def stored_and_rolled(project: IngestProject, data: Dataset, prefix: str) -> dict[str, str]:
    """The dataset stored under metric names of its own (one per kind) and rolled up by the job: the names."""
    tag = uuid.uuid4().hex[:10]
    names = {kind: f"{prefix}.{kind}.{tag}" for kind in AGGREGATIONS}
    store(project, names, data)
    drain()
    return names


@settings(
    max_examples=5,  # a few seconds each (about 200 queries); 80 random ones passed when this was written
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=datasets,
    picks=st.fixed_dictionaries({kind: st.sampled_from(aggs) for kind, aggs in AGGREGATIONS.items()}),
    group_by=st.sampled_from([[], ["host"]]),
    tail_offset=st.integers(0, SPAN_S + 600),
)
def test_every_step_and_source_gives_the_same_answer(
    project: IngestProject, data: Dataset, picks: dict[str, str], group_by: list[str], tail_offset: int
) -> None:
    # Given random gauges, delta and cumulative histograms (explicit and exponential buckets), summaries and a
    # cumulative counter (resets, gaps over a day), rolled up by the job
    names = stored_and_rolled(project, data, "every")
    tail_now = FROM + timedelta(seconds=tail_offset)
    for kind, aggregation in picks.items():
        for step in STEPS:
            # When the same query is read from every source at this step
            found = answers(project, names[kind], aggregation, group_by, step, tail_now)
            raw = found["raw"]
            # Then every source gives the raw points' answer, within the sketch's accuracy for percentiles
            for source, answer in found.items():
                assert_same(answer, raw, aggregation, f"{kind} {aggregation} step {step} {source}")
                if source.endswith("/group") and not source.startswith("tail"):
                    assert answer.source == "group", source
            # And the raw answer is the data's: gauges value by value, histograms' counts and sums of observations
            if group_by:
                continue
            got = {int(t): v for series in raw.series for t, v in series.points}  # one series at most
            if kind == "gauge":
                wanted = gauge_oracle(data, aggregation, step)
                assert got.keys() == wanted.keys()
                for slot, value in wanted.items():
                    assert got[slot] == pytest.approx(value, rel=1e-12 if aggregation[0] != "p" else 0, abs=1e-12)
            elif kind not in ("gauge", "counter") and aggregation in ("count", "sum"):
                counted = histogram_counts(data, kind, step)
                column = 0 if aggregation == "count" else 1
                assert sum(got.values()) == pytest.approx(sum(c[column] for c in counted.values()), abs=1e-9)
                for slot, value in got.items():
                    assert value == pytest.approx(counted[slot][column], abs=1e-9), (kind, aggregation, step, slot)


TAIL_STEPS = (120, 600, 3600)  # minutes then raw points; 5m buckets, minutes, raw points; the same at an hour


@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=datasets,
    picks=st.fixed_dictionaries({kind: st.sampled_from(aggs) for kind, aggs in AGGREGATIONS.items()}),
    group_by=st.sampled_from([[], ["host"]]),
    # "now" anywhere, or within the clusters of points (rolled minutes and raw points in the same slot)
    tail_offset=st.one_of(
        st.integers(600, SPAN_S + 600),
        st.integers(43_260, 43_560),
        st.integers(86_160, 86_760),
        st.integers(600, 3_700),
    ),
)
def test_reads_in_one_statement_give_the_rows_and_points_of_each_read_alone(
    project: IngestProject, data: Dataset, picks: dict[str, str], group_by: list[str], tail_offset: int
) -> None:
    from observai.db.connection import tenant_transaction
    from observai.metrics import query as engine
    from observai.metrics.query_models import MetricQuery

    # Given random gauges, histograms, summaries and a counter, rolled up by the job, and "now" somewhere in them
    names = stored_and_rolled(project, data, "tail")
    now = FROM + timedelta(seconds=tail_offset)
    with tenant_transaction(reader(project).rls_claims()) as cur:
        for kind, aggregation in picks.items():
            for step, (filters, whole) in (
                (step, source) for step in TAIL_STEPS for source in (([], False), ([], True), ([EVERY_SERIES], False))
            ):
                query = MetricQuery.model_validate(
                    {"id": "q", "name": names[kind], "from": iso(FROM), "to": iso(now), "step": step,
                     "aggregation": aggregation, "group_by": group_by, "filters": filters}
                )  # fmt: skip
                query_plan = engine.plan(query, now + timedelta(minutes=2))
                candidate = engine._group_candidate(query, query_plan)
                group = None if candidate is None else (candidate, query_plan)
                matches = engine._count_series(cur, project.project_id, query, group=group)
                key, _, _ = engine._group_key(matches, query, candidate, query_plan)
                if not matches.series or query_plan.raw_from >= query_plan.minute_from or (whole and key is None):
                    continue
                # (whole: the group rows of the slots' resolution, as if no rolled minute were in the raw tail)
                build = engine._rollup_sql if key is None else engine._group_rollup_sql
                params = engine._query_params(project.project_id, query, query_plan, ["q"], None, key)
                reads = engine._tail_reads(build, query_plan, whole=whole)
                # When the tail's reads (rollups of two resolutions, raw points) go in one statement, and each alone
                together = engine._read_partials_together(cur, query, reads, params)
                alone = [engine._read_partials(cur, query, b, params, start, end, r) for b, start, end, r in reads]
                # Then each read's rows are the very same (labels, slot, partial aggregate) rows
                what = f"{kind} {aggregation} step {step} {'group' if key is not None else 'series'} whole {whole}"
                assert [sorted(rows) for rows in together] == [sorted(rows) for rows in alone], what
                if query_plan.start >= query_plan.raw_from:
                    continue
                # And the slots before raw_from read with the tail in one statement give the points of both reads
                apart: dict[str, list[tuple[int, float]]] = {}
                engine._read_points(
                    cur, query, build, params, query_plan.start, query_plan.raw_from, query_plan.resolution, apart
                )
                kinds = {"distributions": matches.distributions > 0, "whole": whole}
                engine._read_tail(cur, query, build, params, query_plan, apart, **kinds)
                at_once: dict[str, list[tuple[int, float]]] = {}
                engine._read_points_and_tail(cur, query, build, params, query_plan, at_once, **kinds)
                shaped = [[(s.labels, s.points) for s in engine._shape(p)] for p in (at_once, apart)]
                assert shaped[0] == shaped[1], what


# --- regressions, over the API ------------------------------------------------------------------------------------


def api_query(project: IngestProject, *queries: dict[str, Any]) -> list[dict[str, Any]]:
    path = f"/v1/projects/{project.project_id}/metrics/query"
    result = invoke("metrics", "POST", path, headers=project.headers, json_body={"queries": list(queries)})
    assert result.status == 200, result.text
    return list(result.data["results"])


def total(answer: dict[str, Any]) -> float:
    return sum(v for _, v in (answer["series"][0]["points"] if answer["series"] else []))


def sdk_histogram(name: str, at: datetime, start: datetime, value: float) -> MetricPoint:
    """What the OpenTelemetry Python SDK exports every interval (cumulative temporality, its default) after one
    value was recorded: the same count, sum and buckets each time."""
    counts = [0] * (len(BOUNDS) + 1)
    counts[next(i for i, bound in enumerate(BOUNDS) if value <= bound)] = 1
    return MetricPoint(
        name, MetricType.HISTOGRAM, ns(at), {"service.name": "checkout"}, temporality=Temporality.CUMULATIVE,
        start_time_ns=ns(start), count=1, sum=value, min=value, max=value,
        distribution={"bounds": BOUNDS, "counts": counts},
    )  # fmt: skip


@pytest.mark.parametrize("recent", [False, True], ids=["days-ago", "last-minutes"])
def test_a_cumulative_histogram_with_one_value_reads_count_1_sum_42_at_every_step(
    project: IngestProject, recent: bool
) -> None:
    # Given the SDK's cumulative histogram after one recorded value 42, exported four times, 30 s apart (two days
    # ago, or in the last two minutes: the raw tail)
    name = f"sdk.duration.{uuid.uuid4().hex[:10]}"
    first = datetime.now(UTC) - (timedelta(seconds=150) if recent else timedelta(days=2))
    first = first.replace(microsecond=0)
    store_points(project, [sdk_histogram(name, first + timedelta(seconds=30 * i), first, 42.0) for i in range(4)])
    span = {"from": iso(first - timedelta(minutes=5)), "to": iso(first + timedelta(minutes=3))}
    for rolled in (False, True):
        if rolled:
            drain()  # And then rolled up
        # (days ago and not rolled up yet, only the raw steps have the points)
        for step in (30, 60, 300, 450, 3600, 86400) if rolled or recent else (30, 450):
            # When count, sum and p50 are queried at this step
            count, total_sum, p50 = api_query(
                project,
                *({"id": a, "name": name, "step": step, "aggregation": a, **span} for a in ("count", "sum", "p50")),
            )
            # Then one observation of 42, at raw resolution as after the rollup
            assert total(count) == 1 and total(total_sum) == 42, (step, rolled, count["resolution"])
            assert [v for _, v in p50["series"][0]["points"]] == [pytest.approx(42.0, rel=0.01)], (step, rolled)


def test_histogram_percentiles_read_from_raw_points_and_a_slot_mixing_rollups_and_raw_points(
    project: IngestProject,
) -> None:
    from observai.metrics import query as engine
    from observai.metrics.query_models import QueryRequest

    # Given a delta histogram, a point every 30 s from T (2 days ago, on a 5-minute boundary) to T + 10 min: one
    # observation in (0, 5] a point until T + 7 min, then three in (50, 100]; all rolled up
    name = f"mixed.duration.{uuid.uuid4().hex[:10]}"
    t = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    points = []
    for i in range(20):
        small = i < 14
        counts = [0] * (len(BOUNDS) + 1)
        counts[1 if small else 5] = 1 if small else 3
        points.append(
            MetricPoint(
                name, MetricType.HISTOGRAM, ns(t + timedelta(seconds=30 * i)), {}, temporality=Temporality.DELTA,
                start_time_ns=ns(t + timedelta(seconds=30 * i - 30)), count=sum(counts),
                sum=2.5 if small else 225.0, min=2.5 if small else 75.0, max=2.5 if small else 75.0,
                distribution={"bounds": BOUNDS, "counts": counts},
            )
        )  # fmt: skip
    store_points(project, points)
    drain()
    # When "now" is T + 10 min: the slot [T + 5 min, T + 10 min) reads its minutes up to T + 7 min from the 1m
    # rollups and the rest from raw points
    now = t + timedelta(minutes=10)
    span = {"from": iso(t), "to": iso(now)}

    def run(step: int, aggregation: str) -> dict[str, Any]:
        request = QueryRequest.model_validate(
            {"queries": [{"id": "q", "name": name, "step": step, "aggregation": aggregation, **span}]}
        )
        return engine.run_queries(reader(project), project.project_id, request, now=now).results[0].model_dump()

    mixed = run(300, "p50")
    assert mixed["resolution"] == 300 and mixed["raw_from"] == int((t + timedelta(minutes=5)).timestamp())
    # Then the mixed slot's p50 is its observations' (4 small, 18 large: the 11th is large), not the rolled part's
    (first_slot, second_slot) = mixed["series"][0]["points"]
    assert first_slot[1] == pytest.approx(2.5, rel=0.01)
    assert second_slot[1] == pytest.approx(75.0, rel=0.01)
    assert [v for _, v in run(300, "count")["series"][0]["points"]] == [10, 22]
    # And at 30 s steps (raw points) and at a step holding the whole range (the raw tail), the percentiles are there
    raw = run(30, "p99")
    assert raw["resolution"] == "raw" and len(raw["series"][0]["points"]) == 20
    assert sorted({v for _, v in raw["series"][0]["points"]}) == [_rep(2.5), _rep(75.0)]
    whole = run(86400, "p50")
    assert whole["resolution"] == 86400 and whole["raw_from"] == whole["start"]
    assert [v for _, v in whole["series"][0]["points"]] == [pytest.approx(75.0, rel=0.01)]


def _rep(value: float) -> float:
    sketch = Sketch()
    sketch.add(value)
    result = sketch.quantile(0.5)
    assert result is not None
    return result


def test_a_step_whose_slot_holds_the_whole_recent_range_reads_the_coarsest_dividing_rollup(
    project: IngestProject,
) -> None:
    from observai.metrics import query as engine
    from observai.metrics.query_models import QueryRequest

    # Given a gauge with a point every 20 s over the 20 minutes before "now" (12:30, two days ago), rolled up
    name = f"whole.slot.{uuid.uuid4().hex[:10]}"
    now = (datetime.now(UTC) - timedelta(days=2)).replace(hour=12, minute=30, second=0, microsecond=0)
    times = [now - timedelta(seconds=20 * i) for i in range(1, 61)]
    store_points(
        project, [MetricPoint(name, MetricType.GAUGE, ns(at), {}, value=float(i)) for i, at in enumerate(times)]
    )
    drain()
    # When those 20 minutes are queried at a 1-day step (one slot)
    request = QueryRequest.model_validate(
        {
            "queries": [
                {"id": a, "name": name, "step": 86400, "aggregation": a, "from": iso(now - timedelta(minutes=20)),
                 "to": iso(now)}
                for a in ("count", "p50")
            ]
        }
    )  # fmt: skip
    count, p50 = (
        r.model_dump() for r in engine.run_queries(reader(project), project.project_id, request, now=now).results
    )
    # Then the 1d resolution answers, its one slot read as the raw tail (rolled-up minutes, then raw points)
    assert count["resolution"] == 86400 and count["raw_from"] == count["start"]
    assert count["series"][0]["points"] == [(count["start"], 60.0)]
    assert p50["series"][0]["points"][0][1] == pytest.approx(29.0, rel=0.01)


def test_too_many_raw_histogram_points_to_merge_is_a_422_asking_for_a_rollup_step(
    project: IngestProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    from observai.metrics import query as engine

    # Given a delta histogram of 12 points, and a bound of 10 raw histogram points a query may merge (the real one,
    # 50,000, is lowered so that a few points reach it)
    name = f"bounded.duration.{uuid.uuid4().hex[:10]}"
    t = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    obs = Observations((0, 1, 0, 0, 0, 0, 0, 0), 2.5, 2.5, 2.5)
    store_points(project, [_histogram(name, "a", t + timedelta(seconds=10 * i), obs, start=None) for i in range(12)])
    monkeypatch.setattr(engine, "MAX_RAW_DISTRIBUTION_POINTS", 10)
    span = {"name": name, "from": iso(t), "to": iso(t + timedelta(minutes=5)), "aggregation": "p99"}
    # When it is queried at a raw step
    path = f"/v1/projects/{project.project_id}/metrics/query"
    result = invoke("metrics", "POST", path, headers=project.headers, json_body={"queries": [{**span, "step": 30}]})
    # Then a 422 says which limit, and where
    assert result.status == 422, result.text
    assert result.error["code"] == "too_many_points"
    assert result.error["details"]["loc"] == ["body", "queries", 0, "step"]
    # And the same query at a rollup step reads the rollups (and a raw tail of no point): answered
    drain()
    (answer,) = api_query(project, {**span, "step": 60})
    assert answer["resolution"] == 60 and len(answer["series"][0]["points"]) == 2


def test_a_counter_silent_for_over_a_day_restarts_from_an_unknown_baseline_at_every_step(
    project: IngestProject,
) -> None:
    # Given a cumulative counter: 5 then 7 (started 10 s before), silent for 31 hours, then 20 and 26 (same start)
    name = f"gap.requests.{uuid.uuid4().hex[:10]}"
    first = FROM + timedelta(hours=1)
    values = [(first, 5.0), (first + timedelta(minutes=1), 7.0)]
    values += [(first + timedelta(hours=31), 20.0), (first + timedelta(hours=31, minutes=1), 26.0)]
    store_points(
        project,
        [
            MetricPoint(
                name, MetricType.SUM, ns(at), {}, value=value, monotonic=True, temporality=Temporality.CUMULATIVE,
                start_time_ns=ns(first - timedelta(seconds=10)),
            )
            for at, value in values
        ],
    )  # fmt: skip
    drain()
    # When its increase over the two days is read from raw points and from each rollup
    span = {"name": name, "from": iso(FROM), "to": iso(TO), "aggregation": "increase"}
    answers = api_query(
        project, *({**span, "id": f"s{step}", "step": step} for step in (30, 450, 60, 300, 3600, 86400))
    )
    # Then every step counts 5 + 2, then nothing for 20 (its baseline is over a day old, as the job rules), then 6
    for answer in answers:
        assert total(answer) == 13, (answer["step"], answer["resolution"], answer["series"])
