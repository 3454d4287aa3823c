"""OTLP/HTTP (/v1/traces, /v1/metrics, /v1/logs) through the real ingest handler in-process and the real Postgres.

Payloads are built with opentelemetry-proto (tests/helpers/otlp_payloads.py) and sent in both encodings,
with and without gzip; responses are decoded as the OTLP messages an exporter reads.
"""

from __future__ import annotations

import gzip as gzip_module
import json
import time
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from observai.telemetry import usage
from observai.telemetry.writer import clear_caches
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.helpers import otlp_payloads as payloads
from tests.helpers.ingest import (
    JSON,
    PROTOBUF,
    IngestProject,
    counts,
    logs_of,
    make_project,
    points_of,
    post_otlp,
    response_bytes,
    spans_of,
)
from tests.helpers.inprocess import Result
from tests.helpers.users import make_user

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
RESPONSES: dict[str, Any] = {
    "/v1/traces": ExportTraceServiceResponse,
    "/v1/metrics": ExportMetricsServiceResponse,
    "/v1/logs": ExportLogsServiceResponse,
}
REJECTED_FIELD = {
    "/v1/traces": "rejected_spans",
    "/v1/metrics": "rejected_data_points",
    "/v1/logs": "rejected_log_records",
}
BUILDERS = {
    "/v1/traces": payloads.traces_request,
    "/v1/metrics": payloads.metrics_request,
    "/v1/logs": payloads.logs_request,
}
# What each builder's request stores: spans; metric points (the stale gauge point is skipped); log records.
EXPECTED_ROWS = {"/v1/traces": ("spans", 7), "/v1/metrics": ("metric_points", 7), "/v1/logs": ("logs", 30)}


@pytest.fixture
def project(database_url: str) -> IngestProject:
    usage.reset_caches()
    clear_caches()
    return make_project()


def encode(message: Any, encoding: str) -> tuple[bytes, str]:
    if encoding == "protobuf":
        return payloads.to_protobuf(message), PROTOBUF
    return payloads.to_otlp_json(message), JSON


def export_response(path: str, result: Result, content_type: str) -> Any:
    """The Export*ServiceResponse of a 200, decoded in the request's encoding (which the response must use)."""
    assert result.status == 200, (result.status, response_bytes(result)[:500])
    assert result.header("content-type") == content_type
    message = RESPONSES[path]()
    body = response_bytes(result)
    if content_type == PROTOBUF:
        message.ParseFromString(body)
    else:
        json_format.Parse(body.decode(), message)
    return message


def rpc_status(result: Result, content_type: str) -> status_pb2.Status:
    """The google.rpc.Status body of a failure, decoded in the request's encoding."""
    assert result.header("content-type") == content_type, result.headers
    status = status_pb2.Status()
    body = response_bytes(result)
    if content_type == PROTOBUF:
        status.ParseFromString(body)
    else:
        json_format.Parse(body.decode(), status)
    assert status.message, body
    return status


# --- every signal, both encodings, with and without gzip ------------------------------------------


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("path", ["/v1/traces", "/v1/metrics", "/v1/logs"])
def test_export_is_accepted_in_both_encodings(
    database_url: str, project: IngestProject, path: str, encoding: str, gzip: bool
) -> None:
    # Given a realistic export request for the signal, in the encoding
    body, content_type = encode(BUILDERS[path](time.time_ns()), encoding)
    # When an exporter posts it (optionally gzip-compressed)
    result = post_otlp(path, project.headers, body, content_type=content_type, gzip=gzip)
    # Then 200 with an Export*ServiceResponse in the request's content type, no partial_success
    response = export_response(path, result, content_type)
    assert not response.HasField("partial_success")
    assert result.header("Retry-After") is None
    # And every item is stored for the project
    table, expected = EXPECTED_ROWS[path]
    assert counts(database_url, project.project_id)[table] == expected


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/metrics", "/v1/logs"])
def test_both_encodings_store_identical_rows(database_url: str, path: str) -> None:
    # Given the same request sent as protobuf to one project and as OTLP/JSON to another
    now = time.time_ns()
    message = BUILDERS[path](now)
    stored = []
    for encoding in ("protobuf", "json"):
        target = make_project()
        body, content_type = encode(message, encoding)
        export_response(path, post_otlp(path, target.bearer, body, content_type=content_type), content_type)
        read = {"/v1/traces": spans_of, "/v1/metrics": points_of, "/v1/logs": logs_of}[path]
        skip = {"org_id", "project_id", "id", "search", "created_at", "last_seen_at", "ingested_at"}
        stored.append([{k: v for k, v in r.items() if k not in skip} for r in read(database_url, target.project_id)])
    # Then the rows are the same, column by column
    assert stored[0] == stored[1]
    assert len(stored[0]) == EXPECTED_ROWS[path][1]


