"""The metrics function over its Lambda handler: catalogue and definitions, series and cardinality, queries on
raw points (every aggregation against values computed here), on rollups, bad queries and limits, and tenant
isolation on every route."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from observai.telemetry import usage
from observai.telemetry.model import MetricPoint, MetricType, Temporality
from observai.telemetry.writer import clear_caches

from tests.helpers.ingest import IngestProject, add_key, iso, make_project, store_points
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration

LATENCY = "http.latency"
REQUESTS = "http.requests"
RAW_STEP = 450  # not a multiple of 60: no rollup divides it, so the raw points are read
NOW = datetime.now(UTC)
# Two hours of points, one a minute, two days ago (inside the partitions a fresh database has).
BASE = (NOW - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
END = BASE + timedelta(hours=2)
SERIES = [
    {"service": service, "region": region, "code": code}
    for service in ("api", "web")
    for region in ("eu", "us")
    for code in (200, 500)
]


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000


store = store_points


@dataclass
class Tenant:
    project: IngestProject  # its key has the read scope
    owner: User
    member: User
    viewer: User
    values: dict[int, list[tuple[datetime, float]]]  # latency: series index → (time, value)
    counter: list[tuple[datetime, float]]  # requests (cumulative, with a reset)

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project.project_id}/metrics"


def _gauge_points() -> tuple[list[MetricPoint], dict[int, list[tuple[datetime, float]]]]:
    rng = random.Random(7)
    points: list[MetricPoint] = []
    values: dict[int, list[tuple[datetime, float]]] = {}
    for index, attributes in enumerate(SERIES):
        scale = 50.0 if attributes["code"] == 200 else 400.0
        series = []
        for minute in range(120):
            at = BASE + timedelta(minutes=minute, seconds=5)
            value = round(rng.lognormvariate(0, 0.6) * scale, 3)
            series.append((at, value))
            points.append(MetricPoint(LATENCY, MetricType.GAUGE, _ns(at), dict(attributes), unit="ms", value=value))
        values[index] = series
    return points, values


def _counter_points() -> tuple[list[MetricPoint], list[tuple[datetime, float]]]:
    """A cumulative counter: +10 a minute, reset to 3 at minute 50; its first point is 5 min before BASE."""
    series: list[tuple[datetime, float]] = []
    value = 100.0
    for minute in range(-5, 120):
        value = 3.0 if minute == 50 else value + 10.0
        series.append((BASE + timedelta(minutes=minute, seconds=30), value))
    points = [
        MetricPoint(
            REQUESTS,
            MetricType.SUM,
            _ns(at),
            {"service": "api"},
            value=v,
            monotonic=True,
            temporality=Temporality.CUMULATIVE,
        )
        for at, v in series
    ]
    return points, series


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    import psycopg

    usage.reset_caches()
    clear_caches()
    project = make_project(scopes=("read",), label="Metrics")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        users = {}
        for role in ("owner", "member", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
    gauges, values = _gauge_points()
    counters, counter = _counter_points()
    store(project, gauges + counters)
    return Tenant(project, users["owner"], users["member"], users["viewer"], values, counter)


@pytest.fixture(scope="module")
def stranger(database_url: str) -> tuple[User, IngestProject]:
    """Another organization: its owner, and its project's read key."""
    import psycopg

    other = make_project(scopes=("read",), label="Stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
    store(other, [MetricPoint(LATENCY, MetricType.GAUGE, _ns(BASE), {"service": "secret"}, value=1.0)])
    return owner, other


def get(headers: dict[str, str], path: str, query: str = "") -> Result:
    return invoke("metrics", "GET", path, headers=headers, query=query)


def patch(user: User, path: str, body: dict[str, Any]) -> Result:
    return invoke("metrics", "PATCH", path, headers=user.headers, json_body=body)


def query(headers: dict[str, str], path: str, *queries: dict[str, Any]) -> Result:
    return invoke("metrics", "POST", f"{path}/query", headers=headers, json_body={"queries": list(queries)})


def q(**fields: Any) -> dict[str, Any]:
    body = {"name": LATENCY, "from": iso(BASE), "to": iso(END), "step": RAW_STEP, "aggregation": "avg"}
    body.update(fields)
    return body


# --- expected values, computed here ------------------------------------------------------------------------


def nearest_rank(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(quantile * len(ordered) - 1e-9)) - 1]


AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "avg": lambda v: sum(v) / len(v),
    "sum": sum,
    "min": min,
    "max": max,
    "count": lambda v: float(len(v)),
    "p50": lambda v: nearest_rank(v, 0.5),
    "p90": lambda v: nearest_rank(v, 0.9),
    "p95": lambda v: nearest_rank(v, 0.95),
    "p99": lambda v: nearest_rank(v, 0.99),
}


def expected(
    tenant: Tenant,
    aggregation: str,
    step: int,
    *,
    keep: Callable[[dict[str, Any]], bool] = lambda a: True,
    group: Iterable[str] = (),
) -> dict[tuple[Any, ...], list[tuple[int, float]]]:
    """group label values → [[slot, value]] for the latency gauge."""
    slots: dict[tuple[Any, ...], dict[int, list[tuple[datetime, float]]]] = defaultdict(lambda: defaultdict(list))
    for index, attributes in enumerate(SERIES):
        if not keep(attributes):
            continue
        key = tuple(attributes[g] for g in group)
        for at, value in tenant.values[index]:
            slots[key][int(at.timestamp()) // step * step].append((at, value))
    result = {}
    for key, by_slot in slots.items():
        points = []
        for slot, items in sorted(by_slot.items()):
            # last: the latest point; simultaneous ones: the largest value
            value = max(items)[1] if aggregation == "last" else AGGREGATES[aggregation]([v for _, v in items])
            points.append((slot, value))
        result[key] = points
    return result


def assert_points(actual: list[list[float]], wanted: list[tuple[int, float]], rel: float = 1e-9) -> None:
    assert [int(t) for t, _ in actual] == [t for t, _ in wanted]
    for (_, got), (_, want) in zip(actual, wanted, strict=True):
        assert got == pytest.approx(want, rel=rel), (got, want)


# --- catalogue and definitions -------------------------------------------------------------------------------


def test_the_catalogue_lists_metrics_with_series_counts_and_definitions_win(tenant: Tenant) -> None:
    # When the viewer reads the catalogue
    listed = get(tenant.viewer.headers, tenant.path)
    # Then both metrics are there, by name, with what ingestion saw
    assert listed.status == 200, listed.text
    by_name = {m["name"]: m for m in listed.data}
    assert [m["name"] for m in listed.data] == sorted(by_name)
    assert by_name[LATENCY] | {"last_seen_at": None} == {
        "name": LATENCY,
        "type": "gauge",
        "unit": "ms",
        "description": None,
        "series_count": len(SERIES),
        "defined": False,
        "last_seen_at": None,
    }
    assert by_name[REQUESTS]["type"] == "sum" and by_name[REQUESTS]["series_count"] == 1

    # When a member defines the latency metric (and a metric with no data yet)
    body = {"unit": "s", "description": "Server-side latency"}
    defined = patch(tenant.member, f"{tenant.path}/{LATENCY}/definition", body)
    assert defined.status == 200, defined.text
    assert defined.data["unit"] == "s" and defined.data["type"] is None
    assert defined.data["created_by"] == str(tenant.member.id)
    future = patch(tenant.owner, f"{tenant.path}/queue.depth/definition", {"type": "gauge", "unit": "1"})
    assert future.status == 200, future.text

    # Then the catalogue shows the definition's fields over the ingested ones, and the defined-only metric
    by_name = {m["name"]: m for m in get(tenant.project.headers, tenant.path).data}
    assert by_name[LATENCY]["unit"] == "s" and by_name[LATENCY]["type"] == "gauge"
    assert by_name[LATENCY]["description"] == "Server-side latency" and by_name[LATENCY]["defined"] is True
    assert by_name["queue.depth"] == {
        "name": "queue.depth",
        "type": "gauge",
        "unit": "1",
        "description": None,
        "series_count": 0,
        "defined": True,
        "last_seen_at": None,
    }

    # When paging one at a time
    names, cursor = [], None
    for _ in range(5):
        page = get(tenant.viewer.headers, tenant.path, "limit=1" + (f"&cursor={cursor}" if cursor else ""))
        names += [m["name"] for m in page.data]
        cursor = page.json()["meta"]["next_cursor"]
        if cursor is None:
            break
    # Then every name comes once, in order
    assert names == sorted(by_name)


def test_definitions_patch_keeps_unset_fields_clears_nulls_and_is_audited(tenant: Tenant, database_url: str) -> None:
    path = f"{tenant.path}/cpu.usage/definition"
    # Given a member defined a metric
    first = patch(tenant.member, path, {"type": "gauge", "unit": "%", "description": "CPU"})
    assert first.status == 200
    # When only the description is cleared
    second = patch(tenant.member, path, {"description": None})
    # Then type and unit stay
    assert (second.data["type"], second.data["unit"], second.data["description"]) == ("gauge", "%", None)

    # And a viewer, or an API key, cannot write
    viewer = invoke("metrics", "PATCH", path, headers=tenant.viewer.headers, json_body={"unit": "x"})
    assert viewer.status == 403 and viewer.error["code"] == "forbidden"
    key = invoke("metrics", "PATCH", path, headers=tenant.project.headers, json_body={"unit": "x"})
    assert key.status == 403 and key.error["code"] == "user_token_required"
    assert invoke("metrics", "DELETE", path, headers=tenant.viewer.headers).status == 403
    # And a bad type is a 422 at the field
    bad = invoke("metrics", "PATCH", path, headers=tenant.member.headers, json_body={"type": "counter"})
    assert bad.status == 422 and bad.error["details"][0]["loc"] == ["body", "type"]

    # When the member deletes it; and again
    deleted = invoke("metrics", "DELETE", path, headers=tenant.member.headers)
    again = invoke("metrics", "DELETE", path, headers=tenant.member.headers)
    assert deleted.status == 200 and deleted.data == {"name": "cpu.usage", "deleted": True}
    assert again.status == 404

    # Then each change left an audit row naming the actor
    import psycopg

    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as db:
        rows = db.execute(
            "select action, actor_id, details from public.audit_log where org_id = %s and target_id = %s order by id",
            (tenant.project.org_id, "cpu.usage"),
        ).fetchall()
    assert [r["action"] for r in rows] == [
        "metric_definition.create",
        "metric_definition.update",
        "metric_definition.delete",
    ]
    assert {r["actor_id"] for r in rows} == {str(tenant.member.id)}
    assert rows[1]["details"] == {"project_id": str(tenant.project.project_id), "fields": ["description"]}


# --- series and cardinality ----------------------------------------------------------------------------------


def test_series_are_listed_with_attributes_filtered_by_match_and_paged(tenant: Tenant) -> None:
    path = f"{tenant.path}/{LATENCY}/series"
    # When filtering by service (text) and code (a number in the attributes)
    found = get(tenant.project.headers, path, "match[service]=api&match[code]=200")
    # Then the two matching series come with their attributes; ids are strings
    assert found.status == 200, found.text
    assert sorted(s["attributes"]["region"] for s in found.data) == ["eu", "us"]
    assert all(s["attributes"]["service"] == "api" and s["attributes"]["code"] == 200 for s in found.data)
    assert all(isinstance(s["series_id"], str) and s["type"] == "gauge" for s in found.data)

    # When paging three at a time without filter
    seen, cursor = [], None
    while True:
        page = get(tenant.viewer.headers, path, "limit=3" + (f"&cursor={cursor}" if cursor else ""))
        seen += [s["series_id"] for s in page.data]
        cursor = page.json()["meta"]["next_cursor"]
        if cursor is None:
            break
    # Then all eight come, once each
    assert len(seen) == len(set(seen)) == len(SERIES)
    # And a forged cursor is a 400
    assert get(tenant.viewer.headers, path, "cursor=bm9wZQ").status == 400


def test_cardinality_counts_distinct_values_per_attribute(tenant: Tenant) -> None:
    result = get(tenant.viewer.headers, f"{tenant.path}/{LATENCY}/cardinality")
    assert result.status == 200, result.text
    assert result.data["series_count"] == len(SERIES) and result.data["sampled"] is False
    assert result.data["attributes"] == [
        {"key": "code", "distinct_values": 2, "series": 8},
        {"key": "region", "distinct_values": 2, "series": 8},
        {"key": "service", "distinct_values": 2, "series": 8},
    ]
    filtered = get(tenant.viewer.headers, f"{tenant.path}/{LATENCY}/cardinality", "match[service]=web&top=1")
    assert filtered.data["series_count"] == 4 and len(filtered.data["attributes"]) == 1


# --- queries on raw points -----------------------------------------------------------------------------------


@pytest.mark.parametrize("aggregation", ["avg", "sum", "min", "max", "count", "last", "p50", "p90", "p95", "p99"])
def test_each_aggregation_on_raw_points_matches_the_values(tenant: Tenant, aggregation: str) -> None:
    # When querying all series together
    result = query(tenant.viewer.headers, tenant.path, q(aggregation=aggregation))
    # Then one series, its slots and values as computed from the stored values
    assert result.status == 200, result.text
    (answer,) = result.data["results"]
    assert answer["resolution"] == "raw" and answer["step"] == RAW_STEP and answer["series_matched"] == 8
    assert answer["start"] == int(BASE.timestamp()) // RAW_STEP * RAW_STEP
    (series,) = answer["series"]
    assert series["labels"] == {}
    assert_points(series["points"], expected(tenant, aggregation, RAW_STEP)[()])


def test_group_by_splits_series_by_attribute_values(tenant: Tenant) -> None:
    result = query(tenant.project.headers, tenant.path, q(aggregation="p95", group_by=["service", "code"]))
    (answer,) = result.data["results"]
    wanted = expected(tenant, "p95", RAW_STEP, group=("service", "code"))
    # Then one series per (service, code), labels keeping the attribute's JSON type
    assert [s["labels"] for s in answer["series"]] == [
        {"code": 200, "service": "api"},
        {"code": 200, "service": "web"},
        {"code": 500, "service": "api"},
        {"code": 500, "service": "web"},
    ]
    for series in answer["series"]:
        assert_points(series["points"], wanted[(series["labels"]["service"], series["labels"]["code"])])
    # And a group_by key no series has gives a null label
    missing = query(tenant.project.headers, tenant.path, q(group_by=["host"])).data["results"][0]
    assert [s["labels"] for s in missing["series"]] == [{"host": None}]


@pytest.mark.parametrize(
    ("flt", "keep"),
    [
        ({"attribute": "service", "op": "=", "value": "api"}, lambda a: a["service"] == "api"),
        ({"attribute": "service", "op": "!=", "value": "api"}, lambda a: a["service"] != "api"),
        ({"attribute": "code", "op": "=", "value": 500}, lambda a: a["code"] == 500),
        ({"attribute": "code", "op": "=", "value": "500"}, lambda a: False),  # JSON types differ
        ({"attribute": "region", "op": "in", "value": ["eu", "nowhere"]}, lambda a: a["region"] == "eu"),
        ({"attribute": "code", "op": "not_in", "value": [500]}, lambda a: a["code"] != 500),
        ({"attribute": "service", "op": "=~", "value": "a.*"}, lambda a: a["service"] == "api"),  # anchored
        ({"attribute": "region", "op": "!~", "value": "e."}, lambda a: a["region"] != "eu"),
        ({"attribute": "code", "op": "=~", "value": "5\\d\\d"}, lambda a: a["code"] == 500),  # numbers as text
        ({"attribute": "host", "op": "!=", "value": "h1"}, lambda a: True),  # absent attribute: != matches
        ({"attribute": "host", "op": "=~", "value": "h.*"}, lambda a: False),
    ],
)
def test_filters_with_each_op(tenant: Tenant, flt: dict[str, Any], keep: Callable[[dict[str, Any]], bool]) -> None:
    result = query(tenant.viewer.headers, tenant.path, q(aggregation="sum", filters=[flt]))
    assert result.status == 200, result.text
    (answer,) = result.data["results"]
    assert answer["series_matched"] == sum(1 for a in SERIES if keep(a))
    wanted = expected(tenant, "sum", RAW_STEP, keep=keep)
    if not wanted:
        assert answer["series"] == []
    else:
        assert_points(answer["series"][0]["points"], wanted[()])


def test_rate_and_increase_of_a_counter_across_a_reset(tenant: Tenant) -> None:
    step = 600 + 30  # raw (not a multiple of 60)
    start = int(BASE.timestamp()) // step * step
    # Expected: each point's increase over the previous point (the one before the range included), a drop
    # counting as a reset (the new value is the increase), summed per slot.
    increments: dict[int, float] = defaultdict(float)
    previous = None
    for at, value in tenant.counter:
        t = int(at.timestamp())
        if previous is not None and t >= start and at < END:
            increments[t // step * step] += value if value < previous else value - previous
        previous = value
    result = query(
        tenant.viewer.headers,
        tenant.path,
        q(id="inc", name=REQUESTS, aggregation="increase", step=step),
        q(id="rate", name=REQUESTS, aggregation="rate", step=step),
    )
    assert result.status == 200, result.text
    inc, rate = result.data["results"]
    wanted = sorted(increments.items())
    assert_points(inc["series"][0]["points"], wanted)
    assert_points(rate["series"][0]["points"], [(t, v / step) for t, v in wanted])
    # A reset never shows as a negative increase
    assert min(v for _, v in inc["series"][0]["points"]) > 0

    # And rate on a gauge is refused with the reason
    gauge = query(tenant.viewer.headers, tenant.path, q(aggregation="rate"))
    assert gauge.status == 422 and gauge.error["code"] == "not_a_counter"
    assert gauge.error["details"]["loc"] == ["body", "queries", 0, "aggregation"]


def test_empty_ranges_and_unknown_metrics_give_empty_series(tenant: Tenant) -> None:
    before = BASE - timedelta(hours=5)
    result = query(
        tenant.viewer.headers,
        tenant.path,
        q(id="empty", **{"from": iso(before), "to": iso(before + timedelta(hours=1))}),
        q(id="unknown", name="no.such.metric"),
        # The clock now, not at import: "recent" means the last RECENT (3 min) when the query runs.
        q(
            id="recent",
            **{"from": iso(datetime.now(UTC) - timedelta(minutes=1)), "to": iso(datetime.now(UTC))},
            step=60,
        ),
    )
    assert result.status == 200, result.text
    empty, unknown, recent = result.data["results"]
    assert empty["series"] == [] and empty["series_matched"] == 8
    assert unknown["series"] == [] and unknown["series_matched"] == 0
    # A range within the raw tail keeps the rule's resolution (1m divides the step) and reads raw points from start
    assert recent["resolution"] == 60 and recent["raw_from"] == recent["start"] and recent["series"] == []


# --- bad queries and limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"queries": [q(aggregation="median")]}, ["body", "queries", "0", "aggregation"]),
        ({"queries": [q(**{"from": iso(END), "to": iso(BASE)})]}, ["body", "queries", "0", "to"]),
        (
            {"queries": [q(filters=[{"attribute": "a", "op": "=~", "value": "a("}])]},
            ["body", "queries", "0", "filters", "0", "value"],
        ),
        ({"queries": [q(id=f"q{i}") for i in range(11)]}, ["body", "queries"]),
        ({"queries": [{k: v for k, v in q().items() if k != "name"}]}, ["body", "queries", "0", "name"]),
        ({"query": [q()]}, ["body", "queries"]),
    ],
)
def test_bad_queries_are_422_with_the_location(tenant: Tenant, body: dict[str, Any], loc: list[Any]) -> None:
    result = invoke("metrics", "POST", f"{tenant.path}/query", headers=tenant.viewer.headers, json_body=body)
    assert result.status == 422, result.text
    assert result.error["code"] == "validation_error"
    assert loc in [d["loc"] for d in result.error["details"]]


