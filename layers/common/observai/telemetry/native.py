"""Our own batch format: a JSON list of events, each a metric point, a log record or a span.

    [{"type": "metric", "name": "http.server.duration", "kind": "gauge", "value": 12.5,
      "time": "2026-11-22T10:00:00Z", "attributes": {"route": "/"}, "service": "api"},
     {"type": "log", "time": "2026-11-22T10:00:00.123Z", "severity": "error", "body": "boom",
      "service": "api", "trace_id": "5b8efff798038103d269b633813fc60c", "event_id": "evt-1"},
     {"type": "span", "trace_id": "...", "span_id": "eee19b7ec3c1b174", "name": "GET /",
      "start_time": "...", "end_time": "...", "kind": "server", "status": "ok", "service": "api"}]

Every event is validated on its own: a bad one is rejected with its index and reason, the rest go in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from observai.errors import InvalidInput, PayloadTooLarge
from observai.telemetry.limits import DEFAULT_LIMITS, IngestLimits, check_attributes, check_time
from observai.telemetry.model import (
    Batch,
    LogRecord,
    MetricPoint,
    MetricType,
    Rejection,
    Signal,
    Span,
    Temporality,
)

HexTraceId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$")]
HexSpanId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{16}$")]
EventId = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=512)]

# OTLP SeverityNumber: the first number of each range.
SEVERITY_NUMBERS = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17, "fatal": 21}


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    time: datetime | None = None
    time_unix_nano: Annotated[int, Field(gt=0)] | None = None
    service: Annotated[str, Field(max_length=256)] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    resource: dict[str, Any] = Field(default_factory=dict)
    event_id: EventId | None = None


class MetricEvent(_Event):
    type: Literal["metric"]
    name: Name
    kind: Literal["gauge", "sum", "histogram", "summary"] = "gauge"
    value: float | None = None
    unit: Annotated[str, Field(max_length=64)] | None = None
    description: Annotated[str, Field(max_length=1024)] | None = None
    monotonic: bool | None = None
    temporality: Literal["cumulative", "delta"] | None = None
    start_time: datetime | None = None
    count: Annotated[int, Field(ge=0)] | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    bounds: list[float] | None = None  # histogram: explicit bucket upper bounds
    bucket_counts: list[Annotated[int, Field(ge=0)]] | None = None  # histogram: len(bounds) + 1 counts
    quantiles: list[tuple[float, float]] | None = None  # summary: [[0.5, 12.0], [0.99, 80.0]]


class LogEvent(_Event):
    type: Literal["log"]
    body: str | dict[str, Any] | list[Any]
    severity: Annotated[str, Field(max_length=32)] | Annotated[int, Field(ge=0, le=24)] | None = None
    trace_id: HexTraceId | None = None
    span_id: HexSpanId | None = None
    event_name: Annotated[str, Field(max_length=256)] | None = None


class SpanEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    time: datetime
    attributes: dict[str, Any] = Field(default_factory=dict)


class SpanLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trace_id: HexTraceId
    span_id: HexSpanId
    attributes: dict[str, Any] = Field(default_factory=dict)


class SpanEvent(_Event):
    type: Literal["span"]
    trace_id: HexTraceId
    span_id: HexSpanId
    parent_span_id: HexSpanId | None = None
    name: Name
    kind: Literal["internal", "server", "client", "producer", "consumer"] = "internal"
    start_time: datetime
    end_time: datetime | None = None
    duration_ms: Annotated[float, Field(ge=0)] | None = None
    status: Literal["unset", "ok", "error"] = "unset"
    status_message: Annotated[str, Field(max_length=1024)] | None = None
    events: list[SpanEventIn] = Field(default_factory=list, max_length=128)
    links: list[SpanLinkIn] = Field(default_factory=list, max_length=128)


Event = Annotated[MetricEvent | LogEvent | SpanEvent, Field(discriminator="type")]
_ALL = TypeAdapter(list[Event])
_ONE: TypeAdapter[MetricEvent | LogEvent | SpanEvent] = TypeAdapter(Event)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def batch_schema(ref_template: str) -> dict[str, Any]:
    """JSON Schema of a native batch (for the OpenAPI document)."""
    return _ALL.json_schema(ref_template=ref_template)


def to_ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # RFC 3339 without an offset: read as UTC
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_TYPE_MISMATCH = {"string_type", "int_type", "int_parsing", "float_type", "float_parsing", "bool_type",
                  "dict_type", "list_type", "model_type", "union_tag_invalid"}  # fmt: skip
_UNION_BRANCH = {"str", "int", "float", "bool", "constrained-str", "constrained-int", "constrained-float"}


def _reason(error: ValidationError) -> str:
    """The most telling error of an event: for a field that takes several types, not 'wrong type' but the
    constraint the value broke (``severity: 30`` → less than or equal to 24); union branch names dropped."""
    errors = error.errors(include_url=False, include_input=False)
    first = next((e for e in errors if e["type"] not in _TYPE_MISMATCH), errors[0])
    parts = [str(p) for p in first["loc"][1:] if p not in ("metric", "log", "span")]
    loc = ".".join(p for p in parts if p not in _UNION_BRANCH and "[" not in p)
    return f"{loc}: {first['msg']}" if loc else first["msg"]


def decode_native(body: bytes, *, now_ns: int, limits: IngestLimits = DEFAULT_LIMITS) -> Batch:
    """Validate a native batch: the whole list in one pass when it is clean, event by event when not."""
    try:
        events: list[Any] = _ALL.validate_json(body)
    except ValidationError as exc:
        events = _validate_each(body, exc, limits)
    if len(events) > limits.max_events:
        raise PayloadTooLarge(
            f"A batch holds at most {limits.max_events} events; this one has {len(events)}",
            details={"limit_events": limits.max_events},
        )
    batch = Batch()
    for index, event in enumerate(events):
        if isinstance(event, Rejection):
            batch.rejected.append(event)
            continue
        reason = _convert(event, batch, now_ns, limits, index)
        if reason is not None:
            batch.rejected.append(Rejection(index, reason, _SIGNAL[event.type]))
    return batch


def _validate_each(body: bytes, whole_error: ValidationError, limits: IngestLimits) -> list[Any]:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("The request body is not valid JSON", code="malformed_json") from exc
    except RecursionError:  # nesting deeper than the parser's stack: a client error, never a 500
        raise InvalidInput("The request body is nested too deeply", code="malformed_json") from None
    if not isinstance(raw, list):
        raise InvalidInput("The body must be a JSON list of events", code="not_a_list") from whole_error
    if len(raw) > limits.max_events:
        raise PayloadTooLarge(
            f"A batch holds at most {limits.max_events} events; this one has {len(raw)}",
            details={"limit_events": limits.max_events},
        )
    out: list[Any] = []
    for index, item in enumerate(raw):
        try:
            out.append(_ONE.validate_python(item))
        except ValidationError as exc:
            signal = _SIGNAL.get(str(item.get("type"))) if isinstance(item, dict) else None
            out.append(Rejection(index, _reason(exc), signal))
    return out


_SIGNAL = {"metric": Signal.METRICS, "log": Signal.LOGS, "span": Signal.TRACES}


def _convert(
    event: MetricEvent | LogEvent | SpanEvent, batch: Batch, now: int, limits: IngestLimits, index: int
) -> str | None:
    attrs_problem = check_attributes(event.attributes, limits) or check_attributes(event.resource, limits, "resource")
    if attrs_problem:
        return attrs_problem
    if isinstance(event, SpanEvent):
        return _span(event, batch, now, limits)
    time_ns = event.time_unix_nano or (to_ns(event.time) if event.time else now)
    problem = check_time(time_ns, now, limits)
    if problem:
        return problem
    resource = _resource(event)
    if isinstance(event, MetricEvent):
        return _metric(event, batch, time_ns, resource, index)
    body = event.body if isinstance(event.body, str) else json.dumps(event.body, separators=(",", ":"))
    if len(body) > limits.max_body_length:
        return f"body: longer than {limits.max_body_length} characters"
    severity = event.severity
    number = severity if isinstance(severity, int) else SEVERITY_NUMBERS.get((severity or "").lower(), 0)
    text = severity if isinstance(severity, str) else None
    batch.logs.append(
        LogRecord(
            time_ns=time_ns,
            body=body,
            severity_number=number,
            severity_text=text,
            service=resource.get("service.name"),
            attributes=event.attributes,
            resource=resource,
            observed_time_ns=now,
            trace_id=event.trace_id.lower() if event.trace_id else None,
            span_id=event.span_id.lower() if event.span_id else None,
            event_id=event.event_id,
            event_name=event.event_name,
        )
    )
    return None


_SERVICE_RESOURCES: dict[str, dict[str, Any]] = {}


def _resource(event: _Event) -> dict[str, Any]:
    """The event's resource with service.name; events naming only a service share one dict (encoded once)."""
    if event.resource:
        resource = dict(event.resource)
        if event.service:
            resource["service.name"] = event.service
        return resource
    if not event.service:
        return {}
    shared = _SERVICE_RESOURCES.get(event.service)
    if shared is None:
        if len(_SERVICE_RESOURCES) > 10_000:
            _SERVICE_RESOURCES.clear()
        shared = _SERVICE_RESOURCES[event.service] = {"service.name": event.service}
    return shared


