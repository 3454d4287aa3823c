"""Realistic OTLP export requests built with opentelemetry-proto, in both OTLP/HTTP encodings.

Shared by the OTLP unit tests, the ingest tests and the benchmark. Every builder takes ``now_ns`` and
places its timestamps just before it, so the items pass the ingest time window. Ids are fixed and
readable (see TRACE_ID_A and friends) so tests can assert on them.

``to_protobuf(message)`` gives the application/x-protobuf body; ``to_otlp_json(message)`` the
application/json body as the OTLP spec wants it (lowerCamelCase keys, integer enums, hex trace and
span ids; 64-bit integers as strings, as protobuf's JSON mapping writes them).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

MS = 1_000_000
S = 1_000_000_000

TRACE_ID_A = bytes.fromhex("5b8efff798038103d269b633813fc60c")
TRACE_ID_B = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
ROOT_SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
CHILD_SPAN_ID = bytes.fromhex("eee19b7ec3c1b175")
LINKED_SPAN_ID = bytes.fromhex("00f067aa0ba902b7")

KINDS = {  # SpanKind number → what the model calls it
    0: "internal",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
STATUSES = {0: "unset", 1: "ok", 2: "error"}


# --- building blocks ------------------------------------------------------------------------------


def any_value(value: Any) -> AnyValue:
    """A Python value as an AnyValue: str, bool, int, float, bytes, list, dict (→ kvlist), None (empty)."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    raise TypeError(f"no AnyValue for {type(value).__name__}")


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def resource(service: str | None, **extra: Any) -> Resource:
    attributes = {"service.name": service} if service is not None else {}
    attributes.update({k.replace("_", "."): v for k, v in extra.items()})
    return Resource(attributes=key_values(attributes))


def scope(name: str, version: str = "", **attributes: Any) -> InstrumentationScope:
    return InstrumentationScope(name=name, version=version, attributes=key_values(attributes))


RESOURCE_EXTRA = {"deployment_environment": "prod", "host_name": "web-1", "telemetry_sdk_language": "python"}


# --- traces ---------------------------------------------------------------------------------------


def traces_request(now_ns: int) -> ExportTraceServiceRequest:
    """Two resources. Checkout: an HTTP server scope with a root server span (an event, a link to another
    trace, status ok) and its client child (status error with a message, two events), and a second
    scope with one span of every other kind. Worker: a consumer span in another trace."""
    start = now_ns - 60 * S
    root = trace_pb2.Span(
        trace_id=TRACE_ID_A,
        span_id=ROOT_SPAN_ID,
        trace_state="rojo=00f067aa0ba902b7",
        name="GET /checkout",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 250 * MS,
        flags=0x301,  # sampled, context has is_remote, is remote
        attributes=key_values(
            {"http.request.method": "GET", "http.response.status_code": 200, "url.path": "/checkout", "retry": False}
        ),
        events=[
            trace_pb2.Span.Event(
                time_unix_nano=start + 10 * MS,
                name="cache.miss",
                attributes=key_values({"cache.key": "cart:42"}),
                dropped_attributes_count=2,
            )
        ],
        links=[
            trace_pb2.Span.Link(
                trace_id=TRACE_ID_B,
                span_id=LINKED_SPAN_ID,
                trace_state="congo=t61rcWkgMzE",
                attributes=key_values({"link.reason": "batch"}),
                flags=0x1,
            )
        ],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_OK),
    )
    child = trace_pb2.Span(
        trace_id=TRACE_ID_A,
        span_id=CHILD_SPAN_ID,
        parent_span_id=ROOT_SPAN_ID,
        name="SELECT carts",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start + 20 * MS,
        end_time_unix_nano=start + 120 * MS,
        attributes=key_values({"db.system": "postgresql", "db.rows": 3, "db.duration_ratio": 0.25}),
        events=[
            trace_pb2.Span.Event(time_unix_nano=start + 30 * MS, name="retry", attributes=key_values({"n": 1})),
            trace_pb2.Span.Event(
                time_unix_nano=start + 119 * MS,
                name="exception",
                attributes=key_values({"exception.type": "TimeoutError", "exception.stacktrace": ["a", "b"]}),
            ),
        ],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="statement timeout"),
    )
    others = [
        trace_pb2.Span(
            trace_id=TRACE_ID_A,
            span_id=bytes([0, 0, 0, 0, 0, 0, 1, kind]),
            parent_span_id=ROOT_SPAN_ID,
            name=f"kind {kind}",
            kind=kind,  # type: ignore[arg-type]
            start_time_unix_nano=start + kind * MS,
            end_time_unix_nano=start + (kind + 1) * MS,
        )
        for kind in (0, 1, 4, 5)
    ]
    worker = trace_pb2.Span(
        trace_id=TRACE_ID_B,
        span_id=LINKED_SPAN_ID,
        name="process order",
        kind=trace_pb2.Span.SPAN_KIND_CONSUMER,
        start_time_unix_nano=start - 5 * S,
        end_time_unix_nano=start - 4 * S,
        attributes=key_values({"messaging.system": "sqs", "payload": b"\x00\x01\xff"}),
    )
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource("checkout", **RESOURCE_EXTRA),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=scope("opentelemetry.instrumentation.flask", "0.48b0", component="http"),
                        spans=[root, child],
                    ),
                    trace_pb2.ScopeSpans(scope=scope("manual"), spans=others),
                ],
                schema_url="https://opentelemetry.io/schemas/1.26.0",
            ),
            trace_pb2.ResourceSpans(
                resource=resource("worker"),
                scope_spans=[trace_pb2.ScopeSpans(scope=scope("celery", "5.4.0"), spans=[worker])],
            ),
        ]
    )