def test_a_regex_postgres_refuses_is_a_400(tenant: Tenant) -> None:
    # Python accepts named groups; Postgres' regex dialect does not
    flt = {"attribute": "a", "op": "=~", "value": "(?P<name>a)"}
    result = query(tenant.viewer.headers, tenant.path, q(filters=[flt]))
    assert result.status == 400 and result.error["code"] == "invalid_regex"
    assert result.error["details"]["loc"] == ["body", "queries", 0, "filters"]


def test_limits_on_points_and_series(tenant: Tenant, database_url: str) -> None:
    # Too many points per series: a one-day range at a 1 s step
    points = query(tenant.viewer.headers, tenant.path, q(step=1, **{"to": iso(BASE + timedelta(days=1))}))
    assert points.status == 422 and points.error["code"] == "too_many_points"
    assert points.error["details"]["limit"] == 11_000

    # Too many series: 1,001 series of one metric (a pro plan allows that many)
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute("update public.organizations set plan = 'pro' where id = %s", (tenant.project.org_id,))
    usage.reset_caches()
    store(
        tenant.project,
        [MetricPoint("wide.metric", MetricType.GAUGE, _ns(BASE), {"i": i}, value=1.0) for i in range(1001)],
    )
    wide = query(tenant.viewer.headers, tenant.path, q(name="wide.metric"))
    assert wide.status == 422 and wide.error["code"] == "too_many_series"
    assert "filters" in wide.error["message"] and wide.error["details"]["limit"] == 1000
    # And a filter brings it under the limit
    narrowed = query(
        tenant.viewer.headers,
        tenant.path,
        q(name="wide.metric", filters=[{"attribute": "i", "op": "in", "value": [1, 2]}]),
    )
    assert narrowed.status == 200 and narrowed.data["results"][0]["series_matched"] == 2