# --- what each signal maps to ---------------------------------------------------------------------


def test_traces_map_resource_scope_events_links_and_status(database_url: str, project: IngestProject) -> None:
    # Given the traces request (two resources, two scopes, events, a link, every kind and status)
    now = time.time_ns()
    body = payloads.to_protobuf(payloads.traces_request(now))
    # When it is exported
    export_response("/v1/traces", post_otlp("/v1/traces", project.headers, body), PROTOBUF)
    # Then spans carry ids, parent, kind, status, service and resource, scope, events and links
    spans = {s["span_id"]: s for s in spans_of(database_url, project.project_id)}
    root = spans[payloads.ROOT_SPAN_ID.hex()]
    child = spans[payloads.CHILD_SPAN_ID.hex()]
    worker = spans[payloads.LINKED_SPAN_ID.hex()]
    assert (root["trace_id"], root["parent_span_id"], root["name"]) == (
        payloads.TRACE_ID_A.hex(), None, "GET /checkout",
    )  # fmt: skip
    assert (root["kind"], root["status_code"], root["service"], root["duration_ns"]) == (
        "server", "ok", "checkout", 250 * payloads.MS,
    )  # fmt: skip
    assert root["trace_state"] == "rojo=00f067aa0ba902b7" and root["flags"] == 0x301
    assert root["resource"] == {
        "service.name": "checkout",
        "deployment.environment": "prod",
        "host.name": "web-1",
        "telemetry.sdk.language": "python",
    }
    assert root["scope"] == {
        "name": "opentelemetry.instrumentation.flask",
        "version": "0.48b0",
        "attributes": {"component": "http"},
    }
    assert root["attributes"] == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "url.path": "/checkout",
        "retry": False,
    }
    (event,) = root["events"]
    assert (event["name"], event["attributes"], event["dropped_attributes_count"]) == (
        "cache.miss", {"cache.key": "cart:42"}, 2,
    )  # fmt: skip
    (link,) = root["links"]
    assert (link["trace_id"], link["span_id"], link["trace_state"], link["attributes"]) == (
        payloads.TRACE_ID_B.hex(), payloads.LINKED_SPAN_ID.hex(), "congo=t61rcWkgMzE", {"link.reason": "batch"},
    )  # fmt: skip
    assert (child["parent_span_id"], child["kind"], child["status_code"], child["status_message"]) == (
        payloads.ROOT_SPAN_ID.hex(), "client", "error", "statement timeout",
    )  # fmt: skip
    assert [e["name"] for e in child["events"]] == ["retry", "exception"]
    assert child["events"][1]["attributes"]["exception.stacktrace"] == ["a", "b"]
    assert {s["kind"] for s in spans.values()} == {"internal", "server", "client", "producer", "consumer"}
    assert (worker["service"], worker["kind"], worker["trace_id"]) == ("worker", "consumer", payloads.TRACE_ID_B.hex())
    assert worker["scope"]["name"] == "celery" and worker["attributes"]["payload"] == "AAH/"  # bytes → base64
    assert {s["org_id"] for s in spans.values()} == {project.org_id}


def test_logs_map_severity_body_and_trace_correlation(database_url: str, project: IngestProject) -> None:
    # Given the logs request (every severity number, structured bodies, a correlated record, an event)
    now = time.time_ns()
    body = payloads.to_otlp_json(payloads.logs_request(now))
    # When it is exported as OTLP/JSON
    export_response("/v1/logs", post_otlp("/v1/logs", project.headers, body, content_type=JSON), JSON)
    # Then each record keeps its severity, text and body; service and resource; scope
    logs = logs_of(database_url, project.project_id)
    by_body = {r["body"]: r for r in logs}
    assert sorted(r["severity_number"] for r in logs if r["body"].startswith("message ")) == list(range(25))
    assert (by_body["message 17"]["severity_text"], by_body["message 0"]["severity_text"]) == ("ERROR", None)
    assert by_body["message 17"]["attributes"] == {"n": 17}
    assert all(r["service"] == "checkout" and r["resource"]["host.name"] == "web-1" for r in logs)
    assert all(r["scope"] == {"name": "app.logger", "version": "2.0", "attributes": {}} for r in logs)
    structured = [r for r in logs if r["body"].startswith("{") and "login" in r["body"]]
    assert json.loads(structured[0]["body"]) == {"event": "login", "user": {"id": 42, "admin": False}, "ratio": 0.5}
    assert json.loads(by_body['["a",1,true]']["body"]) == ["a", 1, True]
    failed = by_body["payment failed"]
    assert (failed["trace_id"], failed["span_id"], failed["severity_number"], failed["flags"]) == (
        payloads.TRACE_ID_A.hex(), payloads.CHILD_SPAN_ID.hex(), 17, 1,
    )  # fmt: skip
    no_time = by_body["no event time"]
    assert no_time["time"] == no_time["observed_time"]  # the observed time stands in for a missing event time
    event = next(r for r in logs if r["event_name"] == "browser.page_view")
    assert json.loads(event["body"]) == {"url": "/"}