def many_spans_request(count: int, now_ns: int, *, attributes_per_span: int = 8) -> ExportTraceServiceRequest:
    """``count`` realistic server/client spans (8 attributes, one event in four) under one resource and scope."""
    spans = []
    start = now_ns - 60 * S
    for i in range(count):
        attrs: dict[str, Any] = {
            "http.request.method": "GET",
            "http.route": f"/items/{i % 20}",
            "http.response.status_code": 200 if i % 10 else 500,
            "server.address": "api.example.com",
            "user_agent.original": "python-requests/2.32",
            "net.peer.port": 44_000 + i % 100,
            "sampled": True,
            "latency_ratio": (i % 7) / 7,
        }
        spans.append(
            trace_pb2.Span(
                trace_id=(i // 10 + 1).to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=b"" if i % 10 == 0 else (i - i % 10 + 1).to_bytes(8, "big"),
                name=f"GET /items/{i % 20}",
                kind=trace_pb2.Span.SPAN_KIND_SERVER if i % 10 == 0 else trace_pb2.Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=start + i * MS,
                end_time_unix_nano=start + i * MS + 5 * MS,
                attributes=key_values(dict(list(attrs.items())[:attributes_per_span])),
                events=[
                    trace_pb2.Span.Event(
                        time_unix_nano=start + i * MS + MS, name="log", attributes=key_values({"i": i})
                    )
                ]
                if i % 4 == 0
                else [],
                status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR if i % 10 == 0 else 0),
            )
        )
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource("bench", **RESOURCE_EXTRA),
                scope_spans=[trace_pb2.ScopeSpans(scope=scope("bench.tracer", "1.0"), spans=spans)],
            )
        ]
    )


# --- logs -----------------------------------------------------------------------------------------

SEVERITY_TEXTS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def logs_request(now_ns: int) -> ExportLogsServiceRequest:
    """One log record per SeverityNumber 0..24 (string bodies), then: a kvlist body, an array body, a
    record correlated with a span, a record with time 0 and only an observed time, an event record."""
    base = now_ns - 30 * S
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=base + n * MS,
            observed_time_unix_nano=base + n * MS + 1,
            severity_number=n,  # type: ignore[arg-type]
            severity_text=SEVERITY_TEXTS[(n - 1) // 4] if n else "",
            body=any_value(f"message {n}"),
            attributes=key_values({"n": n}),
        )
        for n in range(25)
    ]
    records.append(
        logs_pb2.LogRecord(
            time_unix_nano=base + 100 * MS,
            severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
            severity_text="INFO",
            body=any_value({"event": "login", "user": {"id": 42, "admin": False}, "ratio": 0.5}),
            attributes=key_values({"code.function": "login"}),
        )
    )
    records.append(
        logs_pb2.LogRecord(time_unix_nano=base + 101 * MS, body=any_value(["a", 1, True]), severity_number=9)
    )
    records.append(
        logs_pb2.LogRecord(
            time_unix_nano=base + 102 * MS,
            severity_number=logs_pb2.SEVERITY_NUMBER_ERROR,
            severity_text="ERROR",
            body=any_value("payment failed"),
            trace_id=TRACE_ID_A,
            span_id=CHILD_SPAN_ID,
            flags=1,
        )
    )
    records.append(
        logs_pb2.LogRecord(
            time_unix_nano=0,
            observed_time_unix_nano=base + 103 * MS,
            severity_number=logs_pb2.SEVERITY_NUMBER_WARN,
            body=any_value("no event time"),
        )
    )
    records.append(
        logs_pb2.LogRecord(
            time_unix_nano=base + 104 * MS,
            event_name="browser.page_view",
            severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
            body=any_value({"url": "/"}),
        )
    )
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource("checkout", **RESOURCE_EXTRA),
                scope_logs=[logs_pb2.ScopeLogs(scope=scope("app.logger", "2.0"), log_records=records)],
            )
        ]
    )


