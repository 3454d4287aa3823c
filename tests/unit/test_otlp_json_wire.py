"""OTLP/JSON written as protobuf in C (otlp/json_wire.py, json_pb.h) is the same request as the Python reading.

For any request (random logs, spans and metric points of every type: gauge, sum, histogram, exponential
histogram, summary) sent as protobuf and as OTLP/JSON (each spelling: lowerCamelCase or proto names, hex ids in
either case, 64-bit integers as strings or numbers): the C path either leaves the body to the Python reading
(None) or gives the very message ParseDict builds, hence the same records (decode.py) and the same COPY rows
(_wire.c) as the protobuf body. Hostile bodies (bad ids, NaN, out-of-range numbers, NUL, lone surrogates, depth,
malformed JSON) are either read exactly as the Python reading reads them or left to it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from observai.errors import InvalidInput
from observai.telemetry.codec import batch_to_json
from observai.telemetry.limits import DEFAULT_LIMITS
from observai.telemetry.model import RawRequest, Signal
from observai.telemetry.otlp import json_wire, wire
from observai.telemetry.otlp.decode import decode_otlp
from observai.telemetry.otlp.json_build import build_request
from observai.telemetry.otlp.parse import REQUEST_TYPES, hex_ids_to_base64
from observai.text import may_hold_surrogates, storable
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.helpers.otlp_payloads import (
    logs_request,
    many_logs_request,
    many_points_request,
    many_spans_request,
    metrics_request,
    scope,
    to_otlp_dict,
    traces_request,
)
from tests.unit.test_otlp_json_build import _int64_as_numbers
from tests.unit.test_otlp_wire import (
    NOW,
    ORG,
    PROJECT,
    RETENTION,
    _log_records,
    _metrics,
    _resources,
    _spans,
    metrics_body,
)

pytestmark = pytest.mark.skipif(not json_wire.available(), reason="the C extension is not built (make install)")


def python_reading(signal: Signal, body: bytes) -> Any:
    """The message the Python reading of parse.py gives (json.loads, build_request, else ParseDict), or the
    InvalidInput it raises: what a body the C path leaves gets."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return InvalidInput
    if not isinstance(document, dict):
        return InvalidInput
    if may_hold_surrogates(body):
        document = storable(document)
    built = build_request(REQUEST_TYPES[signal], document)
    if built is not None:
        return built
    hex_ids_to_base64(signal, document)
    message = REQUEST_TYPES[signal]()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except Exception:
        return InvalidInput
    return message


def c_reading(signal: Signal, body: bytes) -> Any:
    """The message the C path writes, or None when it leaves the body to the Python reading."""
    transcoded = json_wire.to_protobuf(signal, body)
    if transcoded is None:
        return None
    message = REQUEST_TYPES[signal]()
    message.ParseFromString(transcoded)
    return message


def spellings(message: Any) -> list[bytes]:
    camel = to_otlp_dict(message)
    return [
        json.dumps(camel).encode(),
        json.dumps(to_otlp_dict(message, snake_case=True), indent=1).encode(),
        json.dumps(to_otlp_dict(message, upper_hex=True), separators=(",", ":")).encode(),
        json.dumps(_int64_as_numbers(camel), ensure_ascii=False).encode(),
    ]


def _event(value: str) -> None:
    from hypothesis.control import _current_build_context

    if _current_build_context.value is not None:
        event(value)


def assert_equivalent(signal: Signal, message: Any) -> None:
    """Every JSON spelling of ``message``: the C path gives ParseDict's message, the records and the rows of the
    protobuf body; or leaves it to the Python reading."""
    protobuf = message.SerializeToString()
    want_records = batch_to_json(decode_otlp(signal, protobuf, encoding="protobuf", now_ns=NOW))
    want_rows = wire.wire_rows(RawRequest(signal, protobuf, NOW, DEFAULT_LIMITS), ORG, PROJECT, RETENTION)
    for body in spellings(message):
        got = c_reading(signal, body)
        _event(f"{signal.value}: C path {'taken' if got is not None else 'left'}")
        if got is None:
            continue
        assert got == python_reading(signal, body) == message
        # The records of the JSON request (through the C path) are the protobuf request's ...
        assert batch_to_json(decode_otlp(signal, body, encoding="json", now_ns=NOW)) == want_records
        # ... and so are the rows the writer COPYs (the protobuf fast path), also when it is lazy.
        transcoded = json_wire.to_protobuf(signal, body)
        assert transcoded is not None
        rows = wire.wire_rows(RawRequest(signal, transcoded, NOW, DEFAULT_LIMITS), ORG, PROJECT, RETENTION)
        assert rows == want_rows
        lazy = decode_otlp(signal, body, encoding="json", now_ns=NOW, lazy=True)
        assert lazy.raw is not None and lazy.raw.body == transcoded
        assert batch_to_json(lazy.complete()) == want_records


