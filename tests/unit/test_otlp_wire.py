"""The OTLP fast path (otlp/_wire.c) writes exactly the rows the Python path writes, or leaves the request to it.

Logs, spans and metric points (gauges, sums, histograms; their series ids too).

For any request: either ``wire_rows`` answers None (the Python path converts it), or its binary COPY payload holds
the rows that decode.py's records give through the writer's row builders, value for value as Postgres stores
them, with the same log volume counts. And it must not answer None for the ordinary requests it exists for.
"""

from __future__ import annotations

import math
import struct
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from observai.errors import InvalidInput
from observai.retention.policy import RowRetention
from observai.telemetry import writer
from observai.telemetry.limits import DEFAULT_LIMITS, IngestLimits
from observai.telemetry.model import RawRequest, Signal
from observai.telemetry.otlp import wire
from observai.telemetry.otlp.decode import decode_otlp
from observai.telemetry.series import series_id
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.helpers.copy_binary import comparable, read_rows, wire_value
from tests.helpers.otlp_payloads import (
    MS,
    S,
    any_value,
    key_values,
    logs_request,
    many_logs_request,
    many_points_request,
    many_spans_request,
    metrics_request,
    resource,
    scope,
    traces_request,
)

pytestmark = pytest.mark.skipif(not wire.available(), reason="the C extension is not built (make install)")

NOW = 1_795_000_000 * S
ORG, PROJECT = uuid.uuid4(), uuid.uuid4()
# Distinct retention per severity, so a row with the wrong severity's retention shows.
RETENTION = RowRetention(logs_by_severity=tuple(range(3, 28)), spans=11, metrics=5)
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")


COLUMN_TYPES = {
    Signal.LOGS: writer._LOG_COLUMN_TYPES,
    Signal.TRACES: writer._SPAN_COLUMN_TYPES,
    Signal.METRICS: writer._METRIC_COLUMN_TYPES,
}


def python_rows(signal: Signal, body: bytes, limits: IngestLimits = DEFAULT_LIMITS) -> tuple[list[Any], Any]:
    """What the Python path writes: decode.py's records through the writer's row builders; and the log volume's
    counts (logs) or the points' series (metric points)."""
    batch = decode_otlp(signal, body, encoding="protobuf", now_ns=NOW, limits=limits)
    assert not batch.rejected, batch.rejected
    minutes: Counter[Any] = Counter()
    if signal is Signal.METRICS:
        keyed: dict[tuple[int, int], Any] = {}
        for point in batch.metrics:
            keyed.setdefault((series_id(point.name, point.attributes), writer.pg_time(point.time_ns)), point)
        assert len(keyed) == len(batch.metrics), "a point twice: the fast path must leave it to the Python path"
        types = writer._METRIC_COLUMN_TYPES
        rows = writer._metric_rows(ORG, PROJECT, keyed, 5)
        series = {sid: point.type.value for (sid, _), point in keyed.items()}
        return [comparable([wire_value(v, t) for v, t in zip(row, types, strict=True)], types) for row in rows], series
    if signal is Signal.LOGS:
        rows = list(writer._log_rows(ORG, PROJECT, batch.logs, RETENTION, minutes))
        types = writer._LOG_COLUMN_TYPES
    else:
        rows = list(writer._span_rows(ORG, PROJECT, writer._first_of_each(iter(batch.spans), writer._span_key), 11))
        types = writer._SPAN_COLUMN_TYPES
    return [comparable([wire_value(v, t) for v, t in zip(row, types, strict=True)], types) for row in rows], minutes


def fast_rows(signal: Signal, body: bytes, limits: IngestLimits = DEFAULT_LIMITS) -> wire.WireRows | None:
    return wire.wire_rows(RawRequest(signal, body, NOW, limits), ORG, PROJECT, RETENTION)


def assert_same_rows(signal: Signal, body: bytes, limits: IngestLimits = DEFAULT_LIMITS) -> bool:
    """Both paths agree; True when the fast path took the request."""
    fast = fast_rows(signal, body, limits)
    if fast is None:
        return False
    want, extra = python_rows(signal, body, limits)
    types = COLUMN_TYPES[signal]
    got = [comparable(row, types) for row in read_rows(fast.payload)]
    assert fast.count == len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        differences = [f"column {c}: {a!r} != {b!r}" for c, (a, b) in enumerate(zip(g, w, strict=True)) if a != b]
        assert g == w, f"row {i}: {'; '.join(differences)}"
    if signal is Signal.LOGS:
        assert fast.minutes == dict(extra)
    if signal is Signal.METRICS:
        assert fast.series == extra
    return True


def logs_body(*records: logs_pb2.LogRecord, res: Any = None, scope_: Any = None) -> bytes:
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=res if res is not None else resource("checkout", host_name="web-1"),
                scope_logs=[logs_pb2.ScopeLogs(scope=scope_ or scope("app"), log_records=list(records))],
            )
        ]
    ).SerializeToString()


def spans_body(*spans: trace_pb2.Span, res: Any = None) -> bytes:
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=res if res is not None else resource("checkout"),
                scope_spans=[trace_pb2.ScopeSpans(scope=scope("tracer", "1.2"), spans=list(spans))],
            )
        ]
    ).SerializeToString()


