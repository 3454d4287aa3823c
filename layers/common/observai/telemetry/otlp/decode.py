"""OTLP Export*ServiceRequest → ``Batch``: map every span, log record and data point to the model, and
reject, one by one with the reason, the items that break OTLP's rules or our per-event limits.

Rejections carry the item's ordinal in the request (spans, log records or data points counted in
order across every resource and scope), which is what an OTLP partial success reports as a count.
A request with more items than ``limits.max_events`` is refused whole (PayloadTooLarge, a 413).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from observai.errors import PayloadTooLarge
from observai.telemetry.gc_pause import cyclic_gc_paused
from observai.telemetry.limits import (
    DEFAULT_LIMITS,
    UNFORESEEN,
    IngestLimits,
    check_attributes,
    check_point_numbers,
    check_span_times,
    check_time,
    unforeseen,
)
from observai.telemetry.model import (
    Attributes,
    Batch,
    LogRecord,
    MetricPoint,
    MetricType,
    RawRequest,
    Rejection,
    Signal,
    Span,
    Temporality,
)
from observai.telemetry.otlp import json_wire, wire
from observai.telemetry.otlp.attributes import attributes, body_text, json_float, scope
from observai.telemetry.otlp.parse import Encoding, parse_request
from observai.text import storable_text

SPAN_KINDS = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}
TEMPORALITIES = {1: Temporality.DELTA, 2: Temporality.CUMULATIVE}
NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
MAX_SEVERITY = 24  # SeverityNumber.SEVERITY_NUMBER_FATAL4

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_METRIC_TYPES = {
    "gauge": MetricType.GAUGE,
    "sum": MetricType.SUM,
    "histogram": MetricType.HISTOGRAM,
    "exponential_histogram": MetricType.EXPONENTIAL_HISTOGRAM,
    "summary": MetricType.SUMMARY,
}


def decode_otlp(
    signal: Signal,
    body: bytes,
    *,
    encoding: Encoding,
    now_ns: int,
    limits: IngestLimits = DEFAULT_LIMITS,
    lazy: bool = False,
) -> Batch:
    """Decode an OTLP/HTTP body (already decompressed) for ``signal`` into a validated ``Batch``.

    Raises InvalidInput when the body does not decode, PayloadTooLarge when it carries more than
    ``limits.max_events`` items; items that fail validation land in ``Batch.rejected``. ``lazy``: the items are
    left to convert as the writer takes them (``Batch.pending``), and, with the fast path built, the request's
    protobuf bytes kept for the writer to build its rows from directly (``Batch.raw``, ``wire.py``): an OTLP/JSON
    request's written in C (``json_wire``; for a form it does not take, parsed in Python then serialized), a
    protobuf body as sent, not even parsed unless the writer needs its records (then its
    decoding errors are raised when it does, inside the write, which rolls back).
    """
    fast = lazy and wire.available()
    batch = Batch()
    if fast and encoding == "json":
        transcoded = json_wire.to_protobuf(signal, body)  # the canonical forms: from here on a protobuf request
        if transcoded is not None:
            body, encoding = transcoded, "protobuf"
    if fast and encoding == "protobuf":
        batch.pending[signal] = _parsing_later(signal, body, batch, now_ns, limits)
    else:
        with cyclic_gc_paused():
            request = parse_request(signal, body, encoding)
            batch.pending[signal] = _converting(signal, request, batch, now_ns, limits)
            if not lazy:
                return batch.complete()
            if fast:  # OTLP/JSON: its protobuf bytes for the writer's fast path
                body = request.SerializeToString()
    if fast:
        batch.raw = RawRequest(signal, body, now_ns, limits)
    return batch


def _parsing_later(signal: Signal, body: bytes, batch: Batch, now: int, limits: IngestLimits) -> Iterator[None]:
    """Parse the body when the first item is taken, then convert the items one per step."""
    yield from _converting(signal, parse_request(signal, body, "protobuf"), batch, now, limits)


def _converting(signal: Signal, request: Any, batch: Batch, now: int, limits: IngestLimits) -> Iterator[None]:
    """The request's items converted into ``batch`` one per step; PayloadTooLarge (413) over ``max_events``, at
    once (before the first step)."""
    if signal is Signal.TRACES:
        _too_many(sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans), "spans", limits)
        return _converting_spans(request, batch, now, limits)
    if signal is Signal.LOGS:
        count = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        _too_many(count, "log records", limits)
        return _converting_logs(request, batch, now, limits)
    _too_many(_data_points(request), "data points", limits)
    return _converting_points(request, batch, now, limits)


# --- shared ---------------------------------------------------------------------------------------


def _too_many(count: int, noun: str, limits: IngestLimits) -> None:
    if count > limits.max_events:
        raise PayloadTooLarge(
            f"the request carries {count} {noun}, more than the {limits.max_events} allowed in one request",
            details={"count": count, "max_events": limits.max_events},
        )


class _Context:
    """What a resource and a scope give every item under them, computed once."""

    __slots__ = ("reason", "resource", "scope", "service")

    def __init__(self, resource: Attributes, resource_reason: str | None, service: str | None) -> None:
        self.resource = resource
        self.service = service
        self.reason = resource_reason
        self.scope: dict[str, Any] | None = None

    def with_scope(self, message: Any, limits: IngestLimits) -> _Context:
        ctx = _Context(self.resource, self.reason, self.service)
        ctx.scope = scope(message)
        ctx.reason = self.reason or check_attributes(ctx.scope["attributes"], limits, "scope.attributes")
        return ctx


def _resource_context(resource_message: Any, limits: IngestLimits) -> _Context:
    resource = attributes(resource_message.attributes)
    service = resource.get("service.name")
    return _Context(
        resource,
        check_attributes(resource, limits, "resource.attributes"),
        None if service is None else str(service),
    )


def _id_reason(raw: bytes, size: int, zero: bytes, what: str) -> str | None:
    if len(raw) != size:
        return f"{what} must be {size} bytes, got {len(raw)}"
    if raw == zero:
        return f"{what} must not be all zeroes"
    return None


def _guarded[**P, R](convert: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | str:
    """``convert(...)``, or the reason it failed in a way no check foresaw: that item alone is rejected."""
    try:
        return convert(*args, **kwargs)
    except UNFORESEEN as exc:
        return unforeseen(exc)


def _present_id_reason(raw: bytes, size: int, what: str) -> str | None:
    """An optional id sent with the wrong size (OTLP/JSON ``"traceId": "xyz"``): the record is refused with the
    reason rather than stored with its id silently removed. Absent or all-zero ids mean "none"."""
    if raw and len(raw) != size:
        return f"{what} must be {size} bytes, got {len(raw)}"
    return None


def _optional_id(raw: bytes, size: int, zero: bytes) -> str | None:
    """An optional id as hex; empty or invalid means "none" (what OTLP asks of log and exemplar ids)."""
    if len(raw) != size or raw == zero:
        return None
    return raw.hex()


# --- traces ---------------------------------------------------------------------------------------


def _converting_spans(request: Any, batch: Batch, now: int, limits: IngestLimits) -> Iterator[None]:
    """Convert the request's spans into ``batch`` one per step (a span or a rejection)."""
    index = 0
    for resource_spans in request.resource_spans:
        resource_ctx = _resource_context(resource_spans.resource, limits)
        for scope_spans in resource_spans.scope_spans:
            ctx = resource_ctx.with_scope(scope_spans.scope, limits)
            for span in scope_spans.spans:
                item = _guarded(_span, span, ctx, now, limits)
                if isinstance(item, str):
                    batch.rejected.append(Rejection(index, item, Signal.TRACES))
                else:
                    batch.spans.append(item)
                index += 1
                yield None


