"""The native batch format: every event validated on its own, mapped onto the shared signal model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from observai.errors import InvalidInput, PayloadTooLarge
from observai.telemetry.limits import IngestLimits
from observai.telemetry.model import MetricType, Signal, Temporality
from observai.telemetry.native import decode_native, to_ns

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW_NS = to_ns(NOW)
T = (NOW - timedelta(minutes=1)).isoformat()
TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"


def decode(events: list, **kw):
    return decode_native(json.dumps(events).encode(), now_ns=NOW_NS, **kw)


def test_clean_batch_maps_every_signal() -> None:
    batch = decode(
        [
            {"type": "metric", "name": "cpu", "value": 0.5, "time": T, "service": "api", "attributes": {"host": "a"}},
            {"type": "metric", "name": "req", "kind": "sum", "value": 3, "time": T, "temporality": "delta"},
            {
                "type": "metric",
                "name": "lat",
                "kind": "histogram",
                "time": T,
                "count": 3,
                "sum": 30.0,
                "bounds": [10, 100],
                "bucket_counts": [1, 1, 1],
            },
            {
                "type": "metric",
                "name": "q",
                "kind": "summary",
                "time": T,
                "count": 5,
                "quantiles": [[0.5, 2], [0.99, 9]],
            },
            {
                "type": "log",
                "time": T,
                "severity": "ERROR",
                "body": "boom",
                "service": "api",
                "trace_id": TRACE.upper(),
                "span_id": SPAN,
                "event_id": "e1",
            },
            {"type": "log", "time_unix_nano": NOW_NS - 5, "severity": 13, "body": {"msg": "structured", "n": 1}},
            {
                "type": "span",
                "trace_id": TRACE,
                "span_id": SPAN,
                "name": "GET /",
                "kind": "server",
                "start_time": T,
                "duration_ms": 12.5,
                "status": "error",
                "service": "api",
                "events": [{"name": "exception", "time": T, "attributes": {"exception.type": "KeyError"}}],
                "links": [{"trace_id": TRACE, "span_id": "0000000000000001"}],
            },
        ]
    )
    assert batch.rejected == []
    assert batch.counts() == {Signal.METRICS: 4, Signal.LOGS: 2, Signal.TRACES: 1}
    gauge, total, hist, summary = batch.metrics
    assert gauge.type is MetricType.GAUGE and gauge.value == 0.5
    assert gauge.attributes == {"service.name": "api", "host": "a"}  # resource under point attributes
    assert gauge.time_ns == to_ns(NOW - timedelta(minutes=1))
    assert total.type is MetricType.SUM and total.monotonic is True and total.temporality is Temporality.DELTA
    assert (
        hist.distribution == {"bounds": [10, 100], "counts": [1, 1, 1]} and hist.temporality is Temporality.CUMULATIVE
    )
    assert summary.distribution == {"quantiles": [[0.5, 2.0], [0.99, 9.0]]}
    error_log, structured = batch.logs
    assert (error_log.severity_number, error_log.severity_text, error_log.service) == (17, "ERROR", "api")
    assert error_log.trace_id == TRACE and error_log.event_id == "e1"
    assert structured.severity_number == 13 and json.loads(structured.body) == {"msg": "structured", "n": 1}
    (span,) = batch.spans
    assert span.end_time_ns - span.start_time_ns == 12_500_000
    assert span.kind == "server" and span.status_code == "error" and span.service == "api"
    assert span.events[0]["name"] == "exception" and span.links[0]["span_id"] == "0000000000000001"


def test_bad_events_are_rejected_by_index_and_the_rest_accepted() -> None:
    batch = decode(
        [
            {"type": "log", "time": T, "body": "ok"},
            {"type": "log", "body": "no time is fine: now"},
            {"type": "metric", "name": "x", "time": T},  # gauge without value
            {"type": "span", "trace_id": "short", "span_id": SPAN, "name": "s", "start_time": T, "duration_ms": 1},
            {"type": "log", "time": (NOW - timedelta(days=30)).isoformat(), "body": "too old"},
            {"type": "log", "time": (NOW + timedelta(days=1)).isoformat(), "body": "from the future"},
            {"type": "unknown"},
            "not an object",
            {"type": "log", "time": T, "body": "x", "attributes": {f"k{i}": i for i in range(500)}},
            {
                "type": "metric",
                "name": "h",
                "kind": "histogram",
                "time": T,
                "count": 2,
                "bounds": [1],
                "bucket_counts": [1],
            },
            {"type": "span", "trace_id": TRACE, "span_id": SPAN, "name": "s", "start_time": T},
        ]
    )
    assert batch.accepted == 2
    reasons = {r.index: r.reason for r in batch.rejected}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert "value" in reasons[2]
    assert "trace_id" in reasons[3]
    assert "past" in reasons[4] and "future" in reasons[5]
    assert "more than 128" in reasons[8]
    assert "bucket_counts" in reasons[9]
    assert "end_time or duration_ms" in reasons[10]
    assert {r.signal for r in batch.rejected if r.index in (2, 3)} == {Signal.METRICS, Signal.TRACES}


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"{not json", InvalidInput), (b'{"type": "log"}', InvalidInput), (b"", InvalidInput)],
    ids=["malformed", "object-not-list", "empty"],
)
def test_undecodable_body_is_400(body: bytes, error: type) -> None:
    with pytest.raises(error):
        decode_native(body, now_ns=NOW_NS)


def test_too_many_events_is_413() -> None:
    limits = IngestLimits(max_events=3)
    events = [{"type": "log", "time": T, "body": str(i)} for i in range(4)]
    with pytest.raises(PayloadTooLarge):
        decode(events, limits=limits)
    with pytest.raises(PayloadTooLarge):  # also when some events are invalid (the slow path)
        decode([*events, {"type": "bad"}], limits=limits)


def test_rejection_reasons_name_the_broken_constraint_not_the_union_branch() -> None:
    # Given a severity out of range (the field takes a name or a number) and a non-numeric value
    batch = decode([{"type": "log", "body": "x", "severity": 30}, {"type": "metric", "name": "m", "value": "abc"}])
    # Then each reason names the field and what is wrong with it, without pydantic's branch names
    reasons = [r.reason for r in batch.rejected]
    assert reasons[0] == "severity: Input should be less than or equal to 24"
    assert reasons[1].startswith("value: Input should be a valid number")
    assert not any("constrained" in r for r in reasons)


def test_lazy_batch_converts_as_records_are_taken_and_equals_the_eager_one() -> None:
    # Given a batch mixing valid events of every signal with events only conversion rejects (too old)
    old = (NOW - timedelta(days=30)).isoformat()
    events = [
        {"type": "log", "time": T, "body": "one", "service": "api"},
        {"type": "span", "trace_id": TRACE, "span_id": SPAN, "name": "GET /", "start_time": T, "end_time": T},
        {"type": "log", "time": old, "body": "too old"},
        {"type": "metric", "name": "cpu", "value": 0.5, "time": T},
        {"type": "log", "time": T, "body": "two"},
    ]
    eager = decode(events)
    # When it is decoded lazily
    lazy = decode(events, lazy=True)
    # Then nothing past validation is converted yet
    assert set(lazy.pending) == {Signal.METRICS, Signal.LOGS, Signal.TRACES}
    assert lazy.logs == [] and lazy.rejected == []
    # When the writer takes one log record
    taken = lazy.records(Signal.LOGS)
    first = next(taken)
    # Then only that one is converted, kept in the batch
    assert first.body == "one" and [r.body for r in lazy.logs] == ["one"]
    # When the rest of the logs are taken, then the too-old one is rejected on the way, with its index
    assert [r.body for r in taken] == ["two"]
    assert [(r.index, r.signal) for r in lazy.rejected] == [(2, Signal.LOGS)]
    # And when the batch is completed, it equals the eager decode (counts complete it too)
    assert lazy.accepted == eager.accepted == 4
    assert not lazy.pending
    assert (lazy.metrics, lazy.logs, lazy.spans) == (eager.metrics, eager.logs, eager.spans)
    assert lazy.rejected == eager.rejected
    # And taking records again replays the kept ones without converting anything twice
    assert [r.body for r in lazy.records(Signal.LOGS)] == ["one", "two"]
