"""The msgspec fast path of the native format gives exactly what the pydantic path gives.

msgspec's schema (native_fast) must be at least as strict as pydantic's (native): a body it accepts is one pydantic
accepts, decoded to the same events; anything else falls back to pydantic, whose rejections and reasons stand.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.telemetry import native, native_fast
from observai.telemetry.native import decode_native, to_ns
from pydantic import TypeAdapter

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW_NS = to_ns(NOW)
T = (NOW - timedelta(minutes=1)).isoformat()
TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"

PAIRS = [
    (native.MetricEvent, native_fast.MetricEvent),
    (native.LogEvent, native_fast.LogEvent),
    (native.SpanEvent, native_fast.SpanEvent),
    (native.SpanEventIn, native_fast.SpanEventIn),
    (native.SpanLinkIn, native_fast.SpanLinkIn),
]


def _msgspec_keys(struct: Any) -> tuple[set[str], set[str]]:
    info = msgspec.inspect.type_info(struct)
    required = {f.name for f in info.fields if f.required}
    optional = {f.name for f in info.fields if not f.required}
    if info.tag_field is not None:  # the tag ("type") is required
        required.add(info.tag_field)
    return required, optional


def _pydantic_keys(typed_dict: Any) -> tuple[set[str], set[str], dict[str, Any]]:
    # pydantic's reading of the TypedDict (with postponed annotations, __required_keys__ cannot tell Required[...])
    schema = TypeAdapter(typed_dict).json_schema()
    required = set(schema.get("required", ()))
    return required, set(schema["properties"]) - required, schema["properties"]


@pytest.mark.parametrize(("typed_dict", "struct"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_msgspec_schema_has_the_fields_of_the_pydantic_one(typed_dict: Any, struct: Any) -> None:
    required, optional, properties = _pydantic_keys(typed_dict)
    assert _msgspec_keys(struct) == (required, optional)
    info = msgspec.inspect.type_info(struct)
    assert info.forbid_unknown_fields
    if info.tag_field is not None:
        assert info.tag == properties[info.tag_field]["const"]


def both(body: bytes) -> tuple[Any, Any]:
    """(fast path, pydantic only); each the Batch or the exception raised."""
    out = []
    for fast in (True, False):
        try:
            out.append(decode_native(body, now_ns=NOW_NS, fast=fast))
        except Exception as exc:  # the same error both ways: compared below
            out.append((type(exc), str(exc)))
    return out[0], out[1]


def assert_same(events: Any) -> Any:
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    fast, slow = both(body)
    assert repr(fast) == repr(slow)  # not ==: NaN is no NaN; and repr tells 1 from 1.0
    return fast


VALID = [
    {"type": "metric", "name": "cpu", "value": 0.5, "time": T, "service": "api", "attributes": {"host": "a"}},
    {"type": "metric", "name": "req", "kind": "sum", "value": 3, "time": T, "temporality": "delta", "monotonic": False},
    {"type": "metric", "name": "n", "value": None, "time": T},
    {
        "type": "metric",
        "name": "lat",
        "kind": "histogram",
        "time": T,
        "count": 3,
        "sum": 30.0,
        "min": 1,
        "max": 20,
        "bounds": [10, 100],
        "bucket_counts": [1, 1, 1],
        "start_time": "2026-11-22T11:00:00",
        "unit": "ms",
    },
    {
        "type": "metric",
        "name": "q",
        "kind": "summary",
        "time": T,
        "count": 5,
        "quantiles": [[0.5, 2], [0.99, 9]],
        "description": "d",
        "resource": {"host.name": "h"},
        "event_id": "m1",
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
        "event_name": "x",
    },
    {"type": "log", "time_unix_nano": NOW_NS - 5, "severity": 13, "body": {"msg": "structured", "n": [1, 2.5]}},
    {"type": "log", "time": "2026-11-22T12:59:00+01:00", "body": [1, "a", None, True, {"k": {}}]},
    {"type": "log", "time": "2026-11-22t11:59:00.5z", "body": "naive-ish", "severity": 0},
    {
        "type": "span",
        "trace_id": TRACE,
        "span_id": SPAN,
        "parent_span_id": SPAN.upper(),
        "name": "GET /",
        "start_time": T,
        "end_time": "2026-11-22T11:59:01Z",
        "kind": "server",
        "status": "error",
        "status_message": "bad",
        "service": "api",
        "attributes": {"a": 1},
        "events": [
            {"name": "exception", "time": T, "attributes": {"m": "x"}},
            {"name": "e2", "time": "2026-11-22 11:59:00"},
        ],
        "links": [
            {"trace_id": TRACE, "span_id": SPAN, "attributes": {"l": True}},
            {"trace_id": TRACE, "span_id": SPAN},
        ],
    },
    {"type": "span", "trace_id": TRACE, "span_id": SPAN, "name": "d", "start_time": T, "duration_ms": 12.5},
    {"type": "span", "trace_id": TRACE, "span_id": SPAN, "name": "no end", "start_time": T},  # rejected by _convert
    {"type": "metric", "name": "old", "value": 1, "time": "2020-01-01T00:00:00Z"},  # rejected by check_time
]


def test_the_valid_corpus_takes_the_fast_path_and_decodes_the_same() -> None:
    body = json.dumps(VALID).encode()
    assert native_fast.decode(body) is not None
    batch = assert_same(body)
    assert len(batch.metrics) == 4 and len(batch.logs) == 4 and len(batch.spans) == 2 and len(batch.rejected) == 3


def test_datetimes_keep_pydantics_timezone_handling() -> None:
    body = json.dumps(
        [
            {"type": "metric", "name": "a", "value": 1, "time": t}
            for t in ("2026-11-22T11:59:00", "2026-11-22T11:59:00Z", "2026-11-22T12:59:00+01:00")
        ]
    ).encode()
    events = native_fast.decode(body)
    assert events is not None
    times = [e["time"] for e in events]
    assert (
        times[0].tzinfo is None and times[1].utcoffset() == timedelta(0) and times[2].utcoffset() == timedelta(hours=1)
    )
    assert times == [e["time"] for e in native._adapters()[0].validate_json(body)]


# Each replaces or adds one key of a valid event (the first of its type in VALID): values pydantic rejects, and
# values it coerces (numeric strings, a unix time, 5.0 for an int, NaN) that msgspec leaves to it.
INVALID = [
    ("metric", {"name": 5}),
    ("metric", {"name": ""}),
    ("metric", {"name": "x" * 513}),
    ("metric", {"value": "1.5"}),
    ("metric", {"kind": "counter"}),
    ("metric", {"extra": 1}),
    ("metric", {"type": "metrics"}),
    ("metric", {"count": -1}),
    ("metric", {"count": 1.0}),
    ("metric", {"count": True}),
    ("metric", {"monotonic": "true"}),
    ("metric", {"monotonic": 1}),
    ("metric", {"bounds": [1, "2"]}),
    ("metric", {"bucket_counts": [-1]}),
    ("metric", {"quantiles": [[0.5]]}),
    ("metric", {"quantiles": [[0.5, 1, 2]]}),
    ("metric", {"time": 1700000000}),
    ("metric", {"time": "2026-11-22"}),
    ("metric", {"time": "2026-11-22T10:00Z"}),
    ("metric", {"time": "2026-11-22T25:00:00Z"}),
    ("metric", {"time": "yesterday"}),
    ("metric", {"time": "2026-11-22T11:59:00.1234567Z"}),
    ("metric", {"time": "2026-11-22T11:59:00.9999999Z"}),
    ("metric", {"time": "2026-11-22T11:59:00,5Z"}),
    ("metric", {"time_unix_nano": 0}),
    ("metric", {"time_unix_nano": "1"}),
    ("metric", {"service": "s" * 257}),
    ("metric", {"unit": "u" * 65}),
    ("metric", {"attributes": []}),
    ("metric", {"attributes": {"a": 1e400}}),
    ("metric", {"resource": "r"}),
    ("metric", {"event_id": ""}),
    ("metric", {"event_id": "e" * 129}),
    ("metric", {"description": "d" * 1025}),
    ("metric", {"temporality": "Delta"}),
    ("metric", {"value": float("nan")}),
    ("metric", {"sum": float("inf")}),
    ("log", {"severity": 30}),
    ("log", {"severity": -1}),
    ("log", {"severity": "s" * 33}),
    ("log", {"severity": 5.0}),
    ("log", {"severity": True}),
    ("log", {"severity": None}),
    ("log", {"body": None}),
    ("log", {"body": 5}),
    ("log", {"trace_id": TRACE[:-1]}),
    ("log", {"trace_id": TRACE[:-1] + "g"}),
    ("log", {"trace_id": TRACE + "\n"}),
    ("log", {"span_id": SPAN + "0"}),
    ("log", {"span_id": SPAN + "\n"}),
    ("log", {"span_id": "ｅ" + SPAN[1:]}),
    ("log", {"event_name": "n" * 257}),
    ("log", {"type": None}),
    ("log", {"name": "x"}),
    ("span", {"trace_id": None}),
    ("span", {"span_id": 1}),
    ("span", {"parent_span_id": ""}),
    ("span", {"kind": "SERVER"}),
    ("span", {"status": "failed"}),
    ("span", {"start_time": None}),
    ("span", {"end_time": "2026-11-22T11:59:01.12345678Z"}),
    ("span", {"duration_ms": -1}),
    ("span", {"duration_ms": "5"}),
    ("span", {"status_message": "m" * 1025}),
    ("span", {"events": [{"name": "e", "time": T, "extra": 1}]}),
    ("span", {"events": [{"name": "e"}]}),
    ("span", {"events": [{"name": "", "time": T}]}),
    ("span", {"events": [{"name": "e", "time": T}] * 129}),
    ("span", {"links": [{"trace_id": TRACE}]}),
    ("span", {"links": [{"trace_id": TRACE, "span_id": "x" * 16}]}),
    ("span", {"links": {}}),
    ("span", {"value": 1}),
]


def _first(kind: str) -> dict[str, Any]:
    return next(e for e in VALID if e["type"] == kind)


@pytest.mark.parametrize(
    ("kind", "change"), INVALID, ids=[f"{k}-{next(iter(c))}-{i}" for i, (k, c) in enumerate(INVALID)]
)
def test_an_invalid_or_lax_event_falls_back_to_pydantic(kind: str, change: dict[str, Any]) -> None:
    events = [*VALID, {**_first(kind), **change}, *VALID]
    body = json.dumps(events).encode()
    assert native_fast.decode(body) is None
    assert_same(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"{}",
        b'"x"',
        b"null",
        b"[1]",
        b"[[]]",
        b'[{"type": "metric"}]',
        b"[" * 5000 + b"]" * 5000,
        b'[{"type":"log","body":"a"}] x',
        b"\xef\xbb\xbf[]",
        b'[{"type":"log","body":"\xff"}]',
        b"[]",
        b" [ ] ",
    ],
)
def test_odd_bodies_are_decoded_or_refused_the_same(body: bytes) -> None:
    assert_same(body)


def test_duplicate_keys_are_read_the_same() -> None:
    assert_same(b'[{"type":"log","body":"a","body":"b","time":"2026-11-22T11:59:00Z"}]')
    assert_same(b'[{"type":"metric","type":"log","body":"a","time":"2026-11-22T11:59:00Z"}]')
    assert_same(b'[{"type":"log","type":"metric","name":"m","value":1,"time":"2026-11-22T11:59:00Z"}]')


def test_a_sub_microsecond_time_is_read_by_pydantic() -> None:
    """msgspec rounds the fraction past the microsecond, pydantic truncates it: such a body goes to pydantic."""
    body = json.dumps([{"type": "metric", "name": "a", "value": 1, "time": "2026-11-22T11:59:00.9999999Z"}]).encode()
    assert native_fast.decode(body) is None
    assert decode_native(body, now_ns=NOW_NS).metrics[0].time_ns == to_ns(
        datetime(2026, 11, 22, 11, 59, 0, 999999, UTC)
    )
    number = json.dumps([{"type": "metric", "name": "a", "value": 12.123456789, "time": T}]).encode()
    assert native_fast.decode(number) is not None  # a long number is no time


# Property tests: events made of the schema's keys with values of every JSON type (valid or not, at random).
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
HEX = "0123456789abcdefABCDEF"
TIMES = st.builds(
    lambda d, frac, tz: d.strftime("%Y-%m-%dT%H:%M:%S") + frac + tz,
    st.datetimes(min_value=datetime(2026, 11, 22, 11), max_value=datetime(2026, 11, 22, 12, 4)),
    st.sampled_from(["", ".5", ".123", ".123456", ".1234567", ".999999999", ",5"]),
    st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+01:00", "-0130", "+24:00"]),
)
VALUES = {
    "name": st.text(min_size=0, max_size=3) | st.just("x" * 512) | st.just("x" * 513),
    "time": TIMES,
    "start_time": TIMES,
    "end_time": TIMES,
    "time_unix_nano": st.integers(-1, NOW_NS + 10**12),
    "trace_id": st.text(HEX, min_size=31, max_size=33),
    "span_id": st.text(HEX, min_size=15, max_size=17),
    "parent_span_id": st.text(HEX, min_size=15, max_size=17),
    "severity": st.integers(-1, 25) | st.sampled_from(["info", "WARN", "x" * 33, "bogus"]),
    "kind": st.sampled_from(["gauge", "sum", "histogram", "summary", "server", "client", "internal", "bad"]),
    "status": st.sampled_from(["unset", "ok", "error", "OK"]),
    "temporality": st.sampled_from(["cumulative", "delta", "x"]),
    "value": st.none() | st.floats(allow_nan=False) | st.integers(-5, 5),
    "duration_ms": st.floats(-1, 1e6) | st.integers(-1, 9),
    "count": st.integers(-1, 3),
    "bounds": st.lists(st.integers(0, 9) | st.floats(0, 9), max_size=3),
    "bucket_counts": st.lists(st.integers(-1, 3), max_size=4),
    "quantiles": st.lists(st.tuples(st.floats(0, 1.5), st.floats(0, 9)), max_size=3),
    "attributes": st.dictionaries(st.text(max_size=3), JSON, max_size=3),
    "events": st.lists(
        st.fixed_dictionaries({"name": st.text(max_size=2), "time": TIMES}, optional={"attributes": JSON, "x": JSON}),
        max_size=2,
    ),
    "links": st.lists(
        st.fixed_dictionaries(
            {"trace_id": st.text(HEX, min_size=32, max_size=32), "span_id": st.text(HEX, min_size=16, max_size=16)},
            optional={"attributes": JSON, "x": JSON},
        ),
        max_size=2,
    ),
}
KEYS = sorted({k for td, _ in PAIRS[:3] for k in _pydantic_keys(td)[2]} | {"bogus"})


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["metric", "log", "span"]))
    event = dict(draw(st.sampled_from([e for e in VALID if e["type"] == kind])))
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4)):
        if draw(st.integers(0, 9)) == 0:
            event.pop(key, None)
        else:
            strategy = VALUES.get(key) if draw(st.booleans()) else None
            event[key] = draw(strategy if strategy is not None else JSON)
    return event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=4))
def test_random_events_decode_the_same_either_way(batch: list[dict[str, Any]]) -> None:
    assert_same(batch)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=6))
def test_valid_batches_take_the_fast_path(batch: list[dict[str, Any]]) -> None:
    body = json.dumps(batch).encode()
    assert native_fast.decode(body) is not None
    assert_same(body)