def a_log(**fields: Any) -> logs_pb2.LogRecord:
    base: dict[str, Any] = {
        "time_unix_nano": NOW - 5 * S,
        "severity_number": 9,
        "severity_text": "INFO",
        "body": any_value("hello"),
    }
    base.update(fields)
    return logs_pb2.LogRecord(**base)


def a_span(**fields: Any) -> trace_pb2.Span:
    base: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "GET /items",
        "kind": 2,
        "start_time_unix_nano": NOW - 5 * S,
        "end_time_unix_nano": NOW - 4 * S,
    }
    base.update(fields)
    return trace_pb2.Span(**base)


# --- the requests the fast path is for ---------------------------------------------------------------------------


def test_given_the_benchmark_requests_when_written_fast_then_the_rows_are_the_python_paths() -> None:
    assert assert_same_rows(Signal.LOGS, many_logs_request(300, NOW).SerializeToString())
    assert assert_same_rows(Signal.TRACES, many_spans_request(300, NOW).SerializeToString())


def test_given_the_sdk_like_requests_when_written_fast_then_the_rows_are_the_python_paths() -> None:
    # logs_request and traces_request: every field the tests of the Python path use (events, links, kvlist and
    # array attributes, bytes, doubles, severities, observed times, trace context...). Items the Python path
    # rejects would send the request back to it, so the rejected ones are left out here.
    logs = logs_request(NOW)
    assert assert_same_rows(Signal.LOGS, logs.SerializeToString()) or _has_rejections(Signal.LOGS, logs)
    traces = traces_request(NOW)
    assert assert_same_rows(Signal.TRACES, traces.SerializeToString()) or _has_rejections(Signal.TRACES, traces)


def _has_rejections(signal: Signal, message: Any) -> bool:
    return bool(decode_otlp(signal, message.SerializeToString(), encoding="protobuf", now_ns=NOW).rejected)


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "ünïcødé ✓ 𝄞",
        'quote " backslash \\ newline \n tab \t bell \x07',
        "nul \x00 inside",
        "",
        True,
        False,
        0,
        -(2**63),
        2**63 - 1,
        0.1,
        1.0,
        -0.0,
        1e16,
        1.5e16,
        1e-5,
        0.0001,
        123456789.125,
        5e-324,
        1.7976931348623157e308,
        math.nan,
        math.inf,
        -math.inf,
        b"\x00\x01\xfe\xff",
        b"",
        b"ab",
        [1, "two", 3.5, [True, None], {"k": "v"}],
        [],
        {"nested": {"deeper": [1, {"x": None}]}, "b": b"x"},
        {},
        None,
    ],
    ids=repr,
)
def test_given_an_attribute_value_when_written_fast_then_jsonb_stores_what_the_python_path_stores(value: Any) -> None:
    body = logs_body(a_log(attributes=key_values({"v": value, "after": 1})))
    assert assert_same_rows(Signal.LOGS, body)
    body = logs_body(a_log(body=any_value(value)))  # a structured body: its JSON text, as json.dumps writes it
    assert assert_same_rows(Signal.LOGS, body) or "\x00" in str(value)
    body = spans_body(
        a_span(
            attributes=key_values({"v": value}),
            events=[trace_pb2.Span.Event(name="e", time_unix_nano=NOW - 5 * S, attributes=key_values({"v": value}))],
        )
    )
    assert assert_same_rows(Signal.TRACES, body)


def test_given_log_fields_when_written_fast_then_each_column_is_the_python_paths() -> None:
    body = logs_body(
        a_log(),  # no trace context, no observed time
        a_log(time_unix_nano=0, observed_time_unix_nano=NOW - 2 * S, severity_number=17, severity_text=""),
        a_log(observed_time_unix_nano=NOW - S, trace_id=TRACE, span_id=SPAN, flags=1, event_name="login"),
        a_log(trace_id=b"\x00" * 16, span_id=bytes(8), severity_number=0, body=AnyValue()),  # all-zero ids: NULL
        a_log(severity_number=24, body=any_value("x" * DEFAULT_LIMITS.max_body_length)),
    )
    assert assert_same_rows(Signal.LOGS, body)


def test_given_several_resources_and_scopes_when_written_fast_then_each_item_has_its_own() -> None:
    body = ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource(service),
                scope_logs=[
                    logs_pb2.ScopeLogs(scope=scope(f"lib-{j}", "2.0", kind=j), log_records=[a_log(), a_log()])
                    for j in range(2)
                ],
            )
            for service in ("checkout", "payments", None)
        ]
        + [logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=[a_log()])])]  # no resource, no scope
    ).SerializeToString()
    assert assert_same_rows(Signal.LOGS, body)


def test_given_span_fields_when_written_fast_then_each_column_is_the_python_paths() -> None:
    link = trace_pb2.Span.Link(trace_id=TRACE, span_id=bytes(7) + b"\x01", trace_state="a=1", flags=257)
    body = spans_body(
        a_span(),
        a_span(span_id=b"\x00" * 7 + b"\x02", parent_span_id=SPAN, kind=0, trace_state="vendor=x", flags=1),
        a_span(
            span_id=b"\x00" * 7 + b"\x03",
            parent_span_id=bytes(8),
            kind=5,
            status=trace_pb2.Status(code=2, message="boom"),
        ),
        a_span(
            span_id=b"\x00" * 7 + b"\x04",
            kind=1,
            status=trace_pb2.Status(code=1),
            links=[link, trace_pb2.Span.Link(trace_id=TRACE, span_id=SPAN, dropped_attributes_count=2)],
            events=[trace_pb2.Span.Event(time_unix_nano=NOW - 5 * S + MS, name="retry", dropped_attributes_count=1)],
            end_time_unix_nano=NOW - 5 * S,  # zero duration
        ),
    )
    assert assert_same_rows(Signal.TRACES, body)