def _span(span: Any, ctx: _Context, now: int, limits: IngestLimits) -> Span | str:
    trace_id = span.trace_id
    span_id = span.span_id
    reason = _id_reason(trace_id, 16, _ZERO_TRACE_ID, "trace_id") or _id_reason(span_id, 8, _ZERO_SPAN_ID, "span_id")
    if reason:
        return reason
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return f"parent_span_id must be 8 bytes or empty, got {len(parent)}"
    name = span.name
    if not name:
        return "name is empty"
    if len(name) > limits.max_name_length:
        return f"name is longer than {limits.max_name_length} characters"
    kind = SPAN_KINDS.get(span.kind)
    if kind is None:
        return f"kind {span.kind} is not a SpanKind (0 to 5)"
    status = span.status
    status_code = STATUS_CODES.get(status.code)
    if status_code is None:
        return f"status.code {status.code} is not a StatusCode (0 to 2)"
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    reason = check_time(start, now, limits, "start_time_unix_nano")
    if reason:
        return reason
    if end < start:
        return "end_time_unix_nano is before start_time_unix_nano"
    reason = check_span_times(start, end)
    if reason:
        return reason
    if ctx.reason:
        return ctx.reason
    attrs = attributes(span.attributes)
    reason = check_attributes(attrs, limits, "attributes")
    if reason:
        return reason
    events = []
    for i, event in enumerate(span.events):
        event_attrs = attributes(event.attributes)
        reason = check_attributes(event_attrs, limits, f"events[{i}].attributes")
        if reason:
            return reason
        item: dict[str, Any] = {"time_ns": event.time_unix_nano, "name": event.name, "attributes": event_attrs}
        if event.dropped_attributes_count:
            item["dropped_attributes_count"] = event.dropped_attributes_count
        events.append(item)
    links = []
    for i, link in enumerate(span.links):
        reason = _id_reason(link.trace_id, 16, _ZERO_TRACE_ID, f"links[{i}].trace_id") or _id_reason(
            link.span_id, 8, _ZERO_SPAN_ID, f"links[{i}].span_id"
        )
        if reason:
            return reason
        link_attrs = attributes(link.attributes)
        reason = check_attributes(link_attrs, limits, f"links[{i}].attributes")
        if reason:
            return reason
        item = {
            "trace_id": link.trace_id.hex(),
            "span_id": link.span_id.hex(),
            "trace_state": link.trace_state or None,
            "attributes": link_attrs,
        }
        if link.flags:
            item["flags"] = link.flags
        if link.dropped_attributes_count:
            item["dropped_attributes_count"] = link.dropped_attributes_count
        links.append(item)
    return Span(
        trace_id=trace_id.hex(),
        span_id=span_id.hex(),
        name=name,
        start_time_ns=start,
        end_time_ns=end,
        parent_span_id=parent.hex() if parent and parent != _ZERO_SPAN_ID else None,
        kind=kind,
        service=ctx.service,
        status_code=status_code,
        status_message=status.message or None,
        attributes=attrs,
        resource=ctx.resource,
        scope=ctx.scope,
        events=events,
        links=links,
        trace_state=span.trace_state or None,
        flags=span.flags,
    )