def test_every_metric_type_keeps_its_semantics(database_url: str, project: IngestProject) -> None:
    # Given the metrics request: gauge, monotonic cumulative sum, non-monotonic delta sum, histogram,
    # exponential histogram, summary (and a NO_RECORDED_VALUE gauge point)
    now = time.time_ns()
    body = payloads.to_protobuf(payloads.metrics_request(now))
    # When it is exported gzip-compressed
    export_response("/v1/metrics", post_otlp("/v1/metrics", project.headers, body, gzip=True), PROTOBUF)
    # Then each series has its type, unit and semantics, each point its values and distribution
    points = points_of(database_url, project.project_id)
    gauges = {p["attributes"]["state"]: p for p in points if p["name"] == "system.memory.usage"}
    assert set(gauges) == {"used", "ratio"}  # the stale point is not stored
    assert (gauges["used"]["type"], gauges["used"]["value"], gauges["used"]["unit"]) == ("gauge", 1_048_576.0, "By")
    assert gauges["ratio"]["value"] == 0.75 and gauges["used"]["description"] == "Memory in use"
    assert gauges["used"]["monotonic"] is None and gauges["used"]["temporality"] is None
    assert gauges["used"]["attributes"]["service.name"] == "checkout"  # resource attributes are in the identity
    # And the instrumentation scope is kept on the series
    import psycopg

    with psycopg.connect(database_url) as conn:
        scopes = {row[0]["name"] for row in conn.execute(
            "select scope from public.metric_series where project_id = %s", (project.project_id,)
        )}  # fmt: skip
    assert scopes and None not in scopes
    by_name = {p["name"]: p for p in points}
    counter = by_name["http.server.requests"]
    assert (counter["type"], counter["value"], counter["monotonic"], counter["temporality"]) == (
        "sum", 1234.0, True, "cumulative",
    )  # fmt: skip
    assert counter["attributes"]["service.name"] == "checkout-override"  # a point attribute wins over the resource
    assert counter["start_time"] is not None and counter["start_time"] < counter["time"]
    (exemplar,) = counter["exemplars"]
    assert (exemplar["value"], exemplar["trace_id"], exemplar["span_id"], exemplar["attributes"]) == (
        1.0, payloads.TRACE_ID_A.hex(), payloads.ROOT_SPAN_ID.hex(), {"user.id": "u1"},
    )  # fmt: skip
    updown = by_name["queue.depth.change"]
    assert (updown["type"], updown["value"], updown["monotonic"], updown["temporality"]) == (
        "sum", -3.5, False, "delta",
    )  # fmt: skip
    hist = by_name["http.server.duration"]
    assert (hist["type"], hist["temporality"], hist["count"], hist["sum"], hist["min"], hist["max"]) == (
        "histogram", "cumulative", 6, 321.5, 1.5, 200.0,
    )  # fmt: skip
    assert hist["distribution"] == {"bounds": [10.0, 100.0], "counts": [2, 3, 1]}
    expo = by_name["temperature.delta"]
    assert (expo["type"], expo["temporality"], expo["count"], expo["sum"], expo["min"], expo["max"]) == (
        "exponential_histogram", "delta", 10, -4.25, -8.0, 6.0,
    )  # fmt: skip
    assert expo["distribution"] == {
        "scale": 3,
        "zero_count": 1,
        "zero_threshold": 0.001,
        "positive": {"offset": 2, "counts": [1, 2, 1]},
        "negative": {"offset": -1, "counts": [3, 0, 2]},
    }
    summary = by_name["rpc.latency"]
    assert (summary["type"], summary["count"], summary["sum"], summary["unit"]) == ("summary", 100, 12.5, "s")
    assert summary["distribution"] == {"quantiles": [[0.0, 0.01], [0.5, 0.1], [1.0, 0.9]]}
    assert counts(database_url, project.project_id)["metric_series"] == 7