# --- what it leaves to the Python path ---------------------------------------------------------------------------

LONG = DEFAULT_LIMITS.max_value_length


@pytest.mark.parametrize(
    ("signal", "body"),
    [
        (Signal.LOGS, logs_body(a_log(time_unix_nano=NOW - 30 * 86_400 * S))),  # rejected: too old
        (Signal.LOGS, logs_body(a_log(time_unix_nano=0, observed_time_unix_nano=0))),  # rejected: no time
        (Signal.LOGS, logs_body(a_log(severity_number=25))),  # rejected: not a SeverityNumber
        (Signal.LOGS, logs_body(a_log(attributes=key_values({"k": "v" * (LONG + 1)})))),  # rejected: value too long
        (Signal.LOGS, logs_body(a_log(attributes=key_values({"k" * 257: 1})))),  # rejected: key too long
        (Signal.LOGS, logs_body(a_log(attributes=key_values({f"k{i}": i for i in range(129)})))),  # too many keys
        (Signal.LOGS, logs_body(a_log(attributes=key_values({"k": list(range(129))})))),  # too many items
        (Signal.LOGS, logs_body(a_log(body=any_value("x" * (DEFAULT_LIMITS.max_body_length + 1))))),  # body too long
        (Signal.LOGS, logs_body(a_log(body=AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k")] * 2))))),
        (Signal.LOGS, logs_body(a_log(body=any_value("nul \x00")))),  # clean_text rewrites NUL
        (Signal.LOGS, logs_body(a_log(severity_text="I\x00"))),
        (Signal.LOGS, logs_body(a_log(attributes=[KeyValue(key="k", value=any_value(1))] * 2))),  # duplicate key
        (Signal.LOGS, logs_body(a_log(attributes=[KeyValue(key="k", value=AnyValue(string_value_strindex=3))]))),
        (Signal.LOGS, logs_body(a_log(), res=resource(None, service_name=7))),  # service.name not a string
        (Signal.LOGS, logs_body(a_log(), res=resource("web", k="v" * (LONG + 1)))),  # resource refused
        (Signal.LOGS, logs_body(a_log(), scope_=scope("s", **{"k" * 300: 1}))),  # scope refused
        (Signal.LOGS, logs_body(a_log(flags=2**31))),  # past int4
        (Signal.LOGS, ExportLogsServiceRequest().SerializeToString()),  # nothing to write
        (Signal.TRACES, spans_body(a_span(trace_id=bytes(16)))),
        (Signal.TRACES, spans_body(a_span(span_id=b"\x01" * 7))),
        (Signal.TRACES, spans_body(a_span(parent_span_id=b"\x01" * 7))),
        (Signal.TRACES, spans_body(a_span(name=""))),
        (Signal.TRACES, spans_body(a_span(name="n" * 513))),
        (Signal.TRACES, spans_body(a_span(kind=6))),
        (Signal.TRACES, spans_body(a_span(status=trace_pb2.Status(code=3)))),
        (Signal.TRACES, spans_body(a_span(end_time_unix_nano=NOW - 6 * S))),  # ends before it starts
        (
            Signal.TRACES,
            spans_body(a_span(start_time_unix_nano=NOW + 2 * 3600 * S, end_time_unix_nano=NOW + 7200 * S + 1)),
        ),
        (Signal.TRACES, spans_body(a_span(links=[trace_pb2.Span.Link(trace_id=TRACE, span_id=bytes(8))]))),
        (
            Signal.TRACES,
            spans_body(a_span(events=[trace_pb2.Span.Event(name="e", attributes=key_values({"k" * 300: 1}))])),
        ),
        (Signal.TRACES, spans_body(a_span(), a_span())),  # the same span twice: the Python path drops the copy
        (Signal.TRACES, spans_body(a_span(name="n\x00"))),
    ],
    ids=lambda v: v.name if isinstance(v, Signal) else None,
)
def test_given_a_request_the_python_path_must_handle_when_written_fast_then_it_is_left_to_it(
    signal: Signal, body: bytes
) -> None:
    assert fast_rows(signal, body) is None


@pytest.mark.parametrize(
    "body",
    [
        b"\x0a\x05\x12\x03\x0a\x01",  # truncated
        b"\x0b\x0c",  # a group
        b"\x0a\x04\x0a\x02\x0a\xff",  # a length past the end
        b"\x0a\x09\x12\x07\x12\x05\x2a\x03\xff\xfe\xfd",  # not UTF-8 where a string is
    ],
)
def test_given_bytes_that_do_not_parse_when_written_fast_then_they_are_left_to_the_python_path(body: bytes) -> None:
    assert fast_rows(Signal.LOGS, body) is None
    assert fast_rows(Signal.TRACES, body) is None


def test_given_limits_of_the_call_when_written_fast_then_they_are_the_ones_applied() -> None:
    body = logs_body(a_log(attributes=key_values({"a": 1, "b": 2, "c": 3})))
    assert fast_rows(Signal.LOGS, body, IngestLimits(max_attributes=2)) is None
    assert assert_same_rows(Signal.LOGS, body, IngestLimits(max_attributes=3))


# --- any request -------------------------------------------------------------------------------------------------


# Mostly what an SDK sends, now and then what the Python path must reject (then the fast path must not take it).
def _mostly(usual: Any, *odd: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from([usual] * (3 * len(odd) + 3) + list(odd))


_keys = st.sampled_from(["service.name", "http.route", "k", "ключ", "a.b.c", "x" * 256, ""]) | _mostly("ok", "x" * 257)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=10),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=8,
)
_attributes = st.dictionaries(_keys, _values, max_size=5)
_times = _mostly(NOW - 3 * S, 0, NOW - 8 * 86_400 * S, NOW - 7 * 86_400 * S + S, NOW + 3600 * S, NOW + 3601 * S)
_ids16 = _mostly(TRACE, bytes(16), b"", b"\x01" * 15, bytes(15) + b"\x07")
_ids8 = _mostly(SPAN, bytes(8), b"", b"\x02" * 7, bytes(7) + b"\x09")


@st.composite
def _log_records(draw: st.DrawFn) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        time_unix_nano=draw(_times),
        observed_time_unix_nano=draw(_times),
        severity_number=draw(st.integers(0, 24) | _mostly(9, 25, 26)),
        severity_text=draw(_mostly("INFO", "", "Warn\x00")),
        body=any_value(draw(st.one_of(st.text(max_size=30), st.none(), st.integers(0, 3)))),
        attributes=key_values(draw(_attributes)),
        trace_id=draw(_ids16),
        span_id=draw(_ids8),
        flags=draw(_mostly(0, 1, 2**31)),
        event_name=draw(st.sampled_from(["", "e"])),
    )


@st.composite
def _spans(draw: st.DrawFn) -> trace_pb2.Span:
    start = draw(_times)
    return trace_pb2.Span(
        trace_id=draw(_ids16),
        span_id=draw(_mostly(b"", bytes(8), b"\x01" * 9)),  # b"": a distinct id, given by the request's builder
        parent_span_id=draw(_ids8),
        name=draw(_mostly("op", "", "ö" * 512, "ö" * 513)),
        kind=draw(st.integers(0, 5) | _mostly(1, 6, -1)),
        start_time_unix_nano=start,
        end_time_unix_nano=start + draw(_mostly(MS, 0, -1)) if start else 0,
        attributes=key_values(draw(_attributes)),
        events=[
            trace_pb2.Span.Event(time_unix_nano=t, name=n, attributes=key_values(a))
            for t, n, a in draw(st.lists(st.tuples(_times, st.text(max_size=5), _attributes), max_size=2))
        ],
        links=[
            trace_pb2.Span.Link(trace_id=t, span_id=s, trace_state=ts, attributes=key_values(a))
            for t, s, ts, a in draw(
                st.lists(st.tuples(_ids16, _ids8, st.sampled_from(["", "k=v"]), _attributes), max_size=2)
            )
        ],
        status=trace_pb2.Status(code=draw(_mostly(0, 1, 2, 3)), message=draw(st.sampled_from(["", "bad"]))),
        flags=draw(st.sampled_from([0, 256])),
    )


_resources = st.builds(
    lambda service, extra: resource(None, **{"service_name": service} if service is not None else {}, **extra),
    _mostly("checkout", None, 3),
    st.dictionaries(st.sampled_from(["host_name", "region"]), _values, max_size=2),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_resources, st.lists(_log_records(), min_size=1, max_size=4)), min_size=1, max_size=2))