# --- rollups -------------------------------------------------------------------------------------------------


def test_a_one_hour_step_reads_the_1h_rollups_and_agrees_with_the_raw_points(tenant: Tenant) -> None:
    from observai.metrics.rollup import run_aggregation

    # Given the aggregation job has rolled everything up
    for _ in range(20):
        if not run_aggregation(lag_s=0).more_pending:
            break
    queries = [q(id=a, aggregation=a, step=3600, group_by=["service"]) for a in ("sum", "count", "min", "max")]
    queries += [q(id=a, aggregation=a, step=3600) for a in ("avg", "p50", "p95", "p99")]
    result = query(tenant.viewer.headers, tenant.path, *queries)
    assert result.status == 200, result.text
    for answer in result.data["results"]:
        # Then the 1h rollups were read
        assert answer["resolution"] == 3600 and answer["raw_from"] is None
        aggregation = answer["aggregation"]
        group = ("service",) if aggregation in ("sum", "count", "min", "max") else ()
        wanted = expected(tenant, aggregation, 3600, group=group)
        assert len(answer["series"]) == len(wanted)
        for series in answer["series"]:
            key = tuple(series["labels"][g] for g in group)
            # sum, count, min, max, avg exactly; percentiles within the sketch's 1%
            assert_points(series["points"], wanted[key], rel=0.01 if aggregation.startswith("p") else 1e-9)

    # And the counter's increase from the rollups equals the raw one over the same slots
    rolled = query(tenant.viewer.headers, tenant.path, q(name=REQUESTS, aggregation="increase", step=3600))
    first_in_range = next(i for i, (at, _) in enumerate(tenant.counter) if at >= BASE)
    raw_total = sum(
        (b if b < a else b - a)
        for (_, a), (_, b) in zip(tenant.counter[first_in_range - 1 :], tenant.counter[first_in_range:], strict=False)
    )
    assert rolled.data["results"][0]["resolution"] == 3600
    assert sum(v for _, v in rolled.data["results"][0]["series"][0]["points"]) == pytest.approx(raw_total)