# --- partial success ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_invalid_span_gives_partial_success(database_url: str, project: IngestProject, encoding: str) -> None:
    # Given a traces request in which one span has a 3-byte trace id
    message = payloads.traces_request(time.time_ns())
    message.resource_spans[0].scope_spans[0].spans[1].trace_id = b"abc"
    body, content_type = encode(message, encoding)
    # When it is exported
    response = export_response("/v1/traces", post_otlp("/v1/traces", project.headers, body,
                                                      content_type=content_type), content_type)  # fmt: skip
    # Then partial_success counts the rejected span and says why; the other six are stored
    assert response.HasField("partial_success")
    assert response.partial_success.rejected_spans == 1
    assert response.partial_success.error_message == "1 span rejected: span 1: trace_id must be 16 bytes, got 3"
    assert counts(database_url, project.project_id)["spans"] == 6


def test_invalid_log_records_and_points_give_partial_success(database_url: str, project: IngestProject) -> None:
    # Given a logs request with two records far in the past and a metrics request with a bad histogram
    now = time.time_ns()
    logs = payloads.logs_request(now)
    records = logs.resource_logs[0].scope_logs[0].log_records
    records[3].time_unix_nano = now - 30 * 86_400 * payloads.S
    records[4].severity_number = 99  # type: ignore[assignment]
    metrics = payloads.metrics_request(now)
    histogram = metrics.resource_metrics[0].scope_metrics[0].metrics[3].histogram.data_points[0]
    histogram.bucket_counts.append(7)  # four counts for two bounds
    # When both are exported
    log_response = export_response(
        "/v1/logs", post_otlp("/v1/logs", project.headers, payloads.to_protobuf(logs)), PROTOBUF
    )
    metric_response = export_response(
        "/v1/metrics",
        post_otlp("/v1/metrics", project.headers, payloads.to_otlp_json(metrics), content_type=JSON),
        JSON,
    )
    # Then each response counts its rejected items with the reasons
    assert log_response.partial_success.rejected_log_records == 2
    message = log_response.partial_success.error_message
    assert message.startswith("2 log records rejected: log record 3: time_unix_nano is more than 7 days in the past")
    assert "log record 4: severity_number 99" in message
    assert metric_response.partial_success.rejected_data_points == 1
    assert "data point 5: bucket_counts has 4 elements for 2 explicit_bounds" in (
        metric_response.partial_success.error_message
    )
    assert counts(database_url, project.project_id)["logs"] == 28
    assert counts(database_url, project.project_id)["metric_points"] == 6


# --- errors: status bodies in the request's encoding ----------------------------------------------


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_undecodable_body_is_400_with_a_status_body(project: IngestProject, content_type: str) -> None:
    # Given a body that is not an OTLP message in the announced encoding
    body = b"\xff\xff\xff\xff\x0f" if content_type == PROTOBUF else b'{"resourceSpans": [ oops'
    # When it is exported
    result = post_otlp("/v1/traces", project.headers, body, content_type=content_type)
    # Then 400 with a google.rpc.Status (INVALID_ARGUMENT) in the same encoding, no Retry-After
    assert result.status == 400
    status = rpc_status(result, content_type)
    assert status.code == 3 and "not valid" in status.message.replace("not a valid", "not valid")
    assert result.header("Retry-After") is None


def test_multi_member_gzip_body_is_read_whole(database_url: str, project: IngestProject) -> None:
    # Given two protobuf messages, each gzip-compressed, concatenated (protobuf merges concatenated messages)
    now = time.time_ns()
    first = payloads.to_protobuf(payloads.many_logs_request(2, now))
    second = payloads.to_protobuf(payloads.many_logs_request(3, now - 5 * payloads.S))
    headers = {**project.headers, "content-encoding": "gzip"}
    # When the body is exported
    result = post_otlp("/v1/logs", headers, gzip_module.compress(first) + gzip_module.compress(second))
    # Then all five records are stored, none silently dropped
    export_response("/v1/logs", result, PROTOBUF)
    assert counts(database_url, project.project_id)["logs"] == 5


def test_bad_gzip_is_400(project: IngestProject) -> None:
    # When the body claims gzip but is not
    result = post_otlp("/v1/logs", {**project.headers, "content-encoding": "gzip"}, b"not gzip at all")
    # Then 400 with a status body
    assert result.status == 400
    assert "compressed" in rpc_status(result, PROTOBUF).message


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_body_over_the_size_limit_is_413(project: IngestProject, content_type: str) -> None:
    # Given a body just over 6 MiB as sent
    body = b"\x00" * (6 * MIB + 1)
    # When it is exported
    result = post_otlp("/v1/metrics", project.headers, body, content_type=content_type)
    # Then 413 with a status body, no Retry-After
    assert result.status == 413
    assert "larger than" in rpc_status(result, content_type).message
    assert result.header("Retry-After") is None