def test_given_any_logs_request_when_written_fast_then_it_agrees_with_the_python_path(groups: list[Any]) -> None:
    body = ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(resource=res, scope_logs=[logs_pb2.ScopeLogs(scope=scope("s"), log_records=records)])
            for res, records in groups
        ]
    ).SerializeToString()
    batch = decode_otlp(Signal.LOGS, body, encoding="protobuf", now_ns=NOW)
    taken = assert_same_rows(Signal.LOGS, body) if not batch.rejected else fast_rows(Signal.LOGS, body) is not None
    event(f"fast path: {taken}")
    assert not (batch.rejected and taken), "a request with a rejected item must take the Python path"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_resources, st.lists(_spans(), min_size=1, max_size=4))
def test_given_any_traces_request_when_written_fast_then_it_agrees_with_the_python_path(
    res: Any, spans: list[Any]
) -> None:
    for i, span in enumerate(spans):
        if not span.span_id:
            span.span_id = (i + 1).to_bytes(8, "big")
    if len(spans) > 1 and spans[-1].span_id == bytes(8):
        spans[-1].CopyFrom(spans[0])  # now and then the same span twice (a retried export)
    body = spans_body(*spans, res=res)
    batch = decode_otlp(Signal.TRACES, body, encoding="protobuf", now_ns=NOW)
    taken = assert_same_rows(Signal.TRACES, body) if not batch.rejected else fast_rows(Signal.TRACES, body) is not None
    event(f"fast path: {taken}")
    assert not (batch.rejected and taken), "a request with a rejected item must take the Python path"


# --- metric points -----------------------------------------------------------------------------------------------

CUMULATIVE, DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE, metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