@pytest.mark.parametrize("step", [60, 120])
def test_percentiles_at_minute_steps_read_the_one_value_minutes_the_job_stores_no_sketch_for(
    tenant: Tenant, database_url: str, step: int
) -> None:
    import psycopg
    from observai.metrics.rollup import run_aggregation

    # Given the job has rolled the latency gauges up: a point a minute per series, so a 1m row of one value each,
    # which stores no sketch
    for _ in range(20):
        if not run_aggregation(lag_s=0).more_pending:
            break
    with psycopg.connect(database_url) as conn:
        bare = conn.execute(
            "select count(*) filter (where r.sketch is null), count(*) from public.metric_rollups r"
            " join public.metric_series s using (project_id, series_id) where s.name = %s and r.project_id = %s"
            " and r.resolution = 60 and r.bucket_start >= %s and r.bucket_start < %s",
            (LATENCY, tenant.project.project_id, BASE, END),
        ).fetchone()
    assert bare is not None and bare[0] == bare[1] == len(SERIES) * 120

    # When percentiles are asked per series at a 1 or 2 minute step
    group = ("service", "region", "code")
    queries = [q(id=a, aggregation=a, step=step, group_by=list(group)) for a in ("p50", "p99")]
    result = query(tenant.viewer.headers, tenant.path, *queries)

    # Then the 1m rollups answer, each within the sketch's 1% of the exact nearest-rank value
    assert result.status == 200, result.text
    for answer in result.data["results"]:
        assert answer["resolution"] == 60 and answer["raw_from"] is None
        wanted = expected(tenant, answer["aggregation"], step, group=group)
        assert len(answer["series"]) == len(wanted) == len(SERIES)
        for series in answer["series"]:
            assert_points(series["points"], wanted[tuple(series["labels"][g] for g in group)], rel=0.01)