def many_logs_request(count: int, now_ns: int) -> ExportLogsServiceRequest:
    base = now_ns - 30 * S
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=base + i * MS,
            observed_time_unix_nano=base + i * MS,
            severity_number=9 if i % 10 else 17,
            severity_text="INFO" if i % 10 else "ERROR",
            body=any_value(f"request {i} handled in {i % 50} ms"),
            attributes=key_values({"http.route": f"/items/{i % 20}", "user.id": i % 1000, "ok": bool(i % 10)}),
            trace_id=(i // 10 + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
        )
        for i in range(count)
    ]
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource("bench", **RESOURCE_EXTRA),
                scope_logs=[logs_pb2.ScopeLogs(scope=scope("bench.logger"), log_records=records)],
            )
        ]
    )


# --- metrics --------------------------------------------------------------------------------------

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def metrics_request(now_ns: int) -> ExportMetricsServiceRequest:
    """Every metric type: gauge (int and double points), monotonic cumulative sum (with an exemplar),
    non-monotonic delta sum, histogram, exponential histogram with negative buckets, summary; plus a
    gauge point flagged NO_RECORDED_VALUE (skipped, not rejected)."""
    t = now_ns - 10 * S
    start = now_ns - 70 * S
    gauge = metrics_pb2.Metric(
        name="system.memory.usage",
        unit="By",
        description="Memory in use",
        gauge=metrics_pb2.Gauge(
            data_points=[
                metrics_pb2.NumberDataPoint(
                    time_unix_nano=t, as_int=1_048_576, attributes=key_values({"state": "used"})
                ),
                metrics_pb2.NumberDataPoint(
                    time_unix_nano=t, as_double=0.75, attributes=key_values({"state": "ratio"})
                ),
                metrics_pb2.NumberDataPoint(time_unix_nano=t, flags=1, attributes=key_values({"state": "stale"})),
            ]
        ),
    )
    counter = metrics_pb2.Metric(
        name="http.server.requests",
        unit="{request}",
        sum=metrics_pb2.Sum(
            aggregation_temporality=CUMULATIVE,
            is_monotonic=True,
            data_points=[
                metrics_pb2.NumberDataPoint(
                    start_time_unix_nano=start,
                    time_unix_nano=t,
                    as_int=1234,
                    attributes=key_values({"http.route": "/checkout", "service.name": "checkout-override"}),
                    exemplars=[
                        metrics_pb2.Exemplar(
                            time_unix_nano=t - S,
                            as_int=1,
                            trace_id=TRACE_ID_A,
                            span_id=ROOT_SPAN_ID,
                            filtered_attributes=key_values({"user.id": "u1"}),
                        )
                    ],
                )
            ],
        ),
    )
    updown = metrics_pb2.Metric(
        name="queue.depth.change",
        unit="{message}",
        sum=metrics_pb2.Sum(
            aggregation_temporality=DELTA,
            is_monotonic=False,
            data_points=[metrics_pb2.NumberDataPoint(start_time_unix_nano=t - S, time_unix_nano=t, as_double=-3.5)],
        ),
    )
    histogram = metrics_pb2.Metric(
        name="http.server.duration",
        unit="ms",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=CUMULATIVE,
            data_points=[
                metrics_pb2.HistogramDataPoint(
                    start_time_unix_nano=start,
                    time_unix_nano=t,
                    count=6,
                    sum=321.5,
                    min=1.5,
                    max=200.0,
                    explicit_bounds=[10.0, 100.0],
                    bucket_counts=[2, 3, 1],
                    attributes=key_values({"http.route": "/checkout"}),
                    exemplars=[metrics_pb2.Exemplar(time_unix_nano=t - 2 * S, as_double=200.0)],
                )
            ],
        ),
    )
    exponential = metrics_pb2.Metric(
        name="temperature.delta",
        unit="Cel",
        exponential_histogram=metrics_pb2.ExponentialHistogram(
            aggregation_temporality=DELTA,
            data_points=[
                metrics_pb2.ExponentialHistogramDataPoint(
                    start_time_unix_nano=t - S,
                    time_unix_nano=t,
                    count=10,
                    sum=-4.25,
                    min=-8.0,
                    max=6.0,
                    scale=3,
                    zero_count=1,
                    zero_threshold=0.001,
                    positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=2, bucket_counts=[1, 2, 1]),
                    negative=metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=-1, bucket_counts=[3, 0, 2]),
                )
            ],
        ),
    )
    summary = metrics_pb2.Metric(
        name="rpc.latency",
        unit="s",
        summary=metrics_pb2.Summary(
            data_points=[
                metrics_pb2.SummaryDataPoint(
                    start_time_unix_nano=start,
                    time_unix_nano=t,
                    count=100,
                    sum=12.5,
                    quantile_values=[
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.0, value=0.01),
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.1),
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=1.0, value=0.9),
                    ],
                )
            ]
        ),
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource("checkout", **RESOURCE_EXTRA),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        scope=scope("app.meter", "1.2.3"),
                        metrics=[gauge, counter, updown, histogram, exponential, summary],
                    )
                ],
            )
        ]
    )


