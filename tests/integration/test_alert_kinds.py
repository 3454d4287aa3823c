"""Rule kinds on real rows in Postgres: metric (avg, p95, group_by; a window aligned to the evaluation time read
from raw points and from rollups alike), log counts grouped, absence of a metric and of a service; and tenancy (a
rule reads under its project's claims: another project's rows are invisible even to SQL that asks for them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from observai.alerts.evaluation import rls_claims
from observai.alerts.kinds import Observation, get_kind, samples
from observai.alerts.rule_models import RuleIn
from observai.db.connection import tenant_transaction
from observai.metrics.rollup import run_aggregation
from observai.metrics.sketch import nearest_rank

from tests.helpers.alert_eval import add_logs, add_points, add_series, add_span
from tests.helpers.ingest import IngestProject, make_project

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
EVAL_AT = NOW.replace(second=0, microsecond=0)
RULE_ID = UUID(int=1)


def drain() -> None:
    for _ in range(1000):
        if not run_aggregation(lag_s=0).more_pending:
            return


def condition(**fields: Any) -> Any:
    return RuleIn.model_validate({"name": "r", "condition": fields}).condition


def observe(project: IngestProject, cond: Any, eval_at: datetime = EVAL_AT, *, read: UUID | None = None) -> Any:
    """What the kind reads for ``project`` (or for ``read``, a project id the SQL asks for) under the project's own
    claims, as the evaluator does."""
    kind = get_kind(cond.kind)
    with tenant_transaction(rls_claims(project.org_id, project.project_id, RULE_ID)) as cur:
        return kind.observe(cur, read or project.project_id, cond, eval_at)


def by_labels(observations: list[Observation]) -> dict[tuple[tuple[str, Any], ...], float | None]:
    return {tuple(sorted(o.labels.items())): o.value for o in observations}


@pytest.fixture(scope="module")
def project(database_url: str) -> Iterator[IngestProject]:
    yield make_project(("read",), label="Alert kinds")


# --- metric ------------------------------------------------------------------------------------------------------


def test_metric_rules_aggregate_per_group_and_compare(project: IngestProject) -> None:
    # Given latencies of two hosts in the last five minutes (host a: 1..100, host b: 5s), and host a's outlier
    # just before the window and after the evaluation time
    a = add_series(project, "http.latency", {"host": "a", "service.name": "api"})
    b = add_series(project, "http.latency", {"host": "b", "service.name": "api"})
    start = EVAL_AT - timedelta(minutes=5)
    add_points(project, a, [(start + timedelta(seconds=3 * i), float(i + 1)) for i in range(100)])
    add_points(project, b, [(start + timedelta(seconds=30 * i), 5.0) for i in range(10)])
    add_points(project, a, [(start - timedelta(seconds=1), 10_000.0), (EVAL_AT, 10_000.0)])
    drain()

    # When a p95 rule grouped by host and an avg rule over every host are evaluated
    p95 = condition(kind="metric", metric="http.latency", aggregation="p95", group_by=["host"], window="5m",
                    op=">", threshold=50)  # fmt: skip
    seen = observe(project, p95)
    avg = condition(kind="metric", metric="http.latency", aggregation="avg", window="5m", op="<", threshold=40)
    overall = observe(project, avg)

    # Then host a's p95 is the nearest-rank 95th of 1..100 (within the sketches' 1% where rolled up), host b's 5;
    # only host a's crosses the threshold; the points outside [eval_at - 5m, eval_at) count for nothing
    values = by_labels(seen)
    assert values[(("host", "b"),)] == pytest.approx(5.0, rel=0.0101)
    assert values[(("host", "a"),)] == pytest.approx(95.0, rel=0.0101)
    judged = {s.labels["host"]: s.active for s in samples(get_kind("metric"), p95, seen)}
    assert judged == {"a": True, "b": False}
    assert len(overall) == 1 and overall[0].labels == {}
    assert overall[0].value == pytest.approx((sum(range(1, 101)) + 50.0) / 110)
    assert samples(get_kind("metric"), avg, overall)[0].active is False


def test_an_offset_window_gives_the_same_value_from_raw_points_and_from_rollups(project: IngestProject) -> None:
    from observai.metrics.query import _run_one, plan
    from observai.metrics.query_models import MetricQuery

    # Given a point every 10 s for the last 2 hours, rolled up
    sid = add_series(project, "queue.depth", {"queue": "jobs"})
    first = EVAL_AT - timedelta(hours=2)
    points = [(first + timedelta(seconds=10 * i), float((i * 37) % 101)) for i in range(2 * 360 + 6 * 5)]
    add_points(project, sid, points)
    drain()

    # When windows end at evaluation times 7 minutes past a 5-minute boundary, and on one, an hour ago
    base = (EVAL_AT - timedelta(hours=1)).replace(minute=0)
    cases = [(base + timedelta(minutes=7), 300, 60), (base + timedelta(minutes=7), 600, 60),
             (base + timedelta(minutes=10), 600, 300), (base + timedelta(minutes=12), 900, 60)]  # fmt: skip
    for eval_at, window, resolution in cases:
        inside = [v for t, v in points if eval_at - timedelta(seconds=window) <= t < eval_at]
        expected = {"avg": sum(inside) / len(inside), "max": max(inside), "count": float(len(inside)),
                    "p95": sorted(inside)[nearest_rank(0.95, len(inside)) - 1]}  # fmt: skip
        for aggregation, value in expected.items():
            query = MetricQuery.model_validate(
                {"id": "q", "name": "queue.depth", "from": eval_at - timedelta(seconds=window), "to": eval_at,
                 "step": window, "aggregation": aggregation}
            )  # fmt: skip
            rolled_plan = plan(query, NOW, align=eval_at)
            raw_plan = dataclasses.replace(
                rolled_plan, resolution="raw", raw_from=rolled_plan.start, minute_from=rolled_plan.start
            )
            with tenant_transaction(rls_claims(project.org_id, project.project_id, RULE_ID)) as cur:
                rolled = _run_one(cur, project.project_id, query, rolled_plan, ["q"])
                raw = _run_one(cur, project.project_id, query, raw_plan, ["q"])
            # Then one slot [eval_at - window, eval_at), read from a rollup dividing both the window and the
            # offset, with the value the raw points give (percentiles within the sketches' 1%)
            assert rolled_plan.start == eval_at - timedelta(seconds=window) and rolled_plan.end == eval_at
            assert rolled.resolution == resolution and raw.resolution == "raw"
            ((slot, from_rollups),) = rolled.series[0].points
            ((raw_slot, from_raw),) = raw.series[0].points
            assert slot == raw_slot == int((eval_at - timedelta(seconds=window)).timestamp())
            assert from_raw == pytest.approx(value), (eval_at, window, aggregation)
            rel = 0.0101 if aggregation == "p95" else 1e-9
            assert from_rollups == pytest.approx(value, rel=rel), (eval_at, window, aggregation)

    # And the rule kind reads the same over a window ending now (1m rollups and the raw tail after them)
    window_points = [v for t, v in points if EVAL_AT - timedelta(minutes=10) <= t < EVAL_AT]
    cond = condition(kind="metric", metric="queue.depth", aggregation="avg", window="10m", op=">", threshold=0)
    (now_value,) = observe(project, cond)
    assert now_value.value == pytest.approx(sum(window_points) / len(window_points))


# --- log -----------------------------------------------------------------------------------------------------------


def test_log_rules_count_matching_lines_per_group(project: IngestProject) -> None:
    # Given error and info lines of two services in the window, and api errors before it and at eval_at
    at = EVAL_AT - timedelta(minutes=2)
    add_logs(project, [
        *({"time": at, "service": "pay", "severity_number": 17, "attributes": {"http.route": "/pay"}}
          for _ in range(3)),
        {"time": at, "service": "pay", "severity_number": 9, "attributes": {"http.route": "/pay"}},
        {"time": at, "service": "pay", "severity_number": 9, "attributes": {"http.route": "/refund"}},
        {"time": at, "service": "shop", "severity_number": 18},
        {"time": EVAL_AT - timedelta(minutes=6), "service": "pay", "severity_number": 17},
        {"time": EVAL_AT, "service": "pay", "severity_number": 17},
    ])  # fmt: skip

    # When counted per service (errors), per level (everything), per route attribute, and with no group
    errors = condition(kind="log", query="severity:error", group_by=["service"], window="5m", op=">", threshold=2)
    per_service = observe(project, errors)
    per_level = observe(project, condition(kind="log", group_by=["severity"], window="5m", threshold=0))
    per_route = observe(project, condition(kind="log", query="service:pay", group_by=["attributes.http.route"],
                                           window="5m", threshold=0))  # fmt: skip
    nothing = observe(project, condition(kind="log", query="no_such_word", group_by=[], window="5m", threshold=0))

    # Then each group has its count in [eval_at - 5m, eval_at); only pay's 3 errors cross "> 2"
    assert by_labels(per_service) == {(("service", "pay"),): 3.0, (("service", "shop"),): 1.0}
    assert {s.labels["service"]: s.active for s in samples(get_kind("log"), errors, per_service)} == {
        "pay": True, "shop": False,
    }  # fmt: skip
    assert by_labels(per_level) == {(("severity", "error"),): 4.0, (("severity", "info"),): 2.0}
    assert by_labels(per_route) == {
        (("attributes.http.route", "/pay"),): 4.0,
        (("attributes.http.route", "/refund"),): 1.0,
    }
    # And with no group_by a count of zero is a value (a "< 1" rule can fire on it)
    assert by_labels(nothing) == {(): 0.0}


# --- absence -----------------------------------------------------------------------------------------------------


def test_metric_absence_per_series_and_for_a_metric_never_sent(project: IngestProject) -> None:
    # Given heartbeats: host a's last 20 minutes ago, host b's a minute ago
    a = add_series(project, "heartbeat", {"host": "a"})
    b = add_series(project, "heartbeat", {"host": "b"})
    add_points(project, a, [(EVAL_AT - timedelta(minutes=m), 1.0) for m in (40, 30, 20)])
    add_points(project, b, [(EVAL_AT - timedelta(minutes=m), 1.0) for m in (3, 2, 1)])

    # When absences of 10 minutes are evaluated per host, over every host, and for a metric nobody sends
    per_host = condition(kind="absence", target="metric", metric="heartbeat", group_by=["host"], duration="10m")
    seen = observe(project, per_host)
    any_host = observe(project, condition(kind="absence", target="metric", metric="heartbeat", duration="10m"))
    never = condition(kind="absence", target="metric", metric="never.sent", duration="10m")
    never_seen = observe(project, never)

    # Then host a is absent (20 minutes since its last point), host b is not; the metric as a whole is alive; the
    # metric never sent is absent with no value
    assert by_labels(seen) == {(("host", "a"),): 1200.0, (("host", "b"),): 60.0}
    assert {s.labels["host"]: s.active for s in samples(get_kind("absence"), per_host, seen)} == {"a": True, "b": False}
    assert by_labels(any_host) == {(): 60.0}
    assert never_seen == [Observation({}, None)]
    assert samples(get_kind("absence"), never, never_seen)[0].active is True


def test_service_absence_looks_at_logs_spans_and_metrics(project: IngestProject) -> None:
    # Given a service seen in logs 2 minutes ago, one only in a span 30 minutes ago, one only in a metric point a
    # minute ago (service.name in the series' attributes)
    add_logs(project, [{"time": EVAL_AT - timedelta(minutes=2), "service": "checkout"}])
    add_span(project, "billing", EVAL_AT - timedelta(minutes=30))
    sid = add_series(project, "jobs.done", {"service.name": "inventory"})
    add_points(project, sid, [(EVAL_AT - timedelta(minutes=1), 1.0)])

    def absent(service: str) -> tuple[float | None, bool]:
        cond = condition(kind="absence", target="service", service=service, duration="10m")
        (sample,) = samples(get_kind("absence"), cond, observe(project, cond))
        assert sample.labels == {"service": service}
        return sample.value, sample.active

    # When each is checked for 10 minutes of silence / Then
    assert absent("checkout") == (120.0, False)
    assert absent("billing") == (1800.0, True)
    assert absent("inventory") == (60.0, False)
    assert absent("ghost") == (None, True)


# --- tenancy -------------------------------------------------------------------------------------------------------


def test_a_rule_never_sees_another_projects_points_even_with_the_same_metric(project: IngestProject) -> None:
    # Given two projects with the same metric and attributes: A at 10, B at 90
    a, b = make_project(("read",), label="Tenant A"), make_project(("read",), label="Tenant B")
    for tenant, value in ((a, 10.0), (b, 90.0)):
        sid = add_series(tenant, "cpu", {"host": "h1"})
        add_points(tenant, sid, [(EVAL_AT - timedelta(seconds=30 * i), value) for i in range(1, 5)])
    cond = condition(kind="metric", metric="cpu", aggregation="max", window="5m", op=">", threshold=50)

    # When A's rule is evaluated, and when SQL under A's claims asks for B's project outright
    own = observe(a, cond)
    asked_for_b = observe(a, cond, read=b.project_id)
    logs_of_b = observe(a, condition(kind="log", group_by=[], window="5m", threshold=0), read=b.project_id)
    absence_of_b = observe(a, condition(kind="absence", target="metric", metric="cpu", duration="1m"),
                           read=b.project_id)  # fmt: skip

    # Then A sees its own 10 only; B's rows are invisible under A's claims (Row Level Security, not the WHERE)
    assert by_labels(own) == {(): 10.0}
    assert asked_for_b == []
    assert by_labels(logs_of_b) == {(): 0.0}
    assert absence_of_b == [Observation({}, None)]
    assert by_labels(observe(b, cond)) == {(): 90.0}
