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

import functools
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Required, TypedDict

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config

from observai.errors import InvalidInput, PayloadTooLarge
from observai.telemetry import native_fast
from observai.telemetry.limits import (
    BIGINT_MAX,
    DEFAULT_LIMITS,
    NOT_FINITE,
    UNFORESEEN,
    IngestLimits,
    check_attributes,
    check_point_numbers,
    check_span_times,
    check_time,
    unforeseen,
)
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
from observai.text import may_hold_surrogates, storable, storable_text, utf8_text

HexTraceId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$")]
HexSpanId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{16}$")]
EventId = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=512)]

# OTLP SeverityNumber: the first number of each range.
SEVERITY_NUMBERS = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17, "fatal": 21}


# TypedDicts rather than models: pydantic validates them in Rust without building model instances
# (about half the cost per event, measured), and the converter reads plain dicts.
class _Event(TypedDict, total=False):
    time: datetime  # RFC 3339; without an offset, UTC
    time_unix_nano: Annotated[int, Field(gt=0)]
    service: Annotated[str, Field(max_length=256)]
    attributes: dict[str, Any]
    resource: dict[str, Any]
    event_id: EventId


@with_config(ConfigDict(extra="forbid"))
class MetricEvent(_Event, total=False):
    type: Required[Literal["metric"]]
    name: Required[Name]
    kind: Literal["gauge", "sum", "histogram", "summary"]  # default gauge
    value: float | None
    unit: Annotated[str, Field(max_length=64)]
    description: Annotated[str, Field(max_length=1024)]
    monotonic: bool  # sum only; default true
    temporality: Literal["cumulative", "delta"]  # sum and histogram; default cumulative
    start_time: datetime
    count: Annotated[int, Field(ge=0)]
    sum: float
    min: float
    max: float
    bounds: list[float]  # histogram: explicit bucket upper bounds
    bucket_counts: list[Annotated[int, Field(ge=0)]]  # histogram: len(bounds) + 1 counts
    quantiles: list[tuple[float, float]]  # summary: [[0.5, 12.0], [0.99, 80.0]]


@with_config(ConfigDict(extra="forbid"))
class LogEvent(_Event, total=False):
    type: Required[Literal["log"]]
    body: Required[str | dict[str, Any] | list[Any]]
    severity: Annotated[str, Field(max_length=32)] | Annotated[int, Field(ge=0, le=24)]
    trace_id: HexTraceId
    span_id: HexSpanId
    event_name: Annotated[str, Field(max_length=256)]


@with_config(ConfigDict(extra="forbid"))
class SpanEventIn(TypedDict, total=False):
    name: Required[Name]
    time: Required[datetime]
    attributes: dict[str, Any]


@with_config(ConfigDict(extra="forbid"))
class SpanLinkIn(TypedDict, total=False):
    trace_id: Required[HexTraceId]
    span_id: Required[HexSpanId]
    attributes: dict[str, Any]


@with_config(ConfigDict(extra="forbid"))
class SpanEvent(_Event, total=False):
    type: Required[Literal["span"]]
    trace_id: Required[HexTraceId]
    span_id: Required[HexSpanId]
    parent_span_id: HexSpanId
    name: Required[Name]
    kind: Literal["internal", "server", "client", "producer", "consumer"]  # default internal
    start_time: Required[datetime]
    end_time: datetime
    duration_ms: Annotated[float, Field(ge=0)]
    status: Literal["unset", "ok", "error"]  # default unset
    status_message: Annotated[str, Field(max_length=1024)]
    events: Annotated[list[SpanEventIn], Field(max_length=128)]
    links: Annotated[list[SpanLinkIn], Field(max_length=128)]


Event = Annotated[MetricEvent | LogEvent | SpanEvent, Field(discriminator="type")]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@functools.cache
def _adapters() -> tuple[TypeAdapter[Any], TypeAdapter[Any]]:
    """The pydantic validators of a batch and of one event, built at first use (tens of ms): the msgspec fast path
    takes clean batches without them, so a cold start does not pay for them."""
    return TypeAdapter(list[Event]), TypeAdapter(Event)


def batch_schema(ref_template: str) -> dict[str, Any]:
    """JSON Schema of a native batch (for the OpenAPI document)."""
    return _adapters()[0].json_schema(ref_template=ref_template)


def to_ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # RFC 3339 without an offset: read as UTC
    return (value - _EPOCH) // _MICROSECOND * 1_000  # exact integer arithmetic, in C


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


