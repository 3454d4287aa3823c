"""OTLP/JSON through the ingest handler, now read in C (otlp/json_wire.py): the same answers as before.

Each body, odd or hostile, is sent as OTLP/JSON to one project and, as the message the Python reading of the JSON
makes of it (json.loads, the messages' constructors, ParseDict), as protobuf to another: same status, same
partial success, same rows. A body the Python reading refuses is a 400 with a google.rpc.Status.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from google.protobuf import json_format
from observai.errors import InvalidInput
from observai.telemetry import usage
from observai.telemetry.model import Signal
from observai.telemetry.writer import clear_caches
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.helpers import otlp_payloads as payloads
from tests.helpers.ingest import JSON, PROTOBUF, counts, make_project, post_otlp, response_bytes, spans_of
from tests.unit.test_otlp_json_wire import python_reading

pytestmark = pytest.mark.integration

SKIP = {"org_id", "project_id", "id", "search", "created_at", "ingested_at"}


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    usage.reset_caches()
    clear_caches()


def _traces(extra: str, now: int) -> bytes:
    span = (
        '{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "op", "kind": 2,'
        f' "startTimeUnixNano": "{now - 10**9}", "endTimeUnixNano": "{now - 10**8}"' + extra + "}"
    )
    ok = span.replace("eee19b7ec3c1b174", "eee19b7ec3c1b175").replace(extra, "")
    return ('{"resourceSpans": [{"scopeSpans": [{"spans": [' + ok + ", " + span + "]}]}]}").encode()


ODD = {
    "plain": "",
    "short trace id": ', "traceId": "5b8e"',
    "zero span id": ', "spanId": "0000000000000000"',
    "base64 id": ', "parentSpanId": "7uGbfsPBsXQ="',
    "NUL in a name": ', "name": "o\\u0000p"',
    "lone surrogate": ', "attributes": [{"key": "k", "value": {"stringValue": "a\\ud800"}}]',
    "NaN": ', "attributes": [{"key": "k", "value": {"doubleValue": "NaN"}}]',
    "1e400": ', "attributes": [{"key": "k", "value": {"doubleValue": 1e400}}]',
    "int64 past max": ', "attributes": [{"key": "k", "value": {"intValue": "9223372036854775808"}}]',
    "flags past uint32": ', "flags": 4294967296',
    "status code 7": ', "status": {"code": 7}',
    "deep": ', "attributes": [{"key": "k", "value": '
    + '{"kvlistValue": {"values": [{"key": "k", "value": ' * 40
    + '{"stringValue": "x"}'
    + "}]}}" * 40
    + "}]",
    "not JSON": ', "name": oops',
}


@pytest.mark.parametrize("name", list(ODD))
def test_an_odd_json_body_is_answered_as_the_python_reading_answers_it(database_url: str, name: str) -> None:
    # Given a traces body (two spans, the second one odd) as OTLP/JSON, and what the Python reading makes of it
    body = _traces(ODD[name], time.time_ns())
    reading = python_reading(Signal.TRACES, body)
    as_json, as_protobuf = make_project(), make_project()
    # When it is exported as JSON, and the Python reading's message as protobuf
    result = post_otlp("/v1/traces", as_json.headers, body, content_type=JSON)
    # Then a body the Python reading refuses is a 400 with a status, nothing stored
    if reading is InvalidInput:
        assert result.status == 400, response_bytes(result)[:300]
        assert "message" in json.loads(response_bytes(result))
        assert counts(database_url, as_json.project_id)["spans"] == 0
        return
    # and any other has the status, the partial success and the rows of the protobuf request
    reference = post_otlp("/v1/traces", as_protobuf.headers, reading.SerializeToString(), content_type=PROTOBUF)
    assert result.status == reference.status == 200
    got = json_format.Parse(response_bytes(result), ExportTraceServiceResponse())
    want = ExportTraceServiceResponse.FromString(response_bytes(reference))
    assert got == want
    stored = [[{k: v for k, v in r.items() if k not in SKIP} for r in spans_of(database_url, p.project_id)]
              for p in (as_json, as_protobuf)]  # fmt: skip
    assert stored[0] == stored[1] and stored[0]


def test_too_many_items_as_json_is_413_and_nothing_is_stored(database_url: str) -> None:
    # Given 10,001 log records in one OTLP/JSON request (read in C, written lazily like a protobuf one)
    project = make_project()
    body = payloads.to_otlp_json(payloads.many_logs_request(10_001, time.time_ns()))
    # When it is exported
    result = post_otlp("/v1/logs", project.headers, body, content_type=JSON, gzip=True)
    # Then 413 with a status body, and nothing stored
    assert result.status == 413
    assert "10000" in json.loads(response_bytes(result))["message"]
    assert counts(database_url, project.project_id)["logs"] == 0


@pytest.mark.parametrize(
    ("path", "build"),
    [("/v1/logs", payloads.many_logs_request), ("/v1/traces", payloads.many_spans_request),
     ("/v1/metrics", payloads.many_points_request)],
)  # fmt: skip
def test_the_benchmark_requests_as_json_store_the_protobuf_rows(database_url: str, path: str, build: Any) -> None:
    # Given the benchmark's requests (what the C path reads), sent in both encodings to two projects
    message = build(300, time.time_ns())
    projects = []
    for body, content_type in ((payloads.to_otlp_json(message), JSON), (payloads.to_protobuf(message), PROTOBUF)):
        project = make_project()
        assert post_otlp(path, project.headers, body, content_type=content_type).status == 200
        projects.append(project)
    # Then both store the same number of rows of the same table
    table = {"/v1/logs": "logs", "/v1/traces": "spans", "/v1/metrics": "metric_points"}[path]
    assert counts(database_url, projects[0].project_id)[table] == counts(database_url, projects[1].project_id)[table]
    assert counts(database_url, projects[0].project_id)[table] == 300