def metrics_body(*metrics: metrics_pb2.Metric, res: Any = None) -> bytes:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=res if res is not None else resource("checkout", host_name="web-1"),
                scope_metrics=[metrics_pb2.ScopeMetrics(scope=scope("meter"), metrics=list(metrics))],
            )
        ]
    ).SerializeToString()


def a_point(**fields: Any) -> metrics_pb2.NumberDataPoint:
    return metrics_pb2.NumberDataPoint(**{"time_unix_nano": NOW - 10 * S, "as_double": 1.5, **fields})


def gauge(*points: metrics_pb2.NumberDataPoint, name: str = "queue.size") -> metrics_pb2.Metric:
    return metrics_pb2.Metric(name=name, unit="1", gauge=metrics_pb2.Gauge(data_points=list(points)))


def histogram(*points: metrics_pb2.HistogramDataPoint, temporality: int = CUMULATIVE) -> metrics_pb2.Metric:
    return metrics_pb2.Metric(
        name="http.server.duration",
        unit="ms",
        histogram=metrics_pb2.Histogram(aggregation_temporality=temporality, data_points=list(points)),  # type: ignore[arg-type]
    )


def test_given_metric_requests_when_written_fast_then_rows_and_series_are_the_python_paths() -> None:
    assert assert_same_rows(Signal.METRICS, many_points_request(400, NOW).SerializeToString())
    # every metric type: gauge, sums, histogram, exponential histogram (negative buckets), summary
    assert assert_same_rows(Signal.METRICS, metrics_request(NOW).SerializeToString())


def test_given_points_of_every_shape_when_written_fast_then_each_column_is_the_python_paths() -> None:
    exemplars = [
        metrics_pb2.Exemplar(time_unix_nano=NOW - 11 * S, as_int=7, trace_id=TRACE, span_id=SPAN),
        metrics_pb2.Exemplar(time_unix_nano=NOW - 12 * S, as_double=math.nan, filtered_attributes=key_values({"u": 1})),
        metrics_pb2.Exemplar(time_unix_nano=NOW - 13 * S, trace_id=bytes(16), span_id=b"short"),  # no value, no ids
    ]
    body = metrics_body(
        gauge(
            a_point(as_int=-(2**63), attributes=key_values({"k": "a"})),
            a_point(as_double=1e308, attributes=key_values({"k": "b"}), start_time_unix_nano=NOW - 20 * S),
            a_point(as_double=-0.0, attributes=key_values({"k": "c"}), flags=0, exemplars=exemplars),
            a_point(attributes=key_values({"k": "c"}), flags=1),  # NO_RECORDED_VALUE: skipped
        ),
        metrics_pb2.Metric(
            name="requests",
            sum=metrics_pb2.Sum(
                aggregation_temporality=DELTA,
                is_monotonic=True,
                data_points=[a_point(as_int=3, start_time_unix_nano=NOW - 70 * S)],
            ),
        ),
        histogram(
            metrics_pb2.HistogramDataPoint(time_unix_nano=NOW - 10 * S, count=0),  # no buckets, no sum/min/max
            metrics_pb2.HistogramDataPoint(
                time_unix_nano=NOW - 9 * S,
                count=2**63 - 1,
                sum=0.0,
                min=-1e300,
                max=1e300,
                explicit_bounds=[0.1, 1e16, 2.5],
                bucket_counts=[0, 2**63 - 1, 3, 1],
                exemplars=exemplars[:1],
                attributes=key_values({"route": "/a"}),
            ),
            metrics_pb2.HistogramDataPoint(time_unix_nano=NOW - 8 * S, count=1, explicit_bounds=[1.0]),  # bounds only
        ),
        metrics_pb2.Metric(name="empty"),  # no data: nothing
    )
    assert assert_same_rows(Signal.METRICS, body)


@pytest.mark.parametrize(
    "point",
    [
        a_point(as_double=math.inf),
        a_point(as_double=math.nan),
        metrics_pb2.HistogramDataPoint(time_unix_nano=NOW - S, count=1, sum=math.inf),
        metrics_pb2.HistogramDataPoint(time_unix_nano=NOW - S, count=1, max=-math.inf),
        metrics_pb2.HistogramDataPoint(time_unix_nano=NOW - S, count=2**64 - 1),
        metrics_pb2.HistogramDataPoint(
            time_unix_nano=NOW - S, count=1, explicit_bounds=[1.0], bucket_counts=[2**64 - 1, 0]
        ),
    ],
    ids=["inf", "nan", "sum-inf", "max-minus-inf", "count-u64", "bucket-u64"],
)
def test_given_numbers_the_python_path_rejects_when_written_then_the_c_path_leaves_them(point: Any) -> None:
    # Given a point whose number is not finite, or past bigint
    if isinstance(point, metrics_pb2.HistogramDataPoint):
        body = metrics_body(histogram(point))
    else:
        body = metrics_body(gauge(point))
    # When the C path reads it, Then it leaves the request to the Python path, which rejects the point
    assert fast_rows(Signal.METRICS, body) is None
    rejected = decode_otlp(Signal.METRICS, body, encoding="protobuf", now_ns=NOW).rejected
    assert len(rejected) == 1 and ("finite" in rejected[0].reason or "larger than" in rejected[0].reason)