def decode_native(
    body: bytes, *, now_ns: int, limits: IngestLimits = DEFAULT_LIMITS, lazy: bool = False, fast: bool = True
) -> Batch:
    """Validate a native batch: the whole list in one pass when it is clean, event by event when not. ``lazy``:
    the events are left to convert as the writer takes them (``Batch.pending``). ``fast``: msgspec first
    (``native_fast``), pydantic when msgspec refuses the body; False: pydantic only (the tests compare both)."""
    events: list[Any] | None = native_fast.decode(body) if fast else None
    if events is None:
        try:
            events = _adapters()[0].validate_json(body)
        except ValidationError as exc:
            events = _validate_each(body, exc, limits)
    if len(events) > limits.max_events:
        raise PayloadTooLarge(
            f"A batch holds at most {limits.max_events} events; this one has {len(events)}",
            details={"limit_events": limits.max_events},
        )
    batch = Batch()
    by_type: dict[str, list[int]] = {"metric": [], "log": [], "span": []}
    for index, event in enumerate(events):
        if event.__class__ is Rejection:
            batch.rejected.append(event)
        else:
            by_type[event["type"]].append(index)
    # Converted as the writer takes them (Batch.pending), while Postgres stores what it took before.
    for kind, signal in (("metric", Signal.METRICS), ("log", Signal.LOGS), ("span", Signal.TRACES)):
        if by_type[kind]:
            batch.pending[signal] = _converting(events, by_type[kind], batch, now_ns, limits)
    return batch if lazy else batch.complete()


def _converting(events: list[Any], indexes: list[int], batch: Batch, now: int, limits: IngestLimits) -> Iterator[None]:
    """Convert the events at ``indexes`` into ``batch`` one per step (a record or a rejection)."""
    for index in indexes:
        event = events[index]
        try:
            reason = _convert(event, batch, now, limits, index)
        except UNFORESEEN as exc:
            reason = unforeseen(exc)
        if reason is not None:
            batch.rejected.append(Rejection(index, reason, _SIGNAL[event["type"]]))
        yield None


def _validate_each(body: bytes, whole_error: ValidationError, limits: IngestLimits) -> list[Any]:
    text = utf8_text(body)  # never U+FFFD in place of bytes that are not UTF-8: 400
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("The request body is not valid JSON", code="malformed_json") from exc
    except RecursionError:  # nesting deeper than the parser's stack: a client error, never a 500
        raise InvalidInput("The request body is nested too deeply", code="malformed_json") from None
    if not isinstance(raw, list):
        raise InvalidInput("The body must be a JSON list of events", code="not_a_list") from whole_error
    if may_hold_surrogates(body):  # msgspec and pydantic refuse lone surrogates; stored as U+FFFD instead
        raw = storable(raw)
    if len(raw) > limits.max_events:
        raise PayloadTooLarge(
            f"A batch holds at most {limits.max_events} events; this one has {len(raw)}",
            details={"limit_events": limits.max_events},
        )
    out: list[Any] = []
    for index, item in enumerate(raw):
        try:
            out.append(_adapters()[1].validate_python(item))
        except ValidationError as exc:
            signal = _SIGNAL.get(str(item.get("type"))) if isinstance(item, dict) else None
            out.append(Rejection(index, _reason(exc), signal))
    return out


_SIGNAL = {"metric": Signal.METRICS, "log": Signal.LOGS, "span": Signal.TRACES}
_NO_ATTRIBUTES: dict[str, Any] = {}


def _convert(event: dict[str, Any], batch: Batch, now: int, limits: IngestLimits, index: int) -> str | None:
    attributes = event.get("attributes", _NO_ATTRIBUTES)
    problem = check_attributes(attributes, limits)
    if problem:
        return problem
    if "resource" in event:
        problem = check_attributes(event["resource"], limits, "resource")
        if problem:
            return problem
    kind = event["type"]
    if kind == "span":
        return _span(event, attributes, batch, now, limits)
    if "time_unix_nano" in event:
        time_ns = event["time_unix_nano"]
    else:
        time = event.get("time")
        time_ns = to_ns(time) if time is not None else now
    problem = check_time(time_ns, now, limits)
    if problem:
        return problem
    resource = _resource(event)
    if kind == "metric":
        return _metric(event, attributes, batch, time_ns, resource, index)
    body = event["body"]
    if body.__class__ is not str:
        body = json.dumps(body, separators=(",", ":"))
    if len(body) > limits.max_body_length:
        return f"body: longer than {limits.max_body_length} characters"
    severity = event.get("severity")
    text = severity if severity.__class__ is str else None
    number = SEVERITY_NUMBERS.get(text.lower(), 0) if text is not None else (severity or 0)
    trace_id, span_id = event.get("trace_id"), event.get("span_id")
    batch.logs.append(
        LogRecord(
            time_ns=time_ns,
            body=body,
            severity_number=number,
            severity_text=text,
            service=resource.get("service.name"),
            attributes=attributes,
            resource=resource,
            observed_time_ns=now,
            trace_id=trace_id.lower() if trace_id else None,
            span_id=span_id.lower() if span_id else None,
            event_id=event.get("event_id"),
            event_name=event.get("event_name"),
        )
    )
    return None


_SERVICE_RESOURCES: dict[str, dict[str, Any]] = {}


def _resource(event: dict[str, Any]) -> dict[str, Any]:
    """The event's resource with service.name; events naming only a service share one dict (encoded once).

    Shared dicts are never mutated: records only read their resource.
    """
    service = event.get("service")
    if "resource" in event:
        resource = dict(event["resource"])
        if service:
            resource["service.name"] = service
        return resource
    if not service:
        return _NO_ATTRIBUTES
    shared = _SERVICE_RESOURCES.get(service)
    if shared is None:
        if len(_SERVICE_RESOURCES) > 10_000:
            _SERVICE_RESOURCES.clear()
        shared = _SERVICE_RESOURCES[service] = {"service.name": service}
    return shared