# --- the sample requests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "message"),
    [
        (Signal.LOGS, logs_request(NOW)),
        (Signal.LOGS, many_logs_request(50, NOW)),
        (Signal.TRACES, many_spans_request(50, NOW)),
        (Signal.METRICS, metrics_request(NOW)),
        (Signal.METRICS, many_points_request(60, NOW)),
    ],
)
def test_given_the_sample_requests_as_json_when_read_in_c_then_they_are_the_protobuf_requests(
    signal: Signal, message: Any
) -> None:
    # Given a request of every signal (every metric type in metrics_request), as OTLP/JSON
    # When its JSON is read by the C path
    # Then the bytes are exactly what the protobuf serializer writes, and all the rest follows
    assert json_wire.to_protobuf(signal, json.dumps(to_otlp_dict(message)).encode()) == message.SerializeToString()
    assert_equivalent(signal, message)


def test_given_a_bytes_attribute_when_read_in_c_then_the_python_reading_decodes_its_base64() -> None:
    # traces_request has a bytes attribute (AnyValue.bytes_value: base64 in JSON): left to the Python reading
    body = json.dumps(to_otlp_dict(traces_request(NOW))).encode()
    assert json_wire.to_protobuf(Signal.TRACES, body) is None
    assert decode_otlp(Signal.TRACES, body, encoding="json", now_ns=NOW).counts()[Signal.TRACES] == 7


# --- any request ------------------------------------------------------------------------------------------------


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_resources, st.lists(_log_records(), min_size=1, max_size=4)), min_size=1, max_size=2))
def test_given_any_logs_request_when_read_in_c_then_it_is_the_protobuf_request(groups: list[Any]) -> None:
    message = ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(resource=res, scope_logs=[logs_pb2.ScopeLogs(scope=scope("s"), log_records=records)])
            for res, records in groups
        ]
    )
    assert_equivalent(Signal.LOGS, message)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_resources, st.lists(_spans(), min_size=1, max_size=4))
def test_given_any_traces_request_when_read_in_c_then_it_is_the_protobuf_request(res: Any, spans: list[Any]) -> None:
    for i, span in enumerate(spans):
        if not span.span_id:
            span.span_id = (i + 1).to_bytes(8, "big")
    message = ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(resource=res, scope_spans=[trace_pb2.ScopeSpans(scope=scope("s"), spans=spans)])
        ]
    )
    assert_equivalent(Signal.TRACES, message)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_resources, st.lists(_metrics(), min_size=1, max_size=4))
def test_given_any_metrics_request_when_read_in_c_then_it_is_the_protobuf_request(res: Any, metrics: list[Any]) -> None:
    message = REQUEST_TYPES[Signal.METRICS]()
    message.ParseFromString(metrics_body(*metrics, res=res))
    assert_equivalent(Signal.METRICS, message)


# --- hostile and odd bodies -------------------------------------------------------------------------------------

_SPAN = (
    '{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "op", "kind": 2,'
    f' "startTimeUnixNano": "{NOW - 10**9}", "endTimeUnixNano": "{NOW - 10**8}"'
)


def _traces(span_extra: str = "", resource: str = '{"attributes": []}') -> bytes:
    span = _SPAN + span_extra + "}"
    return ('{"resourceSpans": [{"resource": ' + resource + ', "scopeSpans": [{"spans": [' + span + "]}]}]}").encode()


def _attribute(value: str) -> str:
    return ', "attributes": [{"key": "k", "value": ' + value + "}]"