@pytest.mark.parametrize(("trace_id", "span_id"), [(b"\x01\x02", b""), (b"", b"short"), (TRACE, bytes(9))])
def test_given_a_log_id_of_the_wrong_size_when_written_then_the_record_is_rejected(
    trace_id: bytes, span_id: bytes
) -> None:
    # Given a log record whose trace or span id has the wrong size (OTLP/JSON "xyz" decodes to 2 bytes)
    body = logs_body(a_log(trace_id=trace_id, span_id=span_id), a_log())
    # Then the C path leaves it, and the Python path rejects that record with the reason, keeping the other
    assert fast_rows(Signal.LOGS, body) is None
    batch = decode_otlp(Signal.LOGS, body, encoding="protobuf", now_ns=NOW)
    assert len(batch.logs) == 1 and [r.index for r in batch.rejected] == [0]
    assert "must be" in batch.rejected[0].reason


def test_given_resource_and_point_attributes_when_written_fast_then_the_series_ids_are_the_python_paths() -> None:
    # merged, the point's value winning; sorted as json.dumps(sort_keys=True) sorts, nested maps included
    res = resource("checkout", zone="b", region="eu", **{"ünï": 1})
    points = [
        a_point(attributes=key_values({"region": "us", "a": {"z": 1, "b": [{"y": 2, "x": None}]}, "Z": b"\x00"})),
        a_point(attributes=key_values({"é": "\x00 nul", "e": 1.0, "f": 1e16, "g": True, "h": -5})),
        a_point(attributes=key_values({})),
    ]
    body = metrics_body(*(gauge(p, name=f"m{i}") for i, p in enumerate(points)), res=res)
    assert assert_same_rows(Signal.METRICS, body)
    body = metrics_body(gauge(*points[:1]), res=resource(None))  # no resource attributes at all
    assert assert_same_rows(Signal.METRICS, body)


@pytest.mark.parametrize(
    "body",
    [
        metrics_body(gauge(metrics_pb2.NumberDataPoint(time_unix_nano=NOW - S))),  # no value: rejected
        metrics_body(gauge(a_point(), a_point())),  # the same series and time twice: the copy is dropped
        metrics_body(gauge(a_point(time_unix_nano=NOW - 8 * 86_400 * S))),  # too old
        metrics_body(gauge(a_point(), name="")),  # no name
        metrics_body(gauge(a_point(), name="n" * 513)),
        metrics_body(histogram(metrics_pb2.HistogramDataPoint(time_unix_nano=NOW - S), temporality=0)),
        metrics_body(
            histogram(metrics_pb2.HistogramDataPoint(time_unix_nano=NOW - S, explicit_bounds=[1], bucket_counts=[1]))
        ),
        metrics_body(
            gauge(a_point(attributes=key_values({f"k{i}": i for i in range(127)})))
        ),  # 129 with the resource's
        metrics_body(gauge(a_point(attributes=[KeyValue(key="k", value=any_value(1))] * 2))),  # duplicate key
        metrics_body(gauge(a_point(flags=2**31 + 2))),
        metrics_body(
            gauge(a_point()),
            metrics_pb2.Metric(
                name="queue.size", sum=metrics_pb2.Sum(aggregation_temporality=CUMULATIVE, data_points=[a_point()])
            ),
        ),  # one series, two types
    ],
)
def test_given_metrics_the_python_path_must_handle_when_written_fast_then_they_are_left_to_it(body: bytes) -> None:
    assert fast_rows(Signal.METRICS, body) is None


_point_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(lambda v: {"as_int": v}), st.floats().map(lambda v: {"as_double": v})
)


