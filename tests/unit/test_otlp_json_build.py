"""OTLP/JSON built by the messages' constructors (otlp/json_build.py) gives exactly ParseDict's messages.

For any request and any of its JSON spellings (lowerCamelCase or proto names, hex ids in either case, 64-bit
integers as numbers or strings): ``build_request`` answers the message ParseDict builds, or None, and then
``parse_request`` gives ParseDict's answer (the message, or InvalidInput with its reason).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.errors import InvalidInput
from observai.telemetry.model import Signal
from observai.telemetry.otlp.json_build import build_request
from observai.telemetry.otlp.parse import REQUEST_TYPES, hex_ids_to_base64, parse_request
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2

from tests.helpers.otlp_payloads import (
    any_value,
    key_values,
    logs_request,
    many_logs_request,
    many_points_request,
    many_spans_request,
    metrics_request,
    resource,
    to_otlp_dict,
    traces_request,
)

NOW = 1_795_000_000 * 1_000_000_000
REQUESTS = {
    Signal.LOGS: [logs_request(NOW), many_logs_request(20, NOW)],
    Signal.TRACES: [traces_request(NOW), many_spans_request(20, NOW)],
    Signal.METRICS: [metrics_request(NOW), many_points_request(30, NOW)],
}


def parse_dict(signal: Signal, document: dict[str, Any]) -> Any:
    """ParseDict's message, as parse.py calls it (hex ids rewritten first)."""
    copy = json.loads(json.dumps(document))
    hex_ids_to_base64(signal, copy)
    message = REQUEST_TYPES[signal]()
    json_format.ParseDict(copy, message, ignore_unknown_fields=True)
    return message


def spellings(message: Any) -> list[dict[str, Any]]:
    camel = to_otlp_dict(message)
    return [
        camel,
        to_otlp_dict(message, snake_case=True),
        to_otlp_dict(message, upper_hex=True),
        _int64_as_numbers(camel),
    ]


_INT64_KEYS = ("UnixNano", "intValue", "asInt", "count", "Count")


def _int64_as_numbers(node: Any, key: str = "") -> Any:
    """The document with its 64-bit integers (times, counts, int values) as JSON numbers, not strings."""
    if isinstance(node, dict):
        return {k: _int64_as_numbers(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_int64_as_numbers(v, key) for v in node]
    if isinstance(node, str) and key.endswith(_INT64_KEYS) and node.lstrip("-").isdigit():
        return int(node)
    return node


@pytest.mark.parametrize("signal", list(Signal))
def test_given_sample_requests_when_built_then_they_are_parse_dicts_messages(signal: Signal) -> None:
    for message in REQUESTS[signal]:
        for document in spellings(message):
            built = build_request(REQUEST_TYPES[signal], json.loads(json.dumps(document)))
            assert built is not None
            assert built == parse_dict(signal, document) == message


def _log_document(**record: Any) -> dict[str, Any]:
    return {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}


@pytest.mark.parametrize(
    "record",
    [
        {"timeUnixNano": str(NOW), "severityNumber": "SEVERITY_NUMBER_INFO"},  # an enum by name
        {"timeUnixNano": float(NOW)},  # a 64-bit integer as a float
        {"timeUnixNano": "1e18"},
        {"timeUnixNano": True},  # a bool where an integer is due
        {"traceId": "W47/95gDgQPSabYzgT/GDA=="},  # base64, protobuf's standard JSON
        {"body": {"doubleValue": "NaN"}},  # NaN as a string
        {"body": {"stringValue": "a", "intValue": "1"}},  # two fields of one oneof
        {"timeUnixNano": str(NOW), "time_unix_nano": str(NOW)},  # one field under both names
        {"attributes": {"k": "v"}},  # not a list: ParseDict's error
        {"timeUnixNano": "-1"},  # out of the field's range
        {"severityNumber": 99},  # not a SeverityNumber value
        {"flags": 2**32},
    ],
    ids=repr,
)
def test_given_a_form_parse_dict_must_judge_when_built_then_it_is_left_to_it(record: dict[str, Any]) -> None:
    document = _log_document(**record)
    assert build_request(ExportLogsServiceRequest, json.loads(json.dumps(document))) is None
    # ...and parse_request answers as ParseDict does: its message, or InvalidInput
    body = json.dumps(document).encode()
    try:
        expected = parse_dict(Signal.LOGS, document)
    except (json_format.ParseError, ValueError, TypeError):
        with pytest.raises(InvalidInput):
            parse_request(Signal.LOGS, body, "json")
    else:
        assert parse_request(Signal.LOGS, body, "json") == expected


def test_given_unknown_fields_and_nulls_when_built_then_they_are_ignored_as_parse_dict_ignores_them() -> None:
    document = _log_document(timeUnixNano=str(NOW), somethingNew={"x": 1}, severityText=None, body={"stringValue": "x"})
    built = build_request(ExportLogsServiceRequest, document)
    assert built is not None and built == parse_dict(Signal.LOGS, document)


# --- any request -------------------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.binary(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _logs_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=draw(st.integers(0, 2**64 - 1)),
            observed_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
            severity_number=draw(st.integers(0, 24)),
            severity_text=draw(st.text(max_size=5)),
            body=any_value(draw(_values)),
            attributes=key_values(draw(st.dictionaries(st.text(max_size=6), _values, max_size=4))),
            trace_id=draw(st.binary(min_size=16, max_size=16) | st.just(b"")),
            span_id=draw(st.binary(min_size=8, max_size=8) | st.just(b"")),
            flags=draw(st.integers(0, 2**32 - 1)),
            dropped_attributes_count=draw(st.integers(0, 2**32 - 1)),
            event_name=draw(st.text(max_size=5)),
        )
        for _ in range(draw(st.integers(1, 3)))
    ]
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(resource=resource("svc"), scope_logs=[logs_pb2.ScopeLogs(log_records=records)])
        ]
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_logs_requests())
def test_given_any_logs_request_when_built_then_it_is_parse_dicts_message(message: ExportLogsServiceRequest) -> None:
    for document in spellings(message):
        built = build_request(ExportLogsServiceRequest, json.loads(json.dumps(document)))
        assert built is not None
        assert built == parse_dict(Signal.LOGS, document) == message


def test_given_a_double_that_json_cannot_carry_when_built_then_parse_dict_takes_it() -> None:
    message = ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                scope_logs=[logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(body=any_value(math.inf))])]
            )
        ]
    )
    document = to_otlp_dict(message)  # "Infinity": a string where a double is due
    assert build_request(ExportLogsServiceRequest, document) is None
    assert parse_request(Signal.LOGS, json.dumps(document).encode(), "json") == message


def test_given_an_unpaired_surrogate_when_parsed_then_it_is_stored_as_u_fffd() -> None:
    # Given OTLP/JSON whose body holds an unpaired surrogate escape (no protobuf string can hold it)
    body = json.dumps(_log_document(body={"stringValue": "lone \ud800"})).encode()
    # When parsed, Then the record is kept with U+FFFD in its place, as every telemetry text
    request = parse_request(Signal.LOGS, body, "json")
    assert request.resource_logs[0].scope_logs[0].log_records[0].body.string_value == "lone \ufffd"
