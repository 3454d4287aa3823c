"""The metrics query request: what is accepted, what is refused (with the field's location), how a query is
planned (step, aligned range, raw or rollup source), and how filters become SQL without user text in it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from observai.errors import InvalidInput, Unprocessable
from observai.metrics.filters import filter_sql, match_filters
from observai.metrics.query import auto_step, plan
from observai.metrics.query_models import MetricQuery, QueryFilter, QueryRequest
from pydantic import ValidationError

NOW = datetime(2025, 6, 10, 12, 0, 30, tzinfo=UTC)


def _query(**fields: Any) -> dict[str, Any]:
    base = {"name": "http.latency", "from": "2025-06-09T12:00:00Z", "to": "2025-06-09T14:00:00Z"}
    base.update(fields)
    return base


def _errors(payload: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        QueryRequest.model_validate(payload)
    return [(tuple(e["loc"]), e["msg"]) for e in caught.value.errors()]


def test_a_full_query_is_accepted_and_ids_default_by_position() -> None:
    # Given two queries, the first without id, with every kind of filter
    request = QueryRequest.model_validate(
        {
            "queries": [
                _query(
                    filters=[
                        {"attribute": "service", "op": "=", "value": "api"},
                        {"attribute": "code", "op": "!=", "value": 500},
                        {"attribute": "region", "op": "in", "value": ["eu", "us"]},
                        {"attribute": "host", "op": "not_in", "value": ["h1"]},
                        {"attribute": "path", "op": "=~", "value": "/v1/.*"},
                        {"attribute": "path", "op": "!~", "value": "/health"},
                    ],
                    aggregation="p99",
                    group_by=["service"],
                    step=60,
                ),
                _query(id="b"),
            ]
        }
    )
    # Then ids are q0 (by position) and b; defaults apply; types of values are kept
    first, second = request.queries
    assert (first.id, second.id) == ("q0", "b")
    assert second.aggregation == "avg" and second.step is None and second.group_by == []
    assert first.filters[1].value == 500 and isinstance(first.filters[1].value, int)
    assert first.from_ == datetime(2025, 6, 9, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "loc", "message"),
    [
        (_query(aggregation="median"), ("queries", 0, "aggregation"), "Input should be"),
        (_query(to="2025-06-09T11:00:00Z"), ("queries", 0, "to"), "to must be after from"),
        (_query(to="2025-06-09T12:00:00Z"), ("queries", 0, "to"), "to must be after from"),
        (_query(to="2026-08-09T12:00:00Z"), ("queries", 0, "to"), "at most 400 days"),
        (
            _query(filters=[{"attribute": "a", "op": "=~", "value": "(unclosed"}]),
            ("queries", 0, "filters", 0, "value"),
            "not a valid regular expression",
        ),
        (
            _query(filters=[{"attribute": "a", "op": "=~", "value": "a" * 257}]),
            ("queries", 0, "filters", 0, "value"),
            "at most 256 characters",
        ),
        (
            _query(filters=[{"attribute": "a", "op": "in", "value": "x"}]),
            ("queries", 0, "filters", 0, "value"),
            "takes a list",
        ),
        (
            _query(filters=[{"attribute": "a", "op": "=", "value": ["x"]}]),
            ("queries", 0, "filters", 0, "value"),
            "not a list",
        ),
        (
            _query(filters=[{"attribute": "a", "op": "like", "value": "x"}]),
            ("queries", 0, "filters", 0, "op"),
            "Input should be",
        ),
        (_query(name=None), ("queries", 0, "name"), "Field required"),
        (_query(from_x="2025-06-09T12:00:00Z"), ("queries", 0, "from_x"), "Extra inputs"),
        (_query(step=0), ("queries", 0, "step"), "greater than or equal to 1"),
        (_query(group_by=["a", "a"]), ("queries", 0, "group_by"), "distinct"),
        (_query(**{"from": "2025-06-09T12:00:00"}), ("queries", 0, "from"), "timezone"),
    ],
)
def test_bad_queries_are_refused_at_the_field(query: dict[str, Any], loc: tuple[Any, ...], message: str) -> None:
    # When a query breaks one rule
    errors = _errors({"queries": [{k: v for k, v in query.items() if v is not None}]})
    # Then the error names the field and says why
    assert any(e_loc == loc and message in msg for e_loc, msg in errors), errors


def test_at_most_ten_queries_and_at_least_one() -> None:
    assert _errors({"queries": [_query(id=f"q{i}") for i in range(11)]})[0][0] == ("queries",)
    assert _errors({"queries": []})[0][0] == ("queries",)
    assert QueryRequest.model_validate({"queries": [_query(id=f"x{i}") for i in range(10)]})


def test_duplicate_ids_are_refused() -> None:
    errors = _errors({"queries": [_query(id="a"), _query(id="a")]})
    assert "distinct" in errors[0][1]


@pytest.mark.parametrize(
    ("range_s", "step"),
    [(60, 1), (3600, 15), (5 * 3600, 60), (6 * 3600, 300), (24 * 3600, 300), (7 * 86400, 3600), (30 * 86400, 86400)],
)
def test_auto_step_keeps_about_300_slots_and_rounds_to_rollup_resolutions(range_s: int, step: int) -> None:
    assert auto_step(range_s) == step
    assert auto_step(400 * 86400) == 2 * 86400  # beyond 1d: whole days


def _plan(step: int | None, hours: float = 2.0, *, ago: timedelta = timedelta(days=1)) -> Any:
    start = NOW - ago
    query = MetricQuery.model_validate(
        {"name": "m", "from": start.isoformat(), "to": (start + timedelta(hours=hours)).isoformat(), "step": step}
    )
    return plan(query, NOW)


@pytest.mark.parametrize(
    ("step", "resolution"),
    [
        (30, "raw"),
        (60, 60),
        (120, 60),
        (600, 300),
        (1800, 300),
        (3600, 3600),
        (7200, 3600),
        (86400, 86400),
        (90, "raw"),
    ],
)
def test_the_coarsest_rollup_that_divides_the_step_is_read(step: int, resolution: Any) -> None:
    assert _plan(step, hours=48).resolution == resolution


def test_the_range_is_aligned_to_the_step() -> None:
    # Given from = 12:00:30 one day ago, to two hours later, step 1h
    p = _plan(3600)
    # Then slots start on the hour: [12:00, 15:00)
    assert p.start == datetime(2025, 6, 9, 12, tzinfo=UTC)
    assert p.end == datetime(2025, 6, 9, 15, tzinfo=UTC)
    assert p.raw_from == p.end  # nothing recent: every slot from the rollups


def test_recent_slots_are_read_raw() -> None:
    # Given a range that ends now, step 60 s
    p = _plan(60, hours=1, ago=timedelta(hours=1))
    # Then rollups serve up to the slot holding now - 3 min, raw points the rest
    assert p.resolution == 60
    assert p.raw_from == datetime(2025, 6, 10, 11, 57, tzinfo=UTC)
    # And a range within the last minutes keeps the rule's resolution but is read from raw points throughout
    recent = _plan(60, hours=0.05, ago=timedelta(minutes=2))
    assert recent.resolution == 60 and recent.raw_from == recent.minute_from == recent.start


@pytest.mark.parametrize(("step", "resolution"), [(86400, 86400), (7200, 3600), (3600, 3600)])
def test_a_slot_holding_the_whole_range_up_to_now_reads_the_coarsest_dividing_rollup(
    step: int, resolution: int
) -> None:
    # Given the last 40 minutes (12:00:30 to now, 12:40:30) queried at a step whose one slot holds them all
    now = datetime(2025, 6, 10, 12, 40, 30, tzinfo=UTC)
    query = MetricQuery.model_validate(
        {"name": "m", "from": (now - timedelta(minutes=40)).isoformat(), "to": now.isoformat(), "step": step}
    )
    p = plan(query, now)
    assert p.end - p.start == timedelta(seconds=step)
    # Then the README's rule holds: the coarsest rollup dividing the step, not "raw"
    assert p.resolution == resolution
    # And the slot is the raw tail: its rolled-up minutes up to 12:37 (now - RECENT), raw points after
    assert p.raw_from == p.start
    assert p.minute_from == datetime(2025, 6, 10, 12, 37, tzinfo=UTC)


def test_too_many_points_per_series_is_a_422_naming_the_step() -> None:
    with pytest.raises(Unprocessable) as caught:
        query = MetricQuery.model_validate({"name": "m", "from": "2025-06-01T00:00:00Z", "to": "2025-06-02T00:00:00Z"})
        plan(query.model_copy(update={"step": 1}), NOW, loc=["body", "queries", 0])
    assert caught.value.code == "too_many_points"
    assert caught.value.details["loc"] == ["body", "queries", 0, "step"]
    assert caught.value.details["points"] == 86400


def test_filters_become_sql_with_bound_parameters_only() -> None:
    # Given filters whose attribute keys and values try to break out of SQL
    hostile = "x') or true; drop table public.metric_series; --"
    filters = [
        QueryFilter(attribute=hostile, op="=", value=hostile),
        QueryFilter(attribute="k", op="in", value=[hostile, 1]),
        QueryFilter(attribute=hostile, op="=~", value="a|b"),
        QueryFilter(attribute="k", op="!~", value=".*"),
    ]
    params: dict[str, Any] = {}
    # When the conditions are built
    sql = filter_sql(filters, params)
    # Then the SQL holds placeholders only; the text travels as parameters (regexes anchored)
    assert hostile not in sql and "drop" not in sql
    assert sql.count("%(") == 6
    assert params["f2"] == "^(?:a|b)$" and params["f2k"] == hostile
    assert [v.obj for v in params["f1"]] == [{"k": hostile}, {"k": 1}]


def test_match_parameters_become_equality_filters() -> None:
    # Given match[...] query parameters among others
    filters = match_filters({"match[code]": "200", "match[service]": "api", "limit": "5"})
    # Then each is an `in` of the text and, when it reads as one, the JSON number or boolean
    assert [(f.attribute, f.op, f.value) for f in filters] == [("code", "in", ["200", 200]), ("service", "in", ["api"])]
    with pytest.raises(InvalidInput):
        match_filters({"match[]": "x"})


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        # partial days at both edges around two whole days
        ("2025-06-07T05:00:00Z", "2025-06-10T07:00:00Z", ("2025-06-08T00:00:00Z", "2025-06-10T00:00:00Z")),
        # exactly one day: no edge
        ("2025-06-08T00:00:00Z", "2025-06-09T00:00:00Z", ("2025-06-08T00:00:00Z", "2025-06-09T00:00:00Z")),
        # over midnight without a whole day: 1h rows only
        ("2025-06-08T20:00:00Z", "2025-06-09T04:00:00Z", None),
    ],
)
def test_whole_days_of_a_percentile_at_a_1h_step_read_the_1d_rows_hourly_quantiles(
    start: str, end: str, days: tuple[str, str] | None
) -> None:
    from uuid import uuid4

    from observai.metrics.query import _group_rollup_sql

    # Given a p99 at a 1h step over group rows, read over [start, end)
    query = MetricQuery.model_validate(_query(aggregation="p99", step=3600, group_by=["host"]))
    at = {"start": datetime.fromisoformat(start), "end": datetime.fromisoformat(end)}
    params: dict[str, Any] = {"project": uuid4(), "group_key": "host", "step": 3600.0, "resolution": 3600, **at}

    # When the statement is built
    sql = _group_rollup_sql(query, params)

    # Then the whole days inside the range come from the 1d rows' hourly_p99 (one row per group per day), the partial
    # days at the edges from the 1h rows' p99; bounds are parameters
    assert params["arrayed"]
    if days is None:
        assert "hourly_p99" not in sql and "day_from" not in params
        return
    assert "r.hourly_p99" in sql and "r.resolution = 86400" in sql
    assert (params["day_from"], params["day_to"]) == tuple(datetime.fromisoformat(d) for d in days)
    assert sql.count("r.resolution = %(resolution)s") == (at["start"] < params["day_from"]) + (
        params["day_to"] < at["end"]
    )
