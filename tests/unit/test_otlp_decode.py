"""OTLP/HTTP request bodies (binary protobuf and OTLP/JSON) → Batch: mapping, per-item rejection, refusal."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.errors import InvalidInput, PayloadTooLarge
from observai.telemetry.limits import IngestLimits
from observai.telemetry.model import Batch, MetricType, Signal, Temporality
from observai.telemetry.otlp import decode_otlp
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.helpers import otlp_payloads as p

NOW = 1_750_000_000 * p.S
ENCODINGS = ["protobuf", "json"]


def body_of(message: Any, encoding: str) -> bytes:
    return p.to_protobuf(message) if encoding == "protobuf" else p.to_otlp_json(message)


def decode(signal: Signal, message: Any, encoding: str, **kwargs: Any) -> Batch:
    return decode_otlp(signal, body_of(message, encoding), encoding=encoding, now_ns=NOW, **kwargs)  # type: ignore[arg-type]


# --- traces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_traces_map_every_field(encoding: str) -> None:
    # Given two resources, three scopes, a parent/child pair with events and a link, and every kind
    # When the request is decoded
    batch = decode(Signal.TRACES, p.traces_request(NOW), encoding)
    # Then every span is accepted, in order, with OTLP's semantics kept
    assert batch.rejected == []
    assert len(batch.spans) == 7
    root, child, *others, worker = batch.spans
    start = NOW - 60 * p.S

    assert root.trace_id == p.TRACE_ID_A.hex() == "5b8efff798038103d269b633813fc60c"
    assert root.span_id == p.ROOT_SPAN_ID.hex()
    assert root.parent_span_id is None
    assert root.name == "GET /checkout"
    assert root.kind == "server"
    assert root.status_code == "ok"
    assert root.status_message is None
    assert root.start_time_ns == start
    assert root.end_time_ns == start + 250 * p.MS
    assert root.trace_state == "rojo=00f067aa0ba902b7"
    assert root.flags == 0x301
    assert root.service == "checkout"
    assert root.attributes == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "url.path": "/checkout",
        "retry": False,
    }
    assert root.resource == {
        "service.name": "checkout",
        "deployment.environment": "prod",
        "host.name": "web-1",
        "telemetry.sdk.language": "python",
    }
    assert root.scope == {
        "name": "opentelemetry.instrumentation.flask",
        "version": "0.48b0",
        "attributes": {"component": "http"},
    }
    assert root.events == [
        {
            "time_ns": start + 10 * p.MS,
            "name": "cache.miss",
            "attributes": {"cache.key": "cart:42"},
            "dropped_attributes_count": 2,
        }
    ]
    assert root.links == [
        {
            "trace_id": p.TRACE_ID_B.hex(),
            "span_id": p.LINKED_SPAN_ID.hex(),
            "trace_state": "congo=t61rcWkgMzE",
            "attributes": {"link.reason": "batch"},
            "flags": 1,
        }
    ]

    assert child.parent_span_id == root.span_id
    assert child.kind == "client"
    assert child.status_code == "error"
    assert child.status_message == "statement timeout"
    assert child.attributes == {"db.system": "postgresql", "db.rows": 3, "db.duration_ratio": 0.25}
    assert [e["name"] for e in child.events] == ["retry", "exception"]
    assert child.events[1]["attributes"] == {"exception.type": "TimeoutError", "exception.stacktrace": ["a", "b"]}
    assert "dropped_attributes_count" not in child.events[0]
    assert child.links == []

    assert [(s.name, s.kind, s.status_code) for s in others] == [
        ("kind 0", "internal", "unset"),  # SPAN_KIND_UNSPECIFIED → internal
        ("kind 1", "internal", "unset"),
        ("kind 4", "producer", "unset"),
        ("kind 5", "consumer", "unset"),
    ]
    assert all(s.scope == {"name": "manual", "version": None, "attributes": {}} for s in others)

    assert worker.service == "worker"
    assert worker.kind == "consumer"
    assert worker.trace_id == p.TRACE_ID_B.hex()
    assert worker.attributes == {"messaging.system": "sqs", "payload": base64.b64encode(b"\x00\x01\xff").decode()}
    assert worker.resource == {"service.name": "worker"}
    assert worker.scope == {"name": "celery", "version": "5.4.0", "attributes": {}}


def test_traces_json_from_the_spec_example() -> None:
    # Given opentelemetry-proto's examples/trace.json, as written there (upper-case hex ids, numbers
    # for the 64-bit times, an integer kind)
    spec_json = b"""{"resourceSpans": [{"resource": {"attributes": [{"key": "service.name",
      "value": {"stringValue": "my.service"}}]}, "scopeSpans": [{"scope": {"name": "my.library",
      "version": "1.0.0", "attributes": [{"key": "my.scope.attribute", "value": {"stringValue":
      "some scope attribute"}}]}, "spans": [{"traceId": "5B8EFFF798038103D269B633813FC60C",
      "spanId": "EEE19B7EC3C1B174", "parentSpanId": "EEE19B7EC3C1B173", "name": "I'm a server span",
      "startTimeUnixNano": 1544712660000000000, "endTimeUnixNano": 1544712661000000000, "kind": 2,
      "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}]}]}]}]}"""
    # When it is decoded at a time just after it
    batch = decode_otlp(Signal.TRACES, spec_json, encoding="json", now_ns=1544712662000000000)
    # Then the span reads as the example means it
    (span,) = batch.spans
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.span_id == "eee19b7ec3c1b174"
    assert span.parent_span_id == "eee19b7ec3c1b173"
    assert span.name == "I'm a server span"
    assert span.kind == "server"
    assert (span.start_time_ns, span.end_time_ns) == (1544712660000000000, 1544712661000000000)
    assert span.service == "my.service"
    assert span.attributes == {"my.span.attr": "some value"}
    assert span.scope == {
        "name": "my.library",
        "version": "1.0.0",
        "attributes": {"my.scope.attribute": "some scope attribute"},
    }


def test_json_accepts_int64_as_strings_or_numbers_upper_hex_snake_case_and_ignores_unknown_fields() -> None:
    # Given the same request spelled four ways the spec (or common leniency) allows
    document = p.to_otlp_dict(p.traces_request(NOW), upper_hex=True)
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert isinstance(span["startTimeUnixNano"], str)  # protobuf's JSON mapping writes int64 as strings
    as_numbers = copy.deepcopy(document)
    numbers_span = as_numbers["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    numbers_span["startTimeUnixNano"] = int(numbers_span["startTimeUnixNano"])
    numbers_span["endTimeUnixNano"] = int(numbers_span["endTimeUnixNano"])
    with_unknown = copy.deepcopy(document)
    with_unknown["futureField"] = {"x": 1}
    with_unknown["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["someNewField"] = [1, 2]
    with_unknown["resourceSpans"][0]["resource"]["entityRefs2"] = "?"
    snake = p.to_otlp_dict(p.traces_request(NOW), snake_case=True)
    expected = decode(Signal.TRACES, p.traces_request(NOW), "protobuf").spans
    for variant in (document, as_numbers, with_unknown, snake):
        # When each is decoded
        batch = decode_otlp(Signal.TRACES, json.dumps(variant).encode(), encoding="json", now_ns=NOW)
        # Then they all give the same spans as the protobuf body
        assert batch.rejected == []
        assert batch.spans == expected


def test_json_ids_sent_as_base64_are_read_as_protobuf_json() -> None:
    # Given an exporter that sends protobuf's standard JSON (base64 ids) instead of OTLP's hex
    document = p.to_otlp_dict(p.traces_request(NOW), hex_ids=False)
    # When decoded
    batch = decode_otlp(Signal.TRACES, json.dumps(document).encode(), encoding="json", now_ns=NOW)
    # Then the ids are the same bytes
    assert [s.span_id for s in batch.spans] == [
        s.span_id for s in decode(Signal.TRACES, p.traces_request(NOW), "protobuf").spans
    ]


# --- logs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_logs_map_every_field(encoding: str) -> None:
    # Given a record per severity, structured bodies, trace correlation, an observed-time-only record, an event
    batch = decode(Signal.LOGS, p.logs_request(NOW), encoding)
    # Then all are accepted with their fields
    assert batch.rejected == []
    assert len(batch.logs) == 30
    base = NOW - 30 * p.S
    by_severity = batch.logs[:25]
    assert [r.severity_number for r in by_severity] == list(range(25))
    assert by_severity[0].severity_text is None
    assert [r.severity_text for r in by_severity[1:]] == [t for t in p.SEVERITY_TEXTS for _ in range(4)]
    first = by_severity[3]
    assert first.time_ns == base + 3 * p.MS
    assert first.observed_time_ns == base + 3 * p.MS + 1
    assert first.body == "message 3"
    assert first.attributes == {"n": 3}
    assert first.service == "checkout"
    assert first.resource["host.name"] == "web-1"
    assert first.scope == {"name": "app.logger", "version": "2.0", "attributes": {}}
    assert first.trace_id is None and first.span_id is None
    assert first.event_name is None

    kvlist, array, correlated, observed_only, event = batch.logs[25:]
    assert kvlist.body == '{"event":"login","user":{"id":42,"admin":false},"ratio":0.5}'
    assert json.loads(kvlist.body) == {"event": "login", "user": {"id": 42, "admin": False}, "ratio": 0.5}
    assert kvlist.attributes == {"code.function": "login"}
    assert kvlist.observed_time_ns is None
    assert array.body == '["a",1,true]'
    assert correlated.trace_id == p.TRACE_ID_A.hex()
    assert correlated.span_id == p.CHILD_SPAN_ID.hex()
    assert correlated.flags == 1
    assert (correlated.severity_number, correlated.severity_text, correlated.body) == (17, "ERROR", "payment failed")
    # time_unix_nano 0: the observed time stands in (the logs data model: use the event time if present)
    assert observed_only.time_ns == base + 103 * p.MS
    assert observed_only.observed_time_ns == base + 103 * p.MS
    assert event.event_name == "browser.page_view"
    assert event.body == '{"url":"/"}'


def test_logs_json_from_the_spec_example() -> None:
    spec_json = json.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
                    "scopeLogs": [
                        {
                            "scope": {"name": "my.library", "version": "1.0.0"},
                            "logRecords": [
                                {
                                    "timeUnixNano": 1544712660300000000,
                                    "observedTimeUnixNano": 1544712660300000000,
                                    "severityText": "Information",
                                    "traceId": "5B8EFFF798038103D269B633813FC60C",
                                    "spanId": "EEE19B7EC3C1B174",
                                    "body": {"stringValue": "Example log record"},
                                    "attributes": [
                                        {"key": "string.attribute", "value": {"stringValue": "some string"}},
                                        {"key": "boolean.attribute", "value": {"boolValue": True}},
                                        {"key": "int.attribute", "value": {"intValue": 10}},
                                        {"key": "double.attribute", "value": {"doubleValue": 637.704}},
                                        {
                                            "key": "array.attribute",
                                            "value": {
                                                "arrayValue": {
                                                    "values": [{"stringValue": "many"}, {"stringValue": "values"}]
                                                }
                                            },
                                        },
                                        {
                                            "key": "map.attribute",
                                            "value": {
                                                "kvlistValue": {
                                                    "values": [
                                                        {"key": "some.map.key", "value": {"stringValue": "some value"}}
                                                    ]
                                                }
                                            },
                                        },
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()
    batch = decode_otlp(Signal.LOGS, spec_json, encoding="json", now_ns=1544712661000000000)
    (record,) = batch.logs
    assert record.time_ns == 1544712660300000000
    assert record.severity_text == "Information"
    assert record.severity_number == 0
    assert record.body == "Example log record"
    assert record.trace_id == "5b8efff798038103d269b633813fc60c"
    assert record.span_id == "eee19b7ec3c1b174"
    assert record.service == "my.service"
    assert record.attributes == {
        "string.attribute": "some string",
        "boolean.attribute": True,
        "int.attribute": 10,
        "double.attribute": 637.704,
        "array.attribute": ["many", "values"],
        "map.attribute": {"some.map.key": "some value"},
    }


# --- metrics --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_metrics_map_every_type(encoding: str) -> None:
    # Given every metric type, and a point flagged NO_RECORDED_VALUE
    batch = decode(Signal.METRICS, p.metrics_request(NOW), encoding)
    # Then every point but the flagged one is accepted (the flagged one is not a rejection either)
    assert batch.rejected == []
    assert [m.name for m in batch.metrics] == [
        "system.memory.usage",
        "system.memory.usage",
        "http.server.requests",
        "queue.depth.change",
        "http.server.duration",
        "temperature.delta",
        "rpc.latency",
    ]
    t = NOW - 10 * p.S
    start = NOW - 70 * p.S
    resource = {
        "service.name": "checkout",
        "deployment.environment": "prod",
        "host.name": "web-1",
        "telemetry.sdk.language": "python",
    }
    scope = {"name": "app.meter", "version": "1.2.3", "attributes": {}}
    gauge_int, gauge_double, counter, updown, histogram, exponential, summary = batch.metrics
    assert all(m.scope == scope and m.time_ns == t for m in batch.metrics)
    assert [m.index for m in batch.metrics] == [0, 1, 3, 4, 5, 6, 7]  # ordinal 2 is the NO_RECORDED_VALUE point

    assert gauge_int.type is MetricType.GAUGE
    assert gauge_int.value == 1_048_576.0 and isinstance(gauge_int.value, float)
    assert gauge_int.attributes == {**resource, "state": "used"}
    assert (gauge_int.unit, gauge_int.description) == ("By", "Memory in use")
    assert gauge_int.start_time_ns is None
    assert (gauge_int.monotonic, gauge_int.temporality, gauge_int.distribution, gauge_int.exemplars) == (
        None,
        None,
        None,
        None,
    )
    assert gauge_double.value == 0.75

    assert counter.type is MetricType.SUM
    assert counter.value == 1234.0
    assert counter.monotonic is True
    assert counter.temporality is Temporality.CUMULATIVE
    assert counter.start_time_ns == start
    assert counter.unit == "{request}" and counter.description is None
    # resource attributes merged under the point's: the point's service.name wins
    assert counter.attributes == {**resource, "service.name": "checkout-override", "http.route": "/checkout"}
    assert counter.exemplars == [
        {
            "time_ns": t - p.S,
            "value": 1.0,
            "attributes": {"user.id": "u1"},
            "trace_id": p.TRACE_ID_A.hex(),
            "span_id": p.ROOT_SPAN_ID.hex(),
        }
    ]

    assert updown.type is MetricType.SUM
    assert (updown.value, updown.monotonic, updown.temporality) == (-3.5, False, Temporality.DELTA)
    assert updown.attributes == resource

    assert histogram.type is MetricType.HISTOGRAM
    assert histogram.temporality is Temporality.CUMULATIVE
    assert (histogram.count, histogram.sum, histogram.min, histogram.max) == (6, 321.5, 1.5, 200.0)
    assert histogram.distribution == {"bounds": [10.0, 100.0], "counts": [2, 3, 1]}
    assert histogram.value is None
    assert histogram.exemplars == [
        {"time_ns": t - 2 * p.S, "value": 200.0, "attributes": {}, "trace_id": None, "span_id": None}
    ]

    assert exponential.type is MetricType.EXPONENTIAL_HISTOGRAM
    assert exponential.temporality is Temporality.DELTA
    assert (exponential.count, exponential.sum, exponential.min, exponential.max) == (10, -4.25, -8.0, 6.0)
    assert exponential.distribution == {
        "scale": 3,
        "zero_count": 1,
        "zero_threshold": 0.001,
        "positive": {"offset": 2, "counts": [1, 2, 1]},
        "negative": {"offset": -1, "counts": [3, 0, 2]},
    }

    assert summary.type is MetricType.SUMMARY
    assert summary.temporality is None
    assert (summary.count, summary.sum) == (100, 12.5)
    assert summary.distribution == {"quantiles": [[0.0, 0.01], [0.5, 0.1], [1.0, 0.9]]}


def test_histogram_without_optional_sum_min_max() -> None:
    request = p.metrics_request(NOW)
    point = request.resource_metrics[0].scope_metrics[0].metrics[3].histogram.data_points[0]
    point.ClearField("sum")
    point.ClearField("min")
    point.ClearField("max")
    for encoding in ENCODINGS:
        histogram = decode(Signal.METRICS, request, encoding).metrics[4]
        assert (histogram.count, histogram.sum, histogram.min, histogram.max) == (6, None, None, None)


def test_metrics_json_from_the_spec_example() -> None:
    point = {"startTimeUnixNano": 1544712660300000000, "timeUnixNano": 1544712660300000000}
    spec_json = json.dumps(
        {
            "resourceMetrics": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
                    "scopeMetrics": [
                        {
                            "scope": {"name": "my.library", "version": "1.0.0"},
                            "metrics": [
                                {
                                    "name": "my.counter",
                                    "unit": "1",
                                    "description": "I am a Counter",
                                    "sum": {
                                        "aggregationTemporality": 1,
                                        "isMonotonic": True,
                                        "dataPoints": [
                                            {
                                                "asDouble": 5,
                                                **point,
                                                "attributes": [
                                                    {"key": "my.counter.attr", "value": {"stringValue": "some value"}}
                                                ],
                                            }
                                        ],
                                    },
                                },
                                {
                                    "name": "my.gauge",
                                    "unit": "1",
                                    "description": "I am a Gauge",
                                    "gauge": {
                                        "dataPoints": [
                                            {
                                                "asDouble": 10,
                                                "timeUnixNano": 1544712660300000000,
                                                "attributes": [
                                                    {"key": "my.gauge.attr", "value": {"stringValue": "some value"}}
                                                ],
                                            }
                                        ]
                                    },
                                },
                                {
                                    "name": "my.histogram",
                                    "unit": "1",
                                    "description": "I am a Histogram",
                                    "histogram": {
                                        "aggregationTemporality": 1,
                                        "dataPoints": [
                                            {
                                                **point,
                                                "count": 3,
                                                "sum": 3,
                                                "bucketCounts": [1, 1, 1],
                                                "explicitBounds": [1],
                                                "min": 1,
                                                "max": 1,
                                                "attributes": [
                                                    {"key": "my.histogram.attr", "value": {"stringValue": "some value"}}
                                                ],
                                            }
                                        ],
                                    },
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()
    # The example's histogram has 3 bucket_counts for 1 explicit bound, which metrics.proto forbids
    # ("the number of elements in bucket_counts array must be by one greater than ... explicit_bounds"):
    # it is rejected with the reason, the rest accepted.
    batch = decode_otlp(Signal.METRICS, spec_json, encoding="json", now_ns=1544712661000000000)
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (2, "bucket_counts has 3 elements for 1 explicit_bounds (must be one more)")
    ]
    assert len(batch.metrics) == 2
    fixed = spec_json.replace(b'"explicitBounds": [1]', b'"explicitBounds": [1, 2]')
    assert fixed != spec_json
    batch = decode_otlp(Signal.METRICS, fixed, encoding="json", now_ns=1544712661000000000)
    assert batch.rejected == []
    counter, gauge, histogram = batch.metrics
    assert (counter.value, counter.monotonic, counter.temporality) == (5.0, True, Temporality.DELTA)
    assert counter.attributes == {"service.name": "my.service", "my.counter.attr": "some value"}
    assert gauge.value == 10.0
    assert histogram.distribution == {"bounds": [1.0, 2.0], "counts": [1, 1, 1]}
    assert (histogram.count, histogram.sum, histogram.min, histogram.max) == (3, 3.0, 1.0, 1.0)


def test_non_finite_doubles_in_attributes_become_json_strings() -> None:
    request = p.metrics_request(NOW)
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    point.attributes.extend(p.key_values({"nan": math.nan, "inf": math.inf, "ninf": -math.inf}))
    for encoding in ENCODINGS:
        attrs = decode(Signal.METRICS, request, encoding).metrics[0].attributes
        assert (attrs["nan"], attrs["inf"], attrs["ninf"]) == ("NaN", "Infinity", "-Infinity")


# --- per-item rejection ---------------------------------------------------------------------------


def _span(**overrides: Any) -> trace_pb2.Span:
    fields: dict[str, Any] = {
        "trace_id": p.TRACE_ID_A,
        "span_id": p.ROOT_SPAN_ID,
        "name": "ok",
        "start_time_unix_nano": NOW - p.S,
        "end_time_unix_nano": NOW,
    }
    fields.update(overrides)
    return trace_pb2.Span(**fields)


def _traces(*spans: trace_pb2.Span, resource_attrs: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=p.resource("svc", **(resource_attrs or {})),
                scope_spans=[trace_pb2.ScopeSpans(scope=p.scope("s"), spans=list(spans))],
            )
        ]
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_invalid_spans_are_rejected_one_by_one_with_the_reason(encoding: str) -> None:
    limits = IngestLimits(max_name_length=20, max_attributes=3, max_value_length=10)
    cases: list[tuple[trace_pb2.Span, str | None]] = [
        (_span(), None),
        (_span(trace_id=b""), "trace_id must be 16 bytes, got 0"),
        (_span(trace_id=b"\x01" * 8), "trace_id must be 16 bytes, got 8"),
        (_span(trace_id=bytes(16)), "trace_id must not be all zeroes"),
        (_span(span_id=b""), "span_id must be 8 bytes, got 0"),
        (_span(span_id=b"\x01" * 16), "span_id must be 8 bytes, got 16"),
        (_span(parent_span_id=b"\x01\x02"), "parent_span_id must be 8 bytes or empty, got 2"),
        (_span(name=""), "name is empty"),
        (_span(name="x" * 21), "name is longer than 20 characters"),
        (_span(end_time_unix_nano=NOW - 2 * p.S), "end_time_unix_nano is before start_time_unix_nano"),
        (_span(start_time_unix_nano=0, end_time_unix_nano=0), "start_time_unix_nano is missing or zero"),
        (
            _span(start_time_unix_nano=NOW - 8 * 86_400 * p.S, end_time_unix_nano=NOW),
            "start_time_unix_nano is more than 7 days in the past",
        ),
        (
            _span(start_time_unix_nano=NOW + 2 * 3600 * p.S, end_time_unix_nano=NOW + 2 * 3600 * p.S),
            "start_time_unix_nano is more than 60 minutes in the future",
        ),
        (_span(attributes=p.key_values({"a": 1, "b": 2, "c": 3, "d": 4})), "attributes: 4 keys, more than 3"),
        (_span(attributes=p.key_values({"a": "y" * 11})), "attributes.a: value longer than 10 characters"),
        (
            _span(
                events=[trace_pb2.Span.Event(time_unix_nano=NOW, name="e", attributes=p.key_values({"k": "z" * 11}))]
            ),
            "events[0].attributes.k: value longer than 10 characters",
        ),
        (
            _span(links=[trace_pb2.Span.Link(trace_id=p.TRACE_ID_B, span_id=b"")]),
            "links[0].span_id must be 8 bytes, got 0",
        ),
        (_span(kind=9), "kind 9 is not a SpanKind (0 to 5)"),  # type: ignore[arg-type]
        (_span(status=trace_pb2.Status(code=7)), "status.code 7 is not a StatusCode (0 to 2)"),  # type: ignore[arg-type]
        (_span(parent_span_id=bytes(8)), None),  # an all-zero parent is "no parent"
    ]
    # Given one good span, then one span per way of being invalid
    batch = decode(Signal.TRACES, _traces(*(span for span, _ in cases)), encoding, limits=limits)
    # Then each bad span is rejected at its ordinal with its reason, the good ones pass
    expected = [(i, reason) for i, (_, reason) in enumerate(cases) if reason]
    assert [(r.index, r.reason) for r in batch.rejected] == expected
    assert all(r.signal is Signal.TRACES for r in batch.rejected)
    assert len(batch.spans) == 2
    assert batch.spans[1].parent_span_id is None


def test_a_resource_over_the_limits_rejects_its_items() -> None:
    limits = IngestLimits(max_attributes=2)
    batch = decode(Signal.TRACES, _traces(_span(), _span(), resource_attrs={"a": 1, "b": 2}), "protobuf", limits=limits)
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (0, "resource.attributes: 3 keys, more than 2"),
        (1, "resource.attributes: 3 keys, more than 2"),
    ]


def _logs(*records: logs_pb2.LogRecord) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=p.resource("svc"), scope_logs=[logs_pb2.ScopeLogs(log_records=list(records))]
            )
        ]
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_invalid_log_records_are_rejected_and_zero_ids_mean_no_trace(encoding: str) -> None:
    limits = IngestLimits(max_body_length=5)
    batch = decode(
        Signal.LOGS,
        _logs(
            logs_pb2.LogRecord(time_unix_nano=NOW, body=p.any_value("fine")),
            logs_pb2.LogRecord(body=p.any_value("no time")),
            logs_pb2.LogRecord(time_unix_nano=NOW, body=p.any_value("too long")),
            logs_pb2.LogRecord(time_unix_nano=NOW, severity_number=25),  # type: ignore[arg-type]
            logs_pb2.LogRecord(observed_time_unix_nano=NOW - 30 * 86_400 * p.S),
            # An all-zero id means "not associated with a trace"; an id of the wrong size is refused with the
            # reason (as the Collector's decoder does), never stored with its id silently removed
            logs_pb2.LogRecord(time_unix_nano=NOW, trace_id=bytes(16), span_id=bytes(8)),
            logs_pb2.LogRecord(time_unix_nano=NOW, trace_id=b"\x01\x02"),
            logs_pb2.LogRecord(time_unix_nano=NOW),  # no body at all → ""
        ),
        encoding,
        limits=limits,
    )
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (1, "time_unix_nano is missing or zero"),
        (2, "body is longer than 5 characters"),
        (3, "severity_number 25 is not a SeverityNumber (0 to 24)"),
        (4, "observed_time_unix_nano is more than 7 days in the past"),
        (6, "trace_id must be 16 bytes, got 2"),
    ]
    fine, bad_ids, empty = batch.logs
    assert fine.body == "fine"
    assert (bad_ids.trace_id, bad_ids.span_id) == (None, None)
    assert empty.body == ""


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_invalid_data_points_are_rejected(encoding: str) -> None:
    t = NOW - p.S
    number = metrics_pb2.NumberDataPoint
    metrics = [
        metrics_pb2.Metric(name="ok", gauge=metrics_pb2.Gauge(data_points=[number(time_unix_nano=t, as_int=1)])),
        metrics_pb2.Metric(name="", gauge=metrics_pb2.Gauge(data_points=[number(time_unix_nano=t, as_int=1)] * 2)),
        metrics_pb2.Metric(
            name="no.temporality", sum=metrics_pb2.Sum(data_points=[number(time_unix_nano=t, as_int=1)])
        ),
        metrics_pb2.Metric(name="no.value", gauge=metrics_pb2.Gauge(data_points=[number(time_unix_nano=t)])),
        metrics_pb2.Metric(name="old", gauge=metrics_pb2.Gauge(data_points=[number(time_unix_nano=1, as_int=1)])),
        metrics_pb2.Metric(
            name="buckets",
            histogram=metrics_pb2.Histogram(
                aggregation_temporality=p.DELTA,
                data_points=[
                    metrics_pb2.HistogramDataPoint(time_unix_nano=t, count=1, explicit_bounds=[1.0], bucket_counts=[1]),
                    metrics_pb2.HistogramDataPoint(time_unix_nano=t, count=0),  # no buckets at all is allowed
                ],
            ),
        ),
        metrics_pb2.Metric(name="no.data"),  # no data points: nothing to count
        metrics_pb2.Metric(
            name="x" * 600, gauge=metrics_pb2.Gauge(data_points=[number(time_unix_nano=t, as_int=1, flags=1)])
        ),
    ]
    request = ExportMetricsServiceRequest(
        resource_metrics=[metrics_pb2.ResourceMetrics(scope_metrics=[metrics_pb2.ScopeMetrics(metrics=metrics)])]
    )
    batch = decode(Signal.METRICS, request, encoding)
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (1, "metric name is empty"),
        (2, "metric name is empty"),
        (3, "sum.aggregation_temporality 0 is not delta (1) or cumulative (2)"),
        (4, "data point has no value (as_int or as_double)"),
        (5, "time_unix_nano is more than 7 days in the past"),
        (6, "bucket_counts has 1 elements for 1 explicit_bounds (must be one more)"),
    ]
    assert [(m.name, m.index) for m in batch.metrics] == [("ok", 0), ("buckets", 7)]
    assert batch.metrics[0].scope == {"name": None, "version": None, "attributes": {}}
    assert batch.metrics[0].attributes == {}


def test_resource_and_point_attributes_together_over_the_limit_are_rejected() -> None:
    # Given 4 resource attributes and max_attributes 4: points adding a key of their own go over
    batch = decode(Signal.METRICS, p.metrics_request(NOW), "protobuf", limits=IngestLimits(max_attributes=4))
    assert batch.rejected[0].reason == "attributes: 5 keys with the resource's, more than 4"
    assert [r.index for r in batch.rejected] == [0, 1, 3, 5]
    assert [m.name for m in batch.metrics] == ["queue.depth.change", "temperature.delta", "rpc.latency"]


def test_a_json_id_that_is_not_hex_is_read_as_base64_and_its_length_checked_per_span() -> None:
    document = p.to_otlp_dict(_traces(_span(), _span()))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["traceId"] = "AAE/"  # not hex; base64 of 3 bytes
    batch = decode_otlp(Signal.TRACES, json.dumps(document).encode(), encoding="json", now_ns=NOW)
    assert len(batch.spans) == 1
    assert [(r.index, r.reason) for r in batch.rejected] == [(1, "trace_id must be 16 bytes, got 3")]


# --- whole-request refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "message", "count", "noun"),
    [
        (Signal.TRACES, p.many_spans_request(11, NOW), 11, "spans"),
        (Signal.LOGS, p.many_logs_request(11, NOW), 11, "log records"),
        (Signal.METRICS, p.many_points_request(11, NOW), 11, "data points"),
    ],
)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_more_items_than_allowed_refuse_the_request(
    signal: Signal, message: Any, count: int, noun: str, encoding: str
) -> None:
    with pytest.raises(PayloadTooLarge, match=f"carries {count} {noun}, more than the 10 allowed"):
        decode(signal, message, encoding, limits=IngestLimits(max_events=10))
    assert decode(signal, message, encoding, limits=IngestLimits(max_events=11)).accepted == count


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("protobuf", b"\xff\xff\xff\xff", "not a valid protobuf ExportTraceServiceRequest"),
        ("protobuf", p.to_protobuf(p.traces_request(NOW))[:-7], "not a valid protobuf ExportTraceServiceRequest"),
        ("json", b'{"resourceSpans": [', "not valid JSON"),
        ("json", b'{"resourceSpans": "\xff"}', "not UTF-8 JSON"),
        ("json", b"[]", "must be a JSON object"),
        ("json", b'"resourceSpans"', "must be a JSON object"),
        ("json", b'{"resourceSpans": {"a": 1}}', "not a valid OTLP/JSON ExportTraceServiceRequest"),
        (
            "json",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
            "startTimeUnixNano",
        ),
        ("json", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 12}]}]}]}', "not a valid OTLP/JSON"),
        (
            "json",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-an-id!"}]}]}]}',
            "traceId field: Invalid base64",
        ),
        ("json", b"[" * 100_000, "not valid JSON"),
    ],
)
def test_undecodable_bodies_are_invalid_input(encoding: str, body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_otlp(Signal.TRACES, body, encoding=encoding, now_ns=NOW)  # type: ignore[arg-type]


def test_an_empty_request_is_an_empty_batch() -> None:
    for signal in Signal:
        assert decode_otlp(signal, b"", encoding="protobuf", now_ns=NOW) == Batch()
        assert decode_otlp(signal, b"{}", encoding="json", now_ns=NOW) == Batch()


def test_deeply_nested_attribute_values_are_invalid_input_not_a_crash() -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(200):
        value = {"arrayValue": {"values": [value]}}
    document = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": str(NOW), "body": value}]}]}]}
    with pytest.raises(InvalidInput):
        decode_otlp(Signal.LOGS, json.dumps(document).encode(), encoding="json", now_ns=NOW)

    # protobuf: the library refuses to build such a message, so write the wire bytes by hand
    def field(tag: int, payload: bytes) -> bytes:
        length, out = len(payload), bytearray([tag])
        while length > 0x7F:
            out.append(length & 0x7F | 0x80)
            length >>= 7
        out.append(length)
        return bytes(out) + payload

    nested = bytes(p.any_value("leaf").SerializeToString())
    for _ in range(200):
        nested = field(0x2A, field(0x0A, nested))  # AnyValue.array_value { values: [nested] }
    record = field(0x2A, nested)  # LogRecord.body
    body = field(0x0A, field(0x12, field(0x12, record)))  # resource_logs { scope_logs { log_records } }
    with pytest.raises(InvalidInput, match="not a valid protobuf ExportLogsServiceRequest"):
        decode_otlp(Signal.LOGS, body, encoding="protobuf", now_ns=NOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signal=st.sampled_from(list(Signal)), body=st.binary(max_size=512))
def test_no_random_protobuf_body_raises_anything_but_invalid_input(signal: Signal, body: bytes) -> None:
    with contextlib.suppress(InvalidInput, PayloadTooLarge):
        decode_otlp(signal, body, encoding="protobuf", now_ns=NOW, limits=IngestLimits(max_events=50))


@settings(max_examples=200, deadline=None)
@given(signal=st.sampled_from(list(Signal)), body=st.binary(max_size=256))
def test_no_random_json_body_raises_anything_but_invalid_input(signal: Signal, body: bytes) -> None:
    with contextlib.suppress(InvalidInput, PayloadTooLarge):
        decode_otlp(signal, body, encoding="json", now_ns=NOW)


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceSpans",
                    "scopeSpans",
                    "spans",
                    "resourceLogs",
                    "scopeLogs",
                    "logRecords",
                    "resourceMetrics",
                    "scopeMetrics",
                    "metrics",
                    "gauge",
                    "sum",
                    "histogram",
                    "dataPoints",
                    "exemplars",
                    "traceId",
                    "spanId",
                    "parentSpanId",
                    "links",
                    "attributes",
                    "key",
                    "value",
                    "stringValue",
                    "arrayValue",
                    "values",
                    "body",
                    "timeUnixNano",
                    "asInt",
                    "kind",
                    "name",
                    "resource",
                    "scope",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    signal=st.sampled_from(list(Signal)),
    document=st.dictionaries(
        st.sampled_from(["resourceSpans", "resourceLogs", "resourceMetrics", "x"]), _json_values, max_size=2
    ),
)
def test_no_json_document_of_the_wrong_shape_raises_anything_but_invalid_input(
    signal: Signal, document: dict[str, Any]
) -> None:
    with contextlib.suppress(InvalidInput, PayloadTooLarge):
        decode_otlp(signal, json.dumps(document).encode(), encoding="json", now_ns=NOW)
