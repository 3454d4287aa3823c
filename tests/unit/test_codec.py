"""A Batch survives the spool encoding exactly: every field, enums restored, compact ASCII."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.telemetry.codec import batch_from_json, batch_to_json
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

NS = st.integers(min_value=0, max_value=2**63 - 1)
TEXT = st.text(max_size=20)  # any unicode, surrogates included: ASCII escapes keep it exact
FLOATS = st.floats(allow_nan=False)  # NaN != NaN: tested on its own below
HEX32 = st.text("0123456789abcdef", min_size=32, max_size=32)
HEX16 = st.text("0123456789abcdef", min_size=16, max_size=16)

JSON_SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64) | FLOATS | TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
ATTRS = st.dictionaries(TEXT, JSON_VALUES, max_size=4)
OPT = st.none


def opt(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


metric_points = st.builds(
    MetricPoint,
    name=TEXT,
    type=st.sampled_from(MetricType),
    time_ns=NS,
    attributes=ATTRS,
    unit=opt(TEXT),
    description=opt(TEXT),
    start_time_ns=opt(NS),
    value=opt(FLOATS),
    monotonic=opt(st.booleans()),
    temporality=opt(st.sampled_from(Temporality)),
    count=opt(st.integers(min_value=0, max_value=2**64 - 1)),
    sum=opt(FLOATS),
    min=opt(FLOATS),
    max=opt(FLOATS),
    distribution=opt(st.dictionaries(TEXT, JSON_VALUES, max_size=3)),
    exemplars=opt(st.lists(st.dictionaries(TEXT, JSON_VALUES, max_size=3), max_size=2)),
    flags=st.integers(min_value=0, max_value=2**32 - 1),
    event_id=opt(TEXT),
    scope=opt(st.dictionaries(TEXT, JSON_VALUES, max_size=2)),
)

log_records = st.builds(
    LogRecord,
    time_ns=NS,
    body=TEXT,
    severity_number=st.integers(min_value=0, max_value=24),
    severity_text=opt(TEXT),
    service=opt(TEXT),
    attributes=ATTRS,
    resource=ATTRS,
    scope=opt(st.dictionaries(TEXT, JSON_VALUES, max_size=2)),
    observed_time_ns=opt(NS),
    trace_id=opt(HEX32),
    span_id=opt(HEX16),
    flags=st.integers(min_value=0, max_value=255),
    event_id=opt(TEXT),
    event_name=opt(TEXT),
)

spans = st.builds(
    Span,
    trace_id=HEX32,
    span_id=HEX16,
    name=TEXT,
    start_time_ns=NS,
    end_time_ns=NS,
    parent_span_id=opt(HEX16),
    kind=st.sampled_from(["internal", "server", "client", "producer", "consumer"]),
    service=opt(TEXT),
    status_code=st.sampled_from(["unset", "ok", "error"]),
    status_message=opt(TEXT),
    attributes=ATTRS,
    resource=ATTRS,
    scope=opt(st.dictionaries(TEXT, JSON_VALUES, max_size=2)),
    events=st.lists(st.fixed_dictionaries({"time_ns": NS, "name": TEXT, "attributes": ATTRS}), max_size=2),
    links=st.lists(
        st.fixed_dictionaries({"trace_id": HEX32, "span_id": HEX16, "trace_state": opt(TEXT), "attributes": ATTRS}),
        max_size=2,
    ),
    trace_state=opt(TEXT),
    flags=st.integers(min_value=0, max_value=2**32 - 1),
    event_id=opt(TEXT),
)

rejections = st.builds(
    Rejection, index=st.integers(min_value=0, max_value=10**6), reason=TEXT, signal=opt(st.sampled_from(Signal))
)

batches = st.builds(
    Batch,
    metrics=st.lists(metric_points, max_size=4),
    logs=st.lists(log_records, max_size=4),
    spans=st.lists(spans, max_size=4),
    rejected=st.lists(rejections, max_size=3),
)


def _assert_same(a: Batch, b: Batch) -> None:
    assert a == b
    for x, y in zip(a.metrics, b.metrics, strict=True):
        assert type(x.type) is MetricType and type(y.type) is MetricType
        assert (x.temporality is None) == (y.temporality is None)
        if y.temporality is not None:
            assert type(y.temporality) is Temporality
    for r in b.rejected:
        assert r.signal is None or type(r.signal) is Signal


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_round_trip_is_exact(batch: Batch) -> None:
    data = batch_to_json(batch)
    data.decode("ascii")  # ASCII only: safe in an SQS message body
    _assert_same(batch_from_json(data), batch)
    assert batch_to_json(batch_from_json(data)) == data  # stable


def test_round_trip_of_every_metric_type() -> None:
    batch = Batch(
        metrics=[
            MetricPoint("cpu", MetricType.GAUGE, 1_700_000_000_123_456_789, {"host": "a"}, unit="1", value=0.1 + 0.2),
            MetricPoint(
                "requests",
                MetricType.SUM,
                1_700_000_000_000_000_001,
                {"service.name": "api", "code": 200},
                start_time_ns=1_699_999_999_000_000_000,
                value=42.0,
                monotonic=True,
                temporality=Temporality.CUMULATIVE,
            ),
            MetricPoint(
                "latency",
                MetricType.HISTOGRAM,
                5,
                {},
                temporality=Temporality.DELTA,
                count=10,
                sum=12.5,
                min=-0.0,
                max=1e308,
                distribution={"bounds": [0.1, 1.0, 10.0], "counts": [1, 2, 3, 4]},
                exemplars=[{"time_ns": 4, "value": 0.5, "trace_id": "ab" * 16, "attributes": {}}],
                flags=1,
                event_id="m1",
                scope={"name": "lib", "version": "1.0"},
            ),
            MetricPoint(
                "size",
                MetricType.EXPONENTIAL_HISTOGRAM,
                6,
                {"k": [1, 2]},
                count=3,
                distribution={
                    "scale": -2,
                    "zero_count": 1,
                    "zero_threshold": 0.0,
                    "positive": {"offset": -3, "counts": [1, 1]},
                    "negative": {"offset": 0, "counts": []},
                },
            ),
            MetricPoint(
                "rpc", MetricType.SUMMARY, 7, {}, count=2, sum=3.0, distribution={"quantiles": [[0.5, 1.0], [0.99, 2]]}
            ),
        ],
        logs=[
            LogRecord(1, "héllo \u2028 \x00 😀", severity_number=9, severity_text="INFO", service="api"),
            LogRecord(2, '{"a":1}', attributes={"x": None}, trace_id="0" * 32, span_id="f" * 16, event_name="e"),
        ],
        spans=[
            Span(
                "a" * 32,
                "b" * 16,
                "GET /",
                10,
                20,
                parent_span_id="c" * 16,
                kind="server",
                status_code="error",
                status_message="boom",
                events=[{"time_ns": 15, "name": "exception", "attributes": {"exception.type": "ValueError"}}],
                links=[{"trace_id": "d" * 32, "span_id": "e" * 16, "trace_state": "k=v", "attributes": {}}],
            )
        ],
        rejected=[Rejection(3, "time too far in the past", Signal.LOGS), Rejection(4, "bad")],
    )
    data = batch_to_json(batch)
    _assert_same(batch_from_json(data), batch)
    assert batch_from_json(data).metrics[1].value == 42.0
    assert batch_from_json(data).metrics[0].value == 0.30000000000000004


def test_compact_leaves_defaults_out() -> None:
    data = batch_to_json(Batch(logs=[LogRecord(1, "x")]))
    assert data == b'{"v":1,"logs":[{"time_ns":1,"body":"x"}]}'
    assert batch_to_json(Batch()) == b'{"v":1}'
    assert batch_from_json(b'{"v":1}') == Batch()


def test_non_finite_floats() -> None:
    batch = Batch(metrics=[MetricPoint("m", MetricType.GAUGE, 1, {}, value=math.inf, sum=-math.inf, min=math.nan)])
    back = batch_from_json(batch_to_json(batch))
    assert back.metrics[0].value == math.inf and back.metrics[0].sum == -math.inf
    assert back.metrics[0].min is not None and math.isnan(back.metrics[0].min)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"v":2}',
        b'{"v":1,"metrics":{}}',
        b'{"v":1,"logs":[{"body":"x"}]}',  # time_ns missing
        b'{"v":1,"logs":[{"time_ns":1,"body":"x","nope":1}]}',
        b'{"v":1,"metrics":[{"name":"m","type":"bogus","time_ns":1,"attributes":{}}]}',
        b'{"v":1,"extra":[]}',
        b'{"v":1,"spans":[1]}',
    ],
)
def test_invalid_input_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        batch_from_json(data)


def test_output_is_json() -> None:
    batch = Batch(logs=[LogRecord(1, "x", attributes={"a": [1, {"b": 2.5}]})])
    assert json.loads(batch_to_json(batch))["logs"][0]["attributes"] == {"a": [1, {"b": 2.5}]}