ODD_BODIES = {
    "plain": _traces(),
    "upper hex": _traces().replace(b"5b8efff7", b"5B8EFFF7"),
    "short trace id": _traces().replace(b"5b8efff798038103d269b633813fc60c", b"5b8e"),
    "odd hex": _traces().replace(b'"eee19b7ec3c1b174"', b'"eee19b7ec3c1b17"'),
    "not hex (base64 id)": _traces().replace(b'"eee19b7ec3c1b174"', b'"7uGbfsPBsXQ="'),
    "hex with a space": _traces().replace(b'"eee19b7ec3c1b174"', b'"ee e19b7ec3c1b174"'),
    "zero ids": _traces().replace(b"5b8efff798038103d269b633813fc60c", b"0" * 32),
    "empty parent": _traces(', "parentSpanId": ""'),
    "times as numbers": _traces().replace(b'"%d"' % (NOW - 10**9), b"%d" % (NOW - 10**9)),
    "time with a plus": _traces().replace(b'"%d"' % (NOW - 10**9), b'"+%d"' % (NOW - 10**9)),
    "time as a float": _traces().replace(b'"%d"' % (NOW - 10**9), b"%d.0" % (NOW - 10**9)),
    "time past 2^64": _traces().replace(b'"%d"' % (NOW - 10**9), b'"18446744073709551616"'),
    "negative time": _traces().replace(b'"%d"' % (NOW - 10**9), b'"-1"'),
    "time with a leading zero": _traces().replace(b'"%d"' % (NOW - 10**9), b'"0%d"' % (NOW - 10**9)),
    "time number with a leading zero": _traces().replace(b'"%d"' % (NOW - 10**9), b"0%d" % (NOW - 10**9)),
    "kind as a name": _traces().replace(b'"kind": 2', b'"kind": "SPAN_KIND_SERVER"'),
    "kind out of range": _traces().replace(b'"kind": 2', b'"kind": 9'),
    "kind as a string number": _traces().replace(b'"kind": 2', b'"kind": "2"'),
    "kind -0": _traces().replace(b'"kind": 2', b'"kind": -0'),
    "flags past uint32": _traces(', "flags": 4294967296'),
    "flags negative": _traces(', "flags": -1'),
    "flags as a string": _traces(', "flags": "257"'),
    "dropped count as a bool": _traces(', "droppedAttributesCount": true'),
    "double": _traces(_attribute('{"doubleValue": 0.25}')),
    "double -0": _traces(_attribute('{"doubleValue": -0}')),
    "double -0.0": _traces(_attribute('{"doubleValue": -0.0}')),
    "double as an integer": _traces(_attribute('{"doubleValue": 12345678901234567890123}')),
    "double 1e400": _traces(_attribute('{"doubleValue": 1e400}')),
    "double NaN string": _traces(_attribute('{"doubleValue": "NaN"}')),
    "double NaN literal": _traces(_attribute('{"doubleValue": NaN}')),
    "double Infinity literal": _traces(_attribute('{"doubleValue": -Infinity}')),
    "double as a string": _traces(_attribute('{"doubleValue": "1.5"}')),
    "int64 max": _traces(_attribute('{"intValue": "9223372036854775807"}')),
    "int64 min": _traces(_attribute('{"intValue": "-9223372036854775808"}')),
    "int64 past max": _traces(_attribute('{"intValue": "9223372036854775808"}')),
    "int as a number": _traces(_attribute('{"intValue": -42}')),
    "int with an exponent": _traces(_attribute('{"intValue": 1e3}')),
    "bool as a string": _traces(_attribute('{"boolValue": "true"}')),
    "two oneof members": _traces(_attribute('{"stringValue": "a", "intValue": "1"}')),
    "a oneof member null": _traces(_attribute('{"stringValue": "a", "intValue": null}')),
    "empty any value": _traces(_attribute("{}")),
    "nested kvlist": _traces(
        _attribute(
            '{"kvlistValue": {"values": [{"key": "x", "value": {"arrayValue": '
            '{"values": [{"stringValue": "y"}, {"boolValue": false}]}}}]}}'
        )
    ),
    "bytes value": _traces(_attribute('{"bytesValue": "AAH/"}')),
    "NUL": _traces(_attribute('{"stringValue": "a\\u0000b"}')),
    "NUL in a name": _traces().replace(b'"name": "op"', b'"name": "o\\u0000p"'),
    "lone high surrogate": _traces(_attribute('{"stringValue": "a\\ud800b"}')),
    "lone low surrogate": _traces(_attribute('{"stringValue": "\\udc00"}')),
    "surrogate pair": _traces(_attribute('{"stringValue": "\\ud83d\\ude00"}')),
    "surrogate pair in capitals": _traces(_attribute('{"stringValue": "a\\uD83D\\uDE00b"}')),
    "surrogate pair in a name": _traces().replace(b'"name": "op"', b'"name": "op \\ud83d\\ude80"'),
    "surrogate pair and NUL": _traces(_attribute('{"stringValue": "\\ud83d\\ude00\\u0000"}')),
    "NUL and a surrogate in an unknown field": _traces(
        _attribute('{"stringValue": "a\\u0000"}') + ', "future": {"b": "\\ud800"}'
    ),
    "high surrogate then an escape": _traces(_attribute('{"stringValue": "\\ud83d\\u00e9"}')),
    "high surrogate then text": _traces(_attribute('{"stringValue": "\\ud83dx\\ude00"}')),
    "high surrogate at the end": _traces(_attribute('{"stringValue": "\\ud83d"}')),
    "pair then a low surrogate": _traces(_attribute('{"stringValue": "\\ud83d\\ude00\\ude00"}')),
    "escaped backslash before ud800": _traces(_attribute('{"stringValue": "\\\\ud800"}')),
    "escaped backslash before ud800 and NUL": _traces(_attribute('{"stringValue": "\\\\ud800\\u0000"}')),
    "escapes": _traces(_attribute('{"stringValue": "\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20ac"}')),
    "raw UTF-8": _traces(_attribute('{"stringValue": "é€😀"}')),
    "control character": _traces(_attribute('{"stringValue": "a\tb"}')),
    "invalid UTF-8": _traces(_attribute('{"stringValue": "aXb"}')).replace(b"aXb", b"a\xffb"),
    "encoded surrogate": _traces().replace(b'"name": "op"', b'"name": "\xed\xa0\x80"'),
    "overlong UTF-8": _traces().replace(b'"name": "op"', b'"name": "\xc0\xaf"'),
    "the same field twice": _traces(', "name": "again"'),
    "a field under both names": _traces(', "span_id": "eee19b7ec3c1b175"'),
    "snake case": _traces().replace(b"startTimeUnixNano", b"start_time_unix_nano"),
    "unknown fields": _traces(', "future": {"a": [1, 2.5, null, true, {"b": "\\u00e9"}]}, "x": null'),
    "lone surrogate in an unknown field": _traces(', "future": {"b": "\\ud800"}'),
    "nulls": _traces(', "status": null, "events": null, "traceState": null'),
    "null in a list": _traces(', "events": [null]'),
    "list where a message is due": _traces(', "status": []'),
    "message where a list is due": _traces(', "events": {}'),
    "string where a message is due": _traces(', "status": "ok"'),
    "whitespace": b"  \n\t" + _traces().replace(b":", b" :\r\n ") + b" \n",
    "trailing data": _traces() + b" {}",
    "trailing comma": _traces().replace(b'"kind": 2', b'"kind": 2,'),
    "truncated": _traces()[:-3],
    "not an object": b'[{"resourceSpans": []}]',
    "empty object": b"{}",
    "BOM": b"\xef\xbb\xbf" + _traces(),
    "deep unknown": _traces(', "deep": ' + "[" * 70 + "]" * 70),
    "deep kvlist": _traces(
        _attribute('{"kvlistValue": {"values": [{"key": "k", "value": ' * 15 + '{"stringValue": "x"}' + "}]}}" * 15)
    ),
    "deeper kvlist": _traces(
        _attribute('{"kvlistValue": {"values": [{"key": "k", "value": ' * 25 + '{"stringValue": "x"}' + "}]}}" * 25)
    ),
    "big length": _traces(_attribute('{"stringValue": "%s"}' % ("x" * 70_000))),
}