# --- logs -----------------------------------------------------------------------------------------


def _converting_logs(request: Any, batch: Batch, now: int, limits: IngestLimits) -> Iterator[None]:
    """Convert the request's log records into ``batch`` one per step (a record or a rejection)."""
    index = 0
    for resource_logs in request.resource_logs:
        resource_ctx = _resource_context(resource_logs.resource, limits)
        for scope_logs in resource_logs.scope_logs:
            ctx = resource_ctx.with_scope(scope_logs.scope, limits)
            for record in scope_logs.log_records:
                item = _guarded(_log_record, record, ctx, now, limits)
                if isinstance(item, str):
                    batch.rejected.append(Rejection(index, item, Signal.LOGS))
                else:
                    batch.logs.append(item)
                index += 1
                yield None


def _log_record(record: Any, ctx: _Context, now: int, limits: IngestLimits) -> LogRecord | str:
    observed = record.observed_time_unix_nano
    # The data model: use the event time if present, otherwise the observed time.
    if record.time_unix_nano or not observed:
        time_ns, what = record.time_unix_nano, "time_unix_nano"
    else:
        time_ns, what = observed, "observed_time_unix_nano"
    reason = check_time(time_ns, now, limits, what)
    if reason:
        return reason
    severity = record.severity_number
    if not 0 <= severity <= MAX_SEVERITY:
        return f"severity_number {severity} is not a SeverityNumber (0 to {MAX_SEVERITY})"
    if ctx.reason:
        return ctx.reason
    body = body_text(record.body)
    if len(body) > limits.max_body_length:
        return f"body is longer than {limits.max_body_length} characters"
    attrs = attributes(record.attributes)
    reason = (
        check_attributes(attrs, limits, "attributes")
        or _present_id_reason(record.trace_id, 16, "trace_id")
        or _present_id_reason(record.span_id, 8, "span_id")
    )
    if reason:
        return reason
    return LogRecord(
        time_ns=time_ns,
        body=body,
        severity_number=severity,
        severity_text=record.severity_text or None,
        service=ctx.service,
        attributes=attrs,
        resource=ctx.resource,
        scope=ctx.scope,
        observed_time_ns=observed or None,
        trace_id=_optional_id(record.trace_id, 16, _ZERO_TRACE_ID),
        span_id=_optional_id(record.span_id, 8, _ZERO_SPAN_ID),
        flags=record.flags,
        event_name=record.event_name or None,
    )


# --- metrics --------------------------------------------------------------------------------------


def _data_points(request: Any) -> int:
    count = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    count += len(getattr(metric, kind).data_points)
    return count


def _converting_points(request: Any, batch: Batch, now: int, limits: IngestLimits) -> Iterator[None]:
    """Convert the request's data points into ``batch`` one per step (a point, a rejection, or a skipped one)."""
    index = 0
    for resource_metrics in request.resource_metrics:
        resource_ctx = _resource_context(resource_metrics.resource, limits)
        for scope_metrics in resource_metrics.scope_metrics:
            ctx = resource_ctx.with_scope(scope_metrics.scope, limits)
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue  # no data: no data points to accept or reject
                data = getattr(metric, kind)
                metric_reason: str | None = ctx.reason or _metric_reason(metric, kind, data, limits)
                for point in data.data_points:
                    if point.flags & NO_RECORDED_VALUE:
                        pass  # an explicit "no value" marker (e.g. a stale series): nothing to store, not an error
                    else:
                        item: MetricPoint | str = (
                            metric_reason
                            if metric_reason
                            else _guarded(_data_point, metric, kind, data, point, ctx, now, limits, index)
                        )
                        if isinstance(item, str):
                            batch.rejected.append(Rejection(index, item, Signal.METRICS))
                        else:
                            batch.metrics.append(item)
                    index += 1
                    yield None


