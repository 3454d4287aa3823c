"""OTLP/HTTP responses: Export*ServiceResponse with partial success, google.rpc.Status, rejection summaries."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from observai.telemetry.model import Batch, Rejection, Signal
from observai.telemetry.otlp import encode_export_response, encode_status, summarise_rejections
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

RESPONSES = [
    (Signal.TRACES, ExportTraceServiceResponse, "rejected_spans", "rejectedSpans"),
    (Signal.LOGS, ExportLogsServiceResponse, "rejected_log_records", "rejectedLogRecords"),
    (Signal.METRICS, ExportMetricsServiceResponse, "rejected_data_points", "rejectedDataPoints"),
]


def parse(response_type: type, body: bytes, encoding: str):  # type: ignore[no-untyped-def]
    message = response_type()
    if encoding == "protobuf":
        message.ParseFromString(body)
    else:
        json_format.Parse(body, message)
    return message


@pytest.mark.parametrize(("signal", "response_type", "field", "json_key"), RESPONSES)
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_partial_success_round_trips(
    signal: Signal, response_type: type, field: str, json_key: str, encoding: str
) -> None:
    # Given 3 rejected items and a message
    body = encode_export_response(signal, rejected=3, message="3 rejected: because", encoding=encoding)  # type: ignore[arg-type]
    # When the client's proto class reads the response
    response = parse(response_type, body, encoding)
    # Then partial_success carries the count and the message
    assert response.HasField("partial_success")
    assert getattr(response.partial_success, field) == 3
    assert response.partial_success.error_message == "3 rejected: because"
    if encoding == "json":  # lowerCamelCase keys, as the OTLP/JSON spec requires
        document = json.loads(body)
        assert set(document) == {"partialSuccess"}
        assert int(document["partialSuccess"][json_key]) == 3
        assert document["partialSuccess"]["errorMessage"] == "3 rejected: because"


@pytest.mark.parametrize(("signal", "response_type", "field", "json_key"), RESPONSES)
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_full_success_leaves_partial_success_unset(
    signal: Signal, response_type: type, field: str, json_key: str, encoding: str
) -> None:
    for message in (None, ""):
        body = encode_export_response(signal, rejected=0, message=message, encoding=encoding)  # type: ignore[arg-type]
        assert body == (b"" if encoding == "protobuf" else b"{}")
        assert not parse(response_type, body, encoding).HasField("partial_success")


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_a_warning_with_nothing_rejected_sets_partial_success_with_zero(encoding: str) -> None:
    # The spec lets a server convey a warning: rejected_<signal> = 0 and a non-empty error_message
    body = encode_export_response(Signal.LOGS, rejected=0, message="bodies over 64 KiB were cut", encoding=encoding)  # type: ignore[arg-type]
    response = parse(ExportLogsServiceResponse, body, encoding)
    assert response.HasField("partial_success")
    assert response.partial_success.rejected_log_records == 0
    assert response.partial_success.error_message == "bodies over 64 KiB were cut"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (3, "the body is not valid JSON"),
        (8, "quota exceeded"),
        (14, "try later: «ünïcode» ✓"),
        (0, ""),
        (3, ""),
        (0, "x" * 300),
    ],
)
def test_status_round_trips_through_google_rpc_status(code: int, message: str) -> None:
    status = status_pb2.Status()
    status.ParseFromString(encode_status(code, message, "protobuf"))
    assert (status.code, status.message) == (code, message)
    assert encode_status(code, message, "protobuf") == status_pb2.Status(code=code, message=message).SerializeToString()

    from_json = json_format.Parse(encode_status(code, message, "json"), status_pb2.Status())
    assert (from_json.code, from_json.message) == (code, message)


def test_a_negative_status_code_is_encoded_as_protobuf_does() -> None:
    assert encode_status(-1, "odd", "protobuf") == status_pb2.Status(code=-1, message="odd").SerializeToString()


def test_summary_names_each_rejection() -> None:
    batch = Batch(
        rejected=[
            Rejection(2, "trace_id must be 16 bytes, got 0", Signal.TRACES),
            Rejection(5, "name is empty", Signal.TRACES),
        ]
    )
    assert (
        summarise_rejections(batch)
        == "2 spans rejected: span 2: trace_id must be 16 bytes, got 0; span 5: name is empty"
    )
    one_log = Batch(rejected=[Rejection(0, "body is longer than 65536 characters", Signal.LOGS)])
    assert summarise_rejections(one_log) == "1 log record rejected: log record 0: body is longer than 65536 characters"
    mixed = Batch(rejected=[Rejection(0, "a", Signal.LOGS), Rejection(1, "b", Signal.METRICS)])
    assert summarise_rejections(mixed) == "2 events rejected: event 0: a; event 1: b"
    assert summarise_rejections(Batch()) == ""


def test_summary_is_capped_and_says_how_many_were_left_out() -> None:
    batch = Batch(
        rejected=[Rejection(i, "time_unix_nano is more than 7 days in the past", Signal.METRICS) for i in range(500)]
    )
    summary = summarise_rejections(batch)
    assert len(summary) <= 1000
    assert summary.startswith(
        "500 data points rejected: data point 0: time_unix_nano is more than 7 days in the past; "
    )
    shown = summary.count("data point ")  # "data points rejected" does not match
    assert summary.endswith(f"; and {500 - shown} more")

    long_reason = Batch(rejected=[Rejection(0, "x" * 5000, Signal.TRACES)])
    assert len(summarise_rejections(long_reason)) <= 1000