@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_given_an_odd_body_when_read_in_c_then_it_is_the_python_reading_or_left_to_it(name: str) -> None:
    # Given a traces body, valid or not, canonical or not
    body = ODD_BODIES[name]
    # When the C path reads it
    got = c_reading(Signal.TRACES, body)
    # Then it gives the Python reading's message, or leaves the body to the Python reading (which decides, with
    # its 400s and its per-span rejections)
    if got is not None:
        assert got == python_reading(Signal.TRACES, body)
        assert batch_to_json(decode_otlp(Signal.TRACES, body, encoding="json", now_ns=NOW)) == batch_to_json(
            decode_otlp(Signal.TRACES, got.SerializeToString(), encoding="protobuf", now_ns=NOW)
        )


@pytest.mark.parametrize(
    "name",
    ["plain", "upper hex", "times as numbers", "double", "double -0", "nested kvlist", "NUL",
     "escapes", "raw UTF-8", "snake case", "unknown fields", "nulls", "whitespace", "deep kvlist", "big length",
     "surrogate pair", "surrogate pair in capitals", "surrogate pair in a name", "escaped backslash before ud800",
     "empty parent", "int64 min", "short trace id", "zero ids", "time with a leading zero", "empty any value"],
)  # fmt: skip
def test_given_a_canonical_body_when_read_in_c_then_it_is_taken(name: str) -> None:
    assert c_reading(Signal.TRACES, ODD_BODIES[name]) is not None