@st.composite
def _metrics(draw: st.DrawFn) -> metrics_pb2.Metric:
    kind = draw(_mostly("gauge", "sum", "histogram", "exponential", "summary", "nothing"))
    name = draw(_mostly("m", "", "ö" * 513)) + str(draw(st.integers(0, 3)))
    times = [draw(_times) for _ in range(draw(st.integers(1, 3)))]
    if kind in ("gauge", "sum", "nothing"):
        points = [
            metrics_pb2.NumberDataPoint(
                time_unix_nano=t,
                attributes=key_values(draw(_attributes)),
                flags=draw(_mostly(0, 1)),
                **(draw(_point_values) if kind != "nothing" else {}),
            )
            for t in times
        ]
        data = metrics_pb2.Gauge(data_points=points) if kind != "sum" else None
        if kind == "sum":
            return metrics_pb2.Metric(
                name=name,
                sum=metrics_pb2.Sum(
                    aggregation_temporality=draw(_mostly(CUMULATIVE, DELTA, 0)),
                    is_monotonic=draw(st.booleans()),
                    data_points=points,
                ),
            )
        return metrics_pb2.Metric(name=name, gauge=data)
    if kind == "exponential":
        return metrics_pb2.Metric(
            name=name,
            exponential_histogram=metrics_pb2.ExponentialHistogram(
                aggregation_temporality=draw(_mostly(DELTA, 0)),
                data_points=[
                    metrics_pb2.ExponentialHistogramDataPoint(
                        time_unix_nano=t,
                        attributes=key_values(draw(_attributes)),
                        count=draw(st.integers(0, 2**64 - 1)),
                        scale=draw(st.integers(-(2**31), 2**31 - 1)),
                        zero_count=draw(st.integers(0, 2**64 - 1)),
                        zero_threshold=draw(st.floats()),
                        positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
                            offset=draw(st.integers(-(2**31), 2**31 - 1)),
                            bucket_counts=draw(st.lists(st.integers(0, 2**64 - 1), max_size=4)),
                        ),
                        **({"negative": metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=-3, bucket_counts=[1])}
                           if draw(st.booleans()) else {}),
                        **{k: draw(st.floats()) for k in ("sum", "min", "max") if draw(st.booleans())},
                        flags=draw(_mostly(0, 1)),
                    )
                    for t in times
                ],
            ),
        )  # fmt: skip
    if kind == "summary":
        return metrics_pb2.Metric(
            name=name,
            summary=metrics_pb2.Summary(
                data_points=[
                    metrics_pb2.SummaryDataPoint(
                        time_unix_nano=t,
                        attributes=key_values(draw(_attributes)),
                        count=draw(st.integers(0, 2**63 - 1)),
                        sum=draw(st.floats()),
                        quantile_values=[
                            metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=q, value=v)
                            for q, v in draw(st.lists(st.tuples(st.floats(0, 1), st.floats()), max_size=3))
                        ],
                    )
                    for t in times
                ]
            ),
        )
    points_h = []
    for t in times:
        bounds = draw(st.lists(st.floats(allow_nan=False), max_size=3))
        counts = draw(
            st.lists(st.integers(0, 2**64 - 1), min_size=len(bounds) + 1, max_size=len(bounds) + 1) | st.just([])
        )
        optional = {k: draw(st.floats()) for k in ("sum", "min", "max") if draw(st.booleans())}
        points_h.append(
            metrics_pb2.HistogramDataPoint(
                time_unix_nano=t, count=draw(st.integers(0, 2**63 - 1)), explicit_bounds=bounds, bucket_counts=counts,
                attributes=key_values(draw(_attributes)), **optional,
            )
        )  # fmt: skip
    return metrics_pb2.Metric(
        name=name,
        histogram=metrics_pb2.Histogram(aggregation_temporality=draw(_mostly(CUMULATIVE, 3)), data_points=points_h),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_resources, st.lists(_metrics(), min_size=1, max_size=4))
def test_given_any_metrics_request_when_written_fast_then_it_agrees_with_the_python_path(
    res: Any, metrics: list[Any]
) -> None:
    body = metrics_body(*metrics, res=res)
    batch = decode_otlp(Signal.METRICS, body, encoding="protobuf", now_ns=NOW)
    keys = {(series_id(p.name, p.attributes), writer.pg_time(p.time_ns)) for p in batch.metrics}
    types: dict[int, set[str]] = {}
    for p in batch.metrics:
        types.setdefault(series_id(p.name, p.attributes), set()).add(p.type.value)
    clean = not batch.rejected and len(keys) == len(batch.metrics) and all(len(t) == 1 for t in types.values())
    taken = assert_same_rows(Signal.METRICS, body) if clean else fast_rows(Signal.METRICS, body) is not None
    event(f"fast path: {taken}")
    assert clean or not taken, "a request the Python path rejects, or deduplicates, must take the Python path"


def test_given_a_request_over_the_size_limit_when_written_fast_then_it_is_left_to_the_python_path() -> None:
    # Three data points (one without a value: skipped, but counted by the limit), two allowed: the Python path's 413
    body = metrics_body(gauge(a_point(), a_point(time_unix_nano=NOW - 9 * S), a_point(flags=1, time_unix_nano=NOW - S)))
    assert fast_rows(Signal.METRICS, body, IngestLimits(max_events=3)) is not None
    assert fast_rows(Signal.METRICS, body, IngestLimits(max_events=2)) is None
    logs = logs_body(a_log(), a_log())
    assert fast_rows(Signal.LOGS, logs, IngestLimits(max_events=1)) is None


def test_given_metric_metadata_when_written_fast_then_the_python_path_reads_it() -> None:
    metric = gauge(a_point())
    metric.metadata.append(KeyValue(key="m", value=any_value("v")))
    assert fast_rows(Signal.METRICS, metrics_body(metric)) is None


# --- found by the fuzzer (tests/fuzz, docs/fuzzing.md); their inputs are replayed by every fuzz run too ----------

NOT_UTF8 = b"\x90\x8b"  # a continuation byte where a character starts: upb refuses the request


def _not_utf8(body: bytes, marker: bytes = b"zz") -> bytes:
    """The body with its one ``marker`` made invalid UTF-8 (same length: every length prefix holds)."""
    assert body.count(marker) == 1
    return body.replace(marker, NOT_UTF8)


@pytest.mark.parametrize(
    "point",
    [
        a_point(flags=1, attributes=key_values({"zz": 1})),  # a key
        a_point(flags=1, attributes=key_values({"k": "zz"})),  # a value
        a_point(flags=1, attributes=key_values({"k": [1, ["zz"]]})),  # in an array
        a_point(flags=1, attributes=key_values({"k": {"a": {"zz": 1}}})),  # in a map
        a_point(flags=1, exemplars=[metrics_pb2.Exemplar(as_int=1, filtered_attributes=key_values({"u": "zz"}))]),
    ],
    ids=["key", "value", "array", "kvlist", "exemplar"],
)
def test_given_a_point_without_value_holding_text_not_utf8_when_written_fast_then_it_is_left_to_the_python_path(
    point: metrics_pb2.NumberDataPoint,
) -> None:
    # The fast path skipped a NO_RECORDED_VALUE point without reading it; the Python path refuses the whole body.
    body = _not_utf8(metrics_body(gauge(a_point(), point)))
    with pytest.raises(InvalidInput):
        decode_otlp(Signal.METRICS, body, encoding="protobuf", now_ns=NOW)
    assert fast_rows(Signal.METRICS, body) is None
    assert assert_same_rows(Signal.METRICS, metrics_body(gauge(a_point(), point)))  # valid: still taken