def _metric(
    event: dict[str, Any], attributes: dict[str, Any], batch: Batch, time_ns: int, resource: dict[str, Any], index: int
) -> str | None:
    kind = MetricType(event.get("kind", "gauge"))
    distribution: dict[str, Any] | None = None
    count = event.get("count")
    if kind is MetricType.GAUGE or kind is MetricType.SUM:
        value = event.get("value")
        if value is None:
            return f"value: required for a {kind.value}"
        if value - value != 0:  # NaN or ±Infinity (1e400 parses as infinity): a query could never show it
            return f"value: {NOT_FINITE}"
    elif kind is MetricType.HISTOGRAM:
        bounds, bucket_counts = event.get("bounds"), event.get("bucket_counts")
        if count is None or bounds is None or bucket_counts is None:
            return "histogram: count, bounds and bucket_counts are required"
        if len(bucket_counts) != len(bounds) + 1:
            return "histogram: bucket_counts must have one more entry than bounds"
        if sorted(bounds) != bounds:
            return "histogram: bounds must be increasing"
        if sum(bucket_counts) != count:
            return "histogram: bucket_counts must add up to count"
        if not all(math.isfinite(b) for b in bounds):
            return "bounds: must be finite numbers"
        distribution = {"bounds": bounds, "counts": bucket_counts}
    else:
        quantiles = event.get("quantiles")
        if count is None or quantiles is None:
            return "summary: count and quantiles are required"
        if any(not 0 <= q <= 1 for q, _ in quantiles):
            return "summary: quantiles must be between 0 and 1"
        distribution = {"quantiles": [[q, v] for q, v in quantiles]}
    if distribution is not None:
        problem = check_point_numbers(
            None, count, (event.get("sum"), event.get("min"), event.get("max")), event.get("bucket_counts")
        )
        if problem:
            return problem
    temporality_name = event.get("temporality")
    temporality = Temporality(temporality_name) if temporality_name else None
    if temporality is None and (kind is MetricType.SUM or kind is MetricType.HISTOGRAM):
        temporality = Temporality.CUMULATIVE
    start_time = event.get("start_time")
    batch.metrics.append(
        MetricPoint(
            name=storable_text(event["name"]),  # the series' identity: the name as stored
            type=kind,
            time_ns=time_ns,
            attributes={**resource, **attributes} if resource else attributes,
            unit=event.get("unit"),
            description=event.get("description"),
            start_time_ns=to_ns(start_time) if start_time else None,
            value=event.get("value"),
            monotonic=event.get("monotonic", True) if kind is MetricType.SUM else None,
            temporality=temporality,
            count=count,
            sum=event.get("sum"),
            min=event.get("min"),
            max=event.get("max"),
            distribution=distribution,
            event_id=event.get("event_id"),
            index=index,
        )
    )
    return None


def _span(
    event: dict[str, Any], attributes: dict[str, Any], batch: Batch, now: int, limits: IngestLimits
) -> str | None:
    start = to_ns(event["start_time"])
    problem = check_time(start, now, limits, "start_time")
    if problem:
        return problem
    if "end_time" in event:
        end = to_ns(event["end_time"])
    elif "duration_ms" in event:
        duration_ms = event["duration_ms"]
        if not duration_ms * 1_000_000 <= BIGINT_MAX:  # 1e308 (or infinity) would overflow the stored duration
            return f"duration_ms: longer than {BIGINT_MAX // 1_000_000} ms"
        end = start + int(duration_ms * 1_000_000)
    else:
        return "end_time or duration_ms is required"
    problem = check_span_times(start, end)
    if problem:
        return problem
    events = event.get("events", ())
    for item in events:
        problem = check_attributes(item.get("attributes", _NO_ATTRIBUTES), limits, "events.attributes")
        if problem:
            return problem
    resource = _resource(event)
    parent = event.get("parent_span_id")
    batch.spans.append(
        Span(
            trace_id=event["trace_id"].lower(),
            span_id=event["span_id"].lower(),
            name=event["name"],
            start_time_ns=start,
            end_time_ns=end,
            parent_span_id=parent.lower() if parent else None,
            kind=event.get("kind", "internal"),
            service=resource.get("service.name"),
            status_code=event.get("status", "unset"),
            status_message=event.get("status_message"),
            attributes=attributes,
            resource=resource,
            events=[
                {"time_ns": to_ns(e["time"]), "name": e["name"], "attributes": e.get("attributes", {})} for e in events
            ],
            links=[
                {
                    "trace_id": lk["trace_id"].lower(),
                    "span_id": lk["span_id"].lower(),
                    "attributes": lk.get("attributes", {}),
                }
                for lk in event.get("links", ())
            ],
            event_id=event.get("event_id"),
        )
    )
    return None