def _metric(event: MetricEvent, batch: Batch, time_ns: int, resource: dict[str, Any], index: int) -> str | None:
    kind = MetricType(event.kind)
    distribution: dict[str, Any] | None = None
    if kind in (MetricType.GAUGE, MetricType.SUM):
        if event.value is None:
            return f"value: required for a {kind.value}"
    elif kind is MetricType.HISTOGRAM:
        if event.count is None or event.bounds is None or event.bucket_counts is None:
            return "histogram: count, bounds and bucket_counts are required"
        if len(event.bucket_counts) != len(event.bounds) + 1:
            return "histogram: bucket_counts must have one more entry than bounds"
        if sorted(event.bounds) != event.bounds:
            return "histogram: bounds must be increasing"
        if sum(event.bucket_counts) != event.count:
            return "histogram: bucket_counts must add up to count"
        distribution = {"bounds": event.bounds, "counts": event.bucket_counts}
    elif kind is MetricType.SUMMARY:
        if event.count is None or event.quantiles is None:
            return "summary: count and quantiles are required"
        if any(not 0 <= q <= 1 for q, _ in event.quantiles):
            return "summary: quantiles must be between 0 and 1"
        distribution = {"quantiles": [[q, v] for q, v in event.quantiles]}
    temporality = Temporality(event.temporality) if event.temporality else None
    if kind in (MetricType.SUM, MetricType.HISTOGRAM) and temporality is None:
        temporality = Temporality.CUMULATIVE
    batch.metrics.append(
        MetricPoint(
            name=event.name,
            type=kind,
            time_ns=time_ns,
            attributes={**resource, **event.attributes},
            unit=event.unit,
            description=event.description,
            start_time_ns=to_ns(event.start_time) if event.start_time else None,
            value=event.value,
            monotonic=(event.monotonic if event.monotonic is not None else True) if kind is MetricType.SUM else None,
            temporality=temporality,
            count=event.count,
            sum=event.sum,
            min=event.min,
            max=event.max,
            distribution=distribution,
            event_id=event.event_id,
            index=index,
        )
    )
    return None