_Z = struct.unpack("<d", b"ZZZZZZZZ")[0]  # a double whose bytes mark its place in the body
_NO_VALUE = {"time_unix_nano": NOW - 10 * S, "flags": 1}
_Buckets = metrics_pb2.ExponentialHistogramDataPoint.Buckets
_Quantile = metrics_pb2.SummaryDataPoint.ValueAtQuantile


@pytest.mark.parametrize(
    ("metric", "part", "broken"),
    [
        (  # a quantile's second field tagged 0 (no field has number 0)
            metrics_pb2.Metric(
                name="q",
                summary=metrics_pb2.Summary(
                    data_points=[
                        metrics_pb2.SummaryDataPoint(time_unix_nano=NOW - 9 * S, count=1, sum=1.0),
                        metrics_pb2.SummaryDataPoint(**_NO_VALUE, quantile_values=[_Quantile(quantile=0.5, value=_Z)]),
                    ]
                ),
            ),
            b"\x11ZZZZZZZZ",
            b"\x00ZZZZZZZZ",
        ),
        (  # packed bucket counts whose last varint runs past the end
            metrics_pb2.Metric(
                name="e",
                exponential_histogram=metrics_pb2.ExponentialHistogram(
                    aggregation_temporality=DELTA,
                    data_points=[
                        metrics_pb2.ExponentialHistogramDataPoint(time_unix_nano=NOW - 9 * S, count=1),
                        metrics_pb2.ExponentialHistogramDataPoint(
                            **_NO_VALUE, positive=_Buckets(offset=1, bucket_counts=[0x55, 0x56])
                        ),
                    ],
                ),
            ),
            b"\x12\x02\x55\x56",
            b"\x12\x02\x55\xd6",
        ),
        (  # packed bounds of 6 bytes (doubles are 8)
            histogram(
                metrics_pb2.HistogramDataPoint(time_unix_nano=NOW - 9 * S, count=1),
                metrics_pb2.HistogramDataPoint(**_NO_VALUE, explicit_bounds=[_Z]),
            ),
            b"\x3a\x08ZZZZZZZZ",
            b"\x3a\x06ZZZZZZ\x78\x00",
        ),
    ],
    ids=["summary-quantile", "exponential-buckets", "histogram-bounds"],
)
def test_given_a_point_without_value_whose_parts_do_not_parse_when_written_fast_then_it_is_left_to_the_python_path(
    metric: metrics_pb2.Metric, part: bytes, broken: bytes
) -> None:
    # The fast path skipped the NO_RECORDED_VALUE point unread; upb reads it and refuses the whole body.
    body = metrics_body(metric)
    assert body.count(part) == 1
    assert assert_same_rows(Signal.METRICS, body)
    body = body.replace(part, broken)
    with pytest.raises(InvalidInput):
        decode_otlp(Signal.METRICS, body, encoding="protobuf", now_ns=NOW)
    assert fast_rows(Signal.METRICS, body) is None


def test_given_exponential_histogram_buckets_without_counts_when_written_fast_then_they_are_the_python_paths() -> None:
    # Under UBSan, NULL + 0 where a Buckets had no bucket_counts (or the point no Buckets); these rows must hold.
    buckets = metrics_pb2.ExponentialHistogramDataPoint.Buckets
    points = [
        metrics_pb2.ExponentialHistogramDataPoint(time_unix_nano=NOW - 10 * S, count=1, scale=2),
        metrics_pb2.ExponentialHistogramDataPoint(
            time_unix_nano=NOW - 9 * S, count=2, positive=buckets(offset=3), negative=buckets(offset=-1)
        ),
    ]
    metric = metrics_pb2.Metric(
        name="latency",
        exponential_histogram=metrics_pb2.ExponentialHistogram(aggregation_temporality=DELTA, data_points=points),
    )
    assert assert_same_rows(Signal.METRICS, metrics_body(metric))


def test_given_a_span_event_without_a_name_when_written_fast_then_it_is_the_python_paths() -> None:
    # Under UBSan, NULL + 0 where the event's absent name was written as "".
    assert assert_same_rows(Signal.TRACES, spans_body(a_span(events=[trace_pb2.Span.Event(time_unix_nano=NOW - S)])))


def test_given_a_metric_name_with_a_nul_when_written_then_the_python_path_stores_it_as_u_fffd() -> None:
    # Given a metric whose name holds a NUL (the Python path names its series with U+FFFD in its place)
    body = metrics_body(gauge(a_point(as_double=1.0), name="queue.\x00depth"))
    # Then the C path leaves it (its series id would be computed from the raw name), and Python takes it
    assert fast_rows(Signal.METRICS, body) is None
    (point,) = decode_otlp(Signal.METRICS, body, encoding="protobuf", now_ns=NOW).metrics
    assert point.name == "queue.\ufffddepth"