def test_recent_slots_come_from_raw_points_after_the_rollups(tenant: Tenant) -> None:
    from observai.metrics.rollup import run_aggregation

    # Given a gauge with a point every 10 s over the last 10 minutes, rolled up as far as the job goes
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(seconds=10 * i) for i in range(1, 61)]
    store(
        tenant.project,
        [MetricPoint("recent.metric", MetricType.GAUGE, _ns(t), {}, value=float(i % 7)) for i, t in enumerate(times)],
    )
    for _ in range(20):
        if not run_aggregation(lag_s=0).more_pending:
            break
    # When querying the last 10 minutes at a 60 s step
    last_10_min = {"from": iso(now - timedelta(minutes=10)), "to": iso(now)}
    result = query(
        tenant.viewer.headers, tenant.path, q(name="recent.metric", aggregation="sum", step=60, **last_10_min)
    )
    (answer,) = result.data["results"]
    # Then the 1m rollups serve the older slots and raw points the last few minutes, seamlessly
    assert answer["resolution"] == 60 and answer["raw_from"] is not None
    assert answer["start"] < answer["raw_from"] < answer["end"]
    sums: dict[int, float] = defaultdict(float)
    for i, t in enumerate(times):
        sums[int(t.timestamp()) // 60 * 60] += float(i % 7)
    assert_points(answer["series"][0]["points"], sorted((t, v) for t, v in sums.items() if t >= answer["start"]))


# --- tenant isolation ----------------------------------------------------------------------------------------


def _every_route(path: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", path, None),
        ("GET", f"{path}/{LATENCY}/series", None),
        ("GET", f"{path}/{LATENCY}/cardinality", None),
        ("POST", f"{path}/query", {"queries": [q()]}),
        ("PATCH", f"{path}/{LATENCY}/definition", {"unit": "x"}),
        ("DELETE", f"{path}/{LATENCY}/definition", None),
    ]


def test_another_tenant_gets_404_on_every_route_and_never_data(tenant: Tenant, stranger: tuple[User, Any]) -> None:
    owner, other_project = stranger
    for method, path, body in _every_route(tenant.path):
        # Another organization's owner
        result = invoke("metrics", method, path, headers=owner.headers, json_body=body)
        assert result.status == 404, (method, path, result.text)
        assert result.error["code"] == "not_found"
        # Another project's read key (writes need a user token: 403 before anything is looked up)
        keyed = invoke("metrics", method, path, headers=other_project.headers, json_body=body)
        assert keyed.status == (403 if method in ("PATCH", "DELETE") else 404), (method, path, keyed.text)
        assert "secret" not in result.text and "secret" not in keyed.text

    # And the stranger's own project shows only its own series
    own = get(other_project.headers, f"/v1/projects/{other_project.project_id}/metrics/{LATENCY}/series")
    assert [s["attributes"] for s in own.data] == [{"service": "secret"}]


def test_a_key_without_the_read_scope_is_403_and_a_random_project_404(tenant: Tenant) -> None:
    ingest_only = add_key(tenant.project, ("ingest",))
    result = get(ingest_only.headers, tenant.path)
    assert result.status == 403 and result.error["code"] == "scope_missing"
    nowhere = f"/v1/projects/{UUID(int=7)}/metrics"
    assert get(tenant.viewer.headers, nowhere).status == 404
    assert query(tenant.project.headers, nowhere, q()).status == 404
