"""Records to COPY rows in C (telemetry/_rows.c) give exactly the rows of the writer's Python row builders.

For any LogRecord or Span list: either ``copy_rows`` answers None (the Python builders do the table), or its
payload holds, value for value as Postgres stores them, the rows ``_log_rows`` / ``_span_rows`` build (through
psycopg's binary COPY), with the same log volume counts.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from observai.retention.policy import RowRetention
from observai.telemetry import copy_rows, writer
from observai.telemetry.model import LogRecord, Span

from tests.helpers.copy_binary import comparable, read_rows, wire_value

pytestmark = pytest.mark.skipif(not copy_rows.available(), reason="the C extension is not built (make install)")

ORG, PROJECT = uuid.uuid4(), uuid.uuid4()
RETENTION = RowRetention(logs_by_severity=tuple(range(3, 28)), spans=11, metrics=5)
NOW = 1_795_000_000_000_000_000


def python_logs(records: list[LogRecord]) -> tuple[list[Any], Counter[Any]]:
    minutes: Counter[Any] = Counter()
    rows = list(writer._log_rows(ORG, PROJECT, records, RETENTION, minutes))
    types = writer._LOG_COLUMN_TYPES
    return [comparable([wire_value(v, t) for v, t in zip(r, types, strict=True)], types) for r in rows], minutes


def python_spans(records: list[Span]) -> list[Any]:
    types = writer._SPAN_COLUMN_TYPES
    rows = writer._span_rows(ORG, PROJECT, records, 11)
    return [comparable([wire_value(v, t) for v, t in zip(r, types, strict=True)], types) for r in rows]


def same_logs(records: list[LogRecord]) -> bool:
    minutes: Counter[Any] = Counter()
    encoded = copy_rows.log_payload(records, ORG, PROJECT, RETENTION, minutes)
    if encoded is None:
        return False
    want, want_minutes = python_logs(records)
    got = [comparable(r, writer._LOG_COLUMN_TYPES) for r in read_rows(encoded.payload)]
    assert encoded.count == len(records) == len(got)
    assert got == want
    assert minutes == want_minutes
    return True


def same_spans(records: list[Span]) -> bool:
    encoded = copy_rows.span_payload(records, ORG, PROJECT, 11)
    if encoded is None:
        return False
    got = [comparable(r, writer._SPAN_COLUMN_TYPES) for r in read_rows(encoded.payload)]
    assert encoded.count == len(records)
    assert got == python_spans(records)
    return True


def a_log(**fields: Any) -> LogRecord:
    return LogRecord(**{"time_ns": NOW, "body": "hello", "severity_number": 9, **fields})


def a_span(**fields: Any) -> Span:
    base = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "name": "GET /", "start_time_ns": NOW, "end_time_ns": NOW + 5}
    return Span(**{**base, **fields})


VALUES = [
    "plain",
    "ünïcødé ✓ 𝄞",
    'q " b \\ n \n t \t bell \x07',
    "nul \x00",
    True,
    False,
    None,
    0,
    -(2**63),
    2**63 - 1,
    2**64 - 1,  # past int8: orjson's unsigned range (the Python encoder)
    2**70,  # past orjson: the json module (the Python encoder)
    0.1,
    1.0,
    -0.0,
    1e16,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
    [1, "a", [None, {"k": 2.5}]],
    (1, 2),
    {},
    [],
    {"nested": {"deeper": {"x": [1.5, "y"]}}},
    {1: "int key"},  # not a str key: the Python encoder
    datetime(2026, 1, 2, tzinfo=UTC),  # no JSON form of its own: the Python encoder (orjson's ISO text)
    uuid.UUID(int=7),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_given_an_attribute_value_when_rows_are_built_in_c_then_they_are_the_python_ones(value: Any) -> None:
    assert same_logs([a_log(attributes={"v": value, "w": 1})])
    assert same_spans(
        [a_span(attributes={"v": value}, events=[{"time_ns": NOW, "name": "e", "attributes": {"v": value}}])]
    )


def test_given_log_fields_when_rows_are_built_in_c_then_each_column_is_the_python_ones() -> None:
    resource = {"service.name": "checkout", "host.name": "web-1"}
    scope = {"name": "lib", "version": None, "attributes": {}}
    records = [
        a_log(),
        a_log(service="checkout", resource=resource, scope=scope, observed_time_ns=NOW + 1, severity_text="INFO"),
        a_log(service="checkout", resource=resource, scope=scope, trace_id="ab" * 16, span_id="cd" * 8, flags=1),
        a_log(time_ns=NOW + 61 * 10**9, severity_number=17, event_id="e-1", event_name="login", body="x\x00y"),
        a_log(severity_number=30, service="db\u00e9"),  # severity outside 0..24: retention of severity 0
        a_log(severity_text="nul\x00", event_name="n\x00"),  # clean_text: NUL → U+FFFD
        a_log(time_ns=999, observed_time_ns=0),  # before 2000 (negative microseconds), no observed time
    ]
    assert same_logs(records)


def test_given_span_fields_when_rows_are_built_in_c_then_each_column_is_the_python_ones() -> None:
    resource = {"service.name": "checkout"}
    records = [
        a_span(),
        a_span(parent_span_id="ef" * 8, kind="server", service="checkout", resource=resource, status_code="error",
               status_message="boom\x00", trace_state="k=v", flags=2**31 - 1, event_id="s1",
               links=[{"trace_id": "01" * 16, "span_id": "02" * 8, "trace_state": None, "attributes": {"a": 1}}],
               scope={"name": "t", "version": "1", "attributes": {"x": [1]}}),
        a_span(start_time_ns=NOW, end_time_ns=NOW, name="n\x00"),
    ]  # fmt: skip
    assert same_spans(records)


@pytest.mark.parametrize(
    "records",
    [
        [a_log(trace_id="a\x00b")],  # NUL in a column the Python path sends as is: it raises, not us
        [a_log(flags=2**31)],  # past int4
        [a_log(severity_number=2**15)],  # past int2
        [a_log(body="lone \ud800 surrogate")],  # not UTF-8-encodable
        [a_log(service="s\x00")],  # the volume's key would be rewritten
        [a_log(time_ns=2**64)],  # past int8
    ],
    ids=["nul-trace-id", "flags", "severity", "surrogate", "nul-service", "time"],
)
def test_given_a_log_the_python_builders_must_handle_when_built_in_c_then_they_are_left_to_them(
    records: list[LogRecord],
) -> None:
    assert copy_rows.log_payload(records, ORG, PROJECT, RETENTION, Counter()) is None


def test_given_a_span_the_python_builders_must_handle_when_built_in_c_then_they_are_left_to_them() -> None:
    assert copy_rows.span_payload([a_span(kind="k\x00")], ORG, PROJECT, 11) is None
    assert copy_rows.span_payload([a_span(start_time_ns=-(2**63), end_time_ns=2**63 - 1)], ORG, PROJECT, 11) is None


def test_given_no_records_when_built_in_c_then_the_payload_is_an_empty_copy() -> None:
    encoded = copy_rows.log_payload([], ORG, PROJECT, RETENTION, Counter())
    assert encoded is not None and encoded.count == 0 and read_rows(encoded.payload) == []


# --- any records -------------------------------------------------------------------------------------------------

_text = st.text(max_size=12) | st.sampled_from(["", "a\x00b", "ü"])
_keys = st.text(max_size=6)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=8)
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3), max_leaves=6
)
_maps = st.dictionaries(_keys, _values, max_size=4)
_times = st.integers(min_value=0, max_value=2**62) | st.just(NOW)
_optional_text = st.none() | _text


@st.composite
def _logs(draw: st.DrawFn, resources: list[dict[str, Any]]) -> LogRecord:
    return LogRecord(
        time_ns=draw(_times),
        body=draw(_text),
        severity_number=draw(st.integers(0, 30)),
        severity_text=draw(_optional_text),
        service=draw(st.none() | st.sampled_from(["checkout", "api", "é"])),
        attributes=draw(_maps),
        resource=draw(st.sampled_from(resources)),
        scope=draw(st.none() | st.just({"name": "s", "version": None, "attributes": {}})),
        observed_time_ns=draw(st.none() | _times),
        trace_id=draw(st.none() | st.just("ab" * 16)),
        span_id=draw(st.none() | st.just("cd" * 8)),
        flags=draw(st.integers(0, 2**31 - 1)),
        event_id=draw(_optional_text),
        event_name=draw(_optional_text),
    )


@st.composite
def _spans(draw: st.DrawFn, resources: list[dict[str, Any]]) -> Span:
    start = draw(_times)
    return Span(
        trace_id="ab" * 16,
        span_id=draw(st.sampled_from(["cd" * 8, "ef" * 8])),
        name=draw(_text),
        start_time_ns=start,
        end_time_ns=start + draw(st.integers(0, 10**12)),
        parent_span_id=draw(st.none() | st.just("01" * 8)),
        kind=draw(st.sampled_from(["internal", "server", "client"])),
        service=draw(st.none() | st.just("checkout")),
        status_code=draw(st.sampled_from(["unset", "ok", "error"])),
        status_message=draw(_optional_text),
        attributes=draw(_maps),
        resource=draw(st.sampled_from(resources)),
        events=draw(
            st.lists(st.fixed_dictionaries({"time_ns": _times, "name": _text, "attributes": _maps}), max_size=2)
        ),
        links=draw(
            st.lists(st.fixed_dictionaries({"trace_id": _text, "span_id": _text, "attributes": _maps}), max_size=2)
        ),
        trace_state=draw(_optional_text),
        flags=draw(st.integers(0, 2**31 - 1)),
        event_id=draw(_optional_text),
    )


_RESOURCES = [{}, {"service.name": "checkout"}, {"service.name": "api", "n": 1.5, "nul": "a\x00"}]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_logs(_RESOURCES), max_size=6))
def test_given_any_logs_when_rows_are_built_in_c_then_they_are_the_python_ones(records: list[LogRecord]) -> None:
    event(f"built in C: {same_logs(records)}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_spans(_RESOURCES), max_size=6))
def test_given_any_spans_when_rows_are_built_in_c_then_they_are_the_python_ones(records: list[Span]) -> None:
    event(f"built in C: {same_spans(records)}")