def test_gzip_bomb_is_413(project: IngestProject) -> None:
    # Given 40 MiB of zeros compressed to a few tens of KiB
    bomb_source = b"\x00" * (40 * MIB)
    # When it is exported gzip-compressed
    result = post_otlp("/v1/logs", project.headers, bomb_source, gzip=True)
    # Then 413: refused without inflating it all
    assert result.status == 413
    assert "decompressed body" in rpc_status(result, PROTOBUF).message


def test_too_many_items_is_413(database_url: str, project: IngestProject) -> None:
    # Given 10,001 log records in one request
    body = payloads.to_protobuf(payloads.many_logs_request(10_001, time.time_ns()))
    # When it is exported
    result = post_otlp("/v1/logs", project.headers, body, gzip=True)
    # Then 413, and nothing stored
    assert result.status == 413
    assert "10000" in rpc_status(result, PROTOBUF).message
    assert counts(database_url, project.project_id)["logs"] == 0


def test_other_content_types_are_415(project: IngestProject) -> None:
    # When a body comes as text/plain
    result = post_otlp("/v1/traces", project.headers, b"hello", content_type="text/plain")
    # Then 415 with a status body, no Retry-After
    assert result.status == 415
    assert "application/x-protobuf" in rpc_status(result, PROTOBUF).message
    assert result.header("Retry-After") is None


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_key_without_ingest_scope_is_403_with_a_status_body(database_url: str, content_type: str) -> None:
    # Given a read-only key
    reader = make_project(scopes=("read",))
    body, _ = encode(payloads.traces_request(time.time_ns()), "protobuf" if content_type == PROTOBUF else "json")
    # When it exports spans
    result = post_otlp("/v1/traces", reader.headers, body, content_type=content_type)
    # Then 403 with PERMISSION_DENIED in the request's encoding, and nothing stored
    assert result.status == 403
    status = rpc_status(result, content_type)
    assert status.code == 7 and "ingest scope" in status.message
    assert result.header("Retry-After") is None
    assert counts(database_url, reader.project_id)["spans"] == 0


def test_user_jwt_and_missing_key_are_refused(db: Any) -> None:
    body = payloads.to_protobuf(payloads.logs_request(time.time_ns()))
    # When a user's JWT exports logs, and when nobody authenticates
    as_user = post_otlp("/v1/logs", make_user(db).headers, body)
    anonymous = post_otlp("/v1/logs", {}, body, content_type=JSON)
    # Then 403 (only API keys ingest) and 401 (UNAUTHENTICATED), both with status bodies
    assert as_user.status == 403 and rpc_status(as_user, PROTOBUF).code == 7
    assert anonymous.status == 401 and rpc_status(anonymous, JSON).code == 16
    assert anonymous.header("WWW-Authenticate") == 'Bearer realm="observai"'


def test_key_works_as_bearer_and_as_x_api_key(database_url: str, project: IngestProject) -> None:
    # When the same key exports once as Authorization: Bearer and once as x-api-key
    now = time.time_ns()
    for headers, n in ((project.bearer, 1), (project.headers, 2)):
        message = payloads.many_spans_request(3, now - n * payloads.S)
        export_response("/v1/traces", post_otlp("/v1/traces", headers, payloads.to_protobuf(message)), PROTOBUF)
    # Then both were stored under the key's project
    assert counts(database_url, project.project_id)["spans"] == 6


def test_daily_quota_is_429_with_retry_after(database_url: str, db: Any, project: IngestProject) -> None:
    # Given an organization at its free plan's daily event quota
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes)"
        " values (%s, (now() at time zone 'UTC')::date, 'traces', 1000000, 0)",
        (project.org_id,),
    )
    usage.reset_caches()
    # When an exporter sends spans
    body = payloads.to_otlp_json(payloads.traces_request(time.time_ns()))
    result = post_otlp("/v1/traces", project.headers, body, content_type=JSON)
    # Then 429 RESOURCE_EXHAUSTED with Retry-After and a clear message; nothing stored
    assert result.status == 429
    status = rpc_status(result, JSON)
    assert status.code == 8 and "daily event quota of the free plan reached" in status.message
    assert 1 <= int(result.header("Retry-After") or 0) <= 86_400
    assert counts(database_url, project.project_id)["spans"] == 0