def _metric_reason(metric: Any, kind: str, data: Any, limits: IngestLimits) -> str | None:
    name = metric.name
    if not name:
        return "metric name is empty"
    if len(name) > limits.max_name_length:
        return f"metric name is longer than {limits.max_name_length} characters"
    if kind in ("sum", "histogram", "exponential_histogram") and data.aggregation_temporality not in TEMPORALITIES:
        return f"{kind}.aggregation_temporality {data.aggregation_temporality} is not delta (1) or cumulative (2)"
    return None


def _data_point(
    metric: Any, kind: str, data: Any, point: Any, ctx: _Context, now: int, limits: IngestLimits, index: int
) -> MetricPoint | str:
    reason = check_time(point.time_unix_nano, now, limits, "time_unix_nano")
    if reason:
        return reason
    own = attributes(point.attributes)
    reason = check_attributes(own, limits, "attributes")
    if reason:
        return reason
    merged = {**ctx.resource, **own} if ctx.resource else own
    if len(merged) > limits.max_attributes:
        return f"attributes: {len(merged)} keys with the resource's, more than {limits.max_attributes}"
    mp = MetricPoint(
        name=storable_text(metric.name),  # the series' identity: the name as stored
        type=_METRIC_TYPES[kind],
        time_ns=point.time_unix_nano,
        attributes=merged,
        unit=metric.unit or None,
        description=metric.description or None,
        start_time_ns=point.start_time_unix_nano or None,
        flags=point.flags,
        scope=ctx.scope,
        index=index,
    )
    if kind == "gauge" or kind == "sum":
        value_kind = point.WhichOneof("value")
        if value_kind is None:
            return "data point has no value (as_int or as_double)"
        mp.value = float(point.as_int) if value_kind == "as_int" else point.as_double
        if kind == "sum":
            mp.monotonic = data.is_monotonic
            mp.temporality = TEMPORALITIES[data.aggregation_temporality]
    elif kind == "histogram":
        bounds = point.explicit_bounds
        counts = point.bucket_counts
        if counts and len(counts) != len(bounds) + 1:
            return f"bucket_counts has {len(counts)} elements for {len(bounds)} explicit_bounds (must be one more)"
        _distribution_stats(mp, point, data)
        mp.distribution = {"bounds": [json_float(b) for b in bounds], "counts": list(counts)}
    elif kind == "exponential_histogram":
        _distribution_stats(mp, point, data)
        mp.distribution = {
            "scale": point.scale,
            "zero_count": point.zero_count,
            "zero_threshold": json_float(point.zero_threshold),
            "positive": {"offset": point.positive.offset, "counts": list(point.positive.bucket_counts)},
            "negative": {"offset": point.negative.offset, "counts": list(point.negative.bucket_counts)},
        }
    else:  # summary
        mp.count = point.count
        mp.sum = point.sum
        mp.distribution = {"quantiles": [[json_float(q.quantile), json_float(q.value)] for q in point.quantile_values]}
    reason = check_point_numbers(mp.value, mp.count, (mp.sum, mp.min, mp.max), _bucket_counts(kind, point))
    if reason:
        return reason
    if kind != "summary" and point.exemplars:
        mp.exemplars = [_exemplar(e) for e in point.exemplars]
    return mp


def _bucket_counts(kind: str, point: Any) -> list[int]:
    if kind == "histogram":
        return list(point.bucket_counts)
    if kind == "exponential_histogram":
        return [point.zero_count]  # its buckets are merged as floats (DDSketch): any uint64 count is fine
    return []


def _distribution_stats(mp: MetricPoint, point: Any, data: Any) -> None:
    mp.temporality = TEMPORALITIES[data.aggregation_temporality]
    mp.count = point.count
    mp.sum = point.sum if point.HasField("sum") else None
    mp.min = point.min if point.HasField("min") else None
    mp.max = point.max if point.HasField("max") else None


def _exemplar(exemplar: Any) -> dict[str, Any]:
    value_kind = exemplar.WhichOneof("value")
    value: float | str | None = None
    if value_kind == "as_int":
        value = float(exemplar.as_int)
    elif value_kind == "as_double":
        value = json_float(exemplar.as_double)
    return {
        "time_ns": exemplar.time_unix_nano,
        "value": value,
        "attributes": attributes(exemplar.filtered_attributes),
        "trace_id": _optional_id(exemplar.trace_id, 16, _ZERO_TRACE_ID),
        "span_id": _optional_id(exemplar.span_id, 8, _ZERO_SPAN_ID),
    }