@pytest.mark.parametrize(
    "name",
    ["not hex (base64 id)", "odd hex", "hex with a space", "time with a plus", "time as a float", "time past 2^64",
     "negative time", "kind as a name", "kind out of range", "kind as a string number", "flags past uint32",
     "flags negative", "dropped count as a bool", "double 1e400", "double NaN string", "double NaN literal",
     "double Infinity literal", "double as a string", "int64 past max", "int with an exponent", "bool as a string",
     "two oneof members", "bytes value", "lone high surrogate", "lone low surrogate", "control character",
     "surrogate pair and NUL", "NUL and a surrogate in an unknown field", "high surrogate then an escape",
     "high surrogate then text", "high surrogate at the end", "pair then a low surrogate",
     "escaped backslash before ud800 and NUL",
     "invalid UTF-8", "encoded surrogate", "overlong UTF-8", "the same field twice", "a field under both names",
     "null in a list", "list where a message is due", "message where a list is due", "string where a message is due",
     "trailing data", "trailing comma", "truncated", "not an object", "BOM", "deep unknown", "deeper kvlist",
     "time number with a leading zero"],
)  # fmt: skip
def test_given_a_body_outside_the_canonical_forms_when_read_in_c_then_it_is_left_to_the_python_reading(
    name: str,
) -> None:
    assert c_reading(Signal.TRACES, ODD_BODIES[name]) is None


@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_given_an_odd_body_when_decoded_then_the_answer_is_the_python_readings(name: str) -> None:
    # Given a body, valid or not: what the Python reading makes of it
    body = ODD_BODIES[name]
    reading = python_reading(Signal.TRACES, body)
    # When it is decoded (the C path first)
    # Then a body the Python reading refuses is refused (a 400), any other gives the records of its message
    if reading is InvalidInput:
        with pytest.raises(InvalidInput):
            decode_otlp(Signal.TRACES, body, encoding="json", now_ns=NOW)
    else:
        assert batch_to_json(decode_otlp(Signal.TRACES, body, encoding="json", now_ns=NOW, lazy=True).complete()) == (
            batch_to_json(decode_otlp(Signal.TRACES, reading.SerializeToString(), encoding="protobuf", now_ns=NOW))
        )


def test_given_bad_ids_when_decoded_then_the_span_is_rejected_with_the_python_paths_reason() -> None:
    for name, reason in (("short trace id", "trace_id must be 16 bytes, got 2"), ("zero ids", "all zeroes")):
        batch = decode_otlp(Signal.TRACES, ODD_BODIES[name], encoding="json", now_ns=NOW)
        assert [r.index for r in batch.rejected] == [0] and reason in batch.rejected[0].reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_given_any_mangled_body_when_read_in_c_then_it_is_the_python_reading_or_left_to_it(data: st.DataObject) -> None:
    # Given a valid body with some bytes replaced, inserted or removed
    body = bytearray(data.draw(st.sampled_from([v for k, v in ODD_BODIES.items() if k != "big length"])))
    for _ in range(data.draw(st.integers(1, 3))):
        if not body:
            break
        at = data.draw(st.integers(0, len(body) - 1))
        edit = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.sampled_from(list(b'{}[]",:0123456789-.eE \\u\x00\xff nulltruefalse')))
        if edit == "replace":
            body[at] = byte
        elif edit == "insert":
            body.insert(at, byte)
        else:
            del body[at]
    # When the C path reads it
    got = c_reading(Signal.TRACES, bytes(body))
    event(f"C path {'taken' if got is not None else 'left'}")
    # Then it gives the Python reading's message, or leaves it
    if got is not None:
        assert got == python_reading(Signal.TRACES, bytes(body))