def many_points_request(count: int, now_ns: int) -> ExportMetricsServiceRequest:
    """``count`` data points: 10 cumulative counters and 10 gauges over ``count // 20`` series each... in
    practice one point per series (host × route), as an SDK's periodic export sends them."""
    t = now_ns - 10 * S
    start = now_ns - 70 * S
    per_metric = max(1, count // 20)
    metrics = []
    made = 0
    for m in range(20):
        n = min(per_metric, count - made) if m < 19 else count - made
        points = [
            metrics_pb2.NumberDataPoint(
                start_time_unix_nano=start if m % 2 == 0 else 0,
                time_unix_nano=t,
                **({"as_int": made + i} if m % 2 == 0 else {"as_double": (made + i) / 3}),  # type: ignore[arg-type]
                attributes=key_values({"http.route": f"/r/{i % 50}", "host": f"h{i // 50}", "status": "ok"}),
            )
            for i in range(n)
        ]
        made += n
        if m % 2 == 0:
            metrics.append(
                metrics_pb2.Metric(
                    name=f"bench.counter.{m}",
                    unit="1",
                    sum=metrics_pb2.Sum(aggregation_temporality=CUMULATIVE, is_monotonic=True, data_points=points),
                )
            )
        else:
            metrics.append(
                metrics_pb2.Metric(name=f"bench.gauge.{m}", unit="1", gauge=metrics_pb2.Gauge(data_points=points))
            )
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource("bench", **RESOURCE_EXTRA),
                scope_metrics=[metrics_pb2.ScopeMetrics(scope=scope("bench.meter"), metrics=metrics)],
            )
        ]
    )


# --- encodings ------------------------------------------------------------------------------------

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def to_protobuf(message: Message) -> bytes:
    return message.SerializeToString()


def to_otlp_dict(
    message: Message, *, upper_hex: bool = False, snake_case: bool = False, hex_ids: bool = True
) -> dict[str, Any]:
    """The OTLP/JSON document of ``message``: protobuf's JSON mapping with integer enums and hex ids.

    ``snake_case`` keeps the proto field names (not valid OTLP/JSON, but accepted by lenient receivers),
    ``hex_ids=False`` leaves the ids in base64 (protobuf's standard JSON, sent by some exporters).
    """
    document = json_format.MessageToDict(message, use_integers_for_enums=True, preserving_proto_field_name=snake_case)
    if hex_ids:
        _hexify(document, upper_hex)
    return document


def to_otlp_json(message: Message, *, upper_hex: bool = False) -> bytes:
    return json.dumps(to_otlp_dict(message, upper_hex=upper_hex)).encode()


def _hexify(node: Any, upper: bool) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                text = base64.b64decode(value).hex()
                node[key] = text.upper() if upper else text
            else:
                _hexify(value, upper)
    elif isinstance(node, list):
        for item in node:
            _hexify(item, upper)