def _span(event: SpanEvent, batch: Batch, now: int, limits: IngestLimits) -> str | None:
    start = to_ns(event.start_time)
    problem = check_time(start, now, limits, "start_time")
    if problem:
        return problem
    if event.end_time is not None:
        end = to_ns(event.end_time)
    elif event.duration_ms is not None:
        end = start + int(event.duration_ms * 1_000_000)
    else:
        return "end_time or duration_ms is required"
    if end < start:
        return "end_time is before start_time"
    for item in event.events:
        problem = check_attributes(item.attributes, limits, "events.attributes")
        if problem:
            return problem
    resource = _resource(event)
    batch.spans.append(
        Span(
            trace_id=event.trace_id.lower(),
            span_id=event.span_id.lower(),
            name=event.name,
            start_time_ns=start,
            end_time_ns=end,
            parent_span_id=event.parent_span_id.lower() if event.parent_span_id else None,
            kind=event.kind,
            service=resource.get("service.name"),
            status_code=event.status,
            status_message=event.status_message,
            attributes=event.attributes,
            resource=resource,
            events=[{"time_ns": to_ns(e.time), "name": e.name, "attributes": e.attributes} for e in event.events],
            links=[
                {"trace_id": lk.trace_id.lower(), "span_id": lk.span_id.lower(), "attributes": lk.attributes}
                for lk in event.links
            ],
            event_id=event.event_id,
        )
    )
    return None
