"""Hostile input to the ingest routes: every event that can be refused is refused alone, with its index and
reason; the good events beside it are stored; nothing is accepted and then dropped; never a 500.

Each case was found by trying the running service as an attacker would (issue: hardening what has landed).
"""

from __future__ import annotations

import json

import pytest
from observai.telemetry import usage
from observai.telemetry.writer import clear_caches
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import Histogram, HistogramDataPoint, Metric, ResourceMetrics

from tests.helpers.ingest import (
    IngestProject,
    ago,
    counts,
    iso,
    log,
    logs_of,
    make_project,
    metric,
    points_of,
    post_native,
    post_otlp,
    response_bytes,
    span,
    spans_of,
)
from tests.helpers.inprocess import Result

pytestmark = pytest.mark.integration

U64_MAX = 2**64 - 1


@pytest.fixture
def project(database_url: str) -> IngestProject:
    usage.reset_caches()
    clear_caches()
    return make_project(label="Hostile")


def ok(result: Result, status: int = 202) -> dict:
    assert result.status == status, result.text
    body = result.json()
    assert body["error"] is None, body
    return body["data"]


def reasons(data: dict) -> dict[int, str]:
    return {r["index"]: r["reason"] for r in data["rejected"]}


# --- text Postgres cannot hold --------------------------------------------------------------------------


def test_a_nul_in_a_metric_name_is_stored_escaped_never_a_500(database_url: str, project: IngestProject) -> None:
    # Given a metric whose name holds a NUL character, beside a good log line
    raw = json.dumps([metric("cpu\u0000load", 1.5), log("fine")])
    # When the batch is sent
    data = ok(post_native(project.headers, raw=raw))
    # Then both are stored; the NUL is replaced by U+FFFD, as in every telemetry text (documented)
    assert data["accepted"] == 2 and data["rejected"] == []
    (point,) = points_of(database_url, project.project_id)
    assert point["name"] == "cpu\ufffdload"
    # And a second batch with the same name finds the same series
    ok(post_native(project.headers, raw=json.dumps([metric("cpu\u0000load", 2.5)])))
    assert counts(database_url, project.project_id)["metric_series"] == 1


def test_a_lone_surrogate_in_a_log_body_does_not_sink_the_batch(database_url: str, project: IngestProject) -> None:
    # Given a log body holding a lone surrogate escape, beside a good log line and a good span
    at = iso(ago())
    raw = (
        f'[{{"type":"log","time":"{at}","body":"bad \\udc00 half"}},'
        f'{{"type":"log","time":"{at}","body":"good","attributes":{{"k\\ud800":"v\\udfff"}}}},'
        f"{json.dumps(span('GET /'))}]"
    )
    # When the batch is sent
    data = ok(post_native(project.headers, raw=raw))
    # Then everything is stored, each lone surrogate replaced by U+FFFD (a well-formed pair is kept)
    assert data["accepted"] == 3 and data["rejected"] == []
    bodies = sorted(row["body"] for row in logs_of(database_url, project.project_id))
    assert bodies == ["bad \ufffd half", "good"]
    good = next(r for r in logs_of(database_url, project.project_id) if r["body"] == "good")
    assert good["attributes"] == {"k\ufffd": "v\ufffd"}
    assert len(spans_of(database_url, project.project_id)) == 1


def test_a_surrogate_pair_escape_is_kept(database_url: str, project: IngestProject) -> None:
    # Given an emoji spelled as a surrogate pair escape, in a batch that takes the slow path (a bad event)
    at = iso(ago())
    raw = f'[{{"type":"log","time":"{at}","body":"\\ud83d\\ude00"}},{{"type":"log"}}]'
    data = ok(post_native(project.headers, raw=raw))
    # Then the emoji is stored as it is
    assert data["accepted"] == 1 and list(reasons(data)) == [1]
    assert [r["body"] for r in logs_of(database_url, project.project_id)] == ["\U0001f600"]


def test_invalid_utf8_is_refused_whole_with_400(database_url: str, project: IngestProject) -> None:
    # Given a JSON batch whose bytes are not UTF-8
    at = iso(ago())
    raw = f'[{{"type":"log","time":"{at}","body":"caf'.encode() + b"\xe9" + b'"}]'
    # When it is sent
    result = post_native(project.headers, raw=raw)
    # Then 400 (JSON text is UTF-8: RFC 8259), nothing stored, never U+FFFD in its place
    assert result.status == 400, result.text
    assert result.json()["error"]["code"] == "invalid_utf8"
    assert result.json()["error"]["details"]["position"] == raw.index(b"\xe9")
    assert counts(database_url, project.project_id)["logs"] == 0


# --- numbers out of range -------------------------------------------------------------------------------


def test_a_huge_span_duration_is_rejected_alone(database_url: str, project: IngestProject) -> None:
    # Given a good log line next to a span lasting 1e308 ms
    events = [log("kept"), span("forever", duration_ms=1e308)]
    # When the batch is sent
    data = ok(post_native(project.headers, events))
    # Then the span is rejected with its index and reason, and the log line is stored
    assert data["accepted"] == 1
    assert list(reasons(data)) == [1] and "duration_ms" in reasons(data)[1]
    assert [r["body"] for r in logs_of(database_url, project.project_id)] == ["kept"]


@pytest.mark.parametrize(
    "fields",
    [
        {"count": 2**64, "bounds": [1.0], "bucket_counts": [2**64, 0], "sum": 1.0},
        {"count": 2**63, "bounds": [1.0], "bucket_counts": [2**63, 0], "sum": 1.0},
        {"count": 2.5e36, "bounds": [1.0], "bucket_counts": [1, 0], "sum": 1.0},
    ],
    ids=["2^64", "2^63", "2.5e36"],
)
def test_histogram_counts_past_bigint_are_rejected_alone(
    database_url: str, project: IngestProject, fields: dict
) -> None:
    # Given a histogram whose count is past what a bigint holds, beside a good gauge
    events = [metric("fine", 1.0), metric("lat", None, kind="histogram", **fields)]
    # When the batch is sent
    data = ok(post_native(project.headers, events))
    # Then only the histogram is rejected, with the field named
    assert data["accepted"] == 1
    assert list(reasons(data)) == [1] and "count" in reasons(data)[1]
    assert [p["name"] for p in points_of(database_url, project.project_id)] == ["fine"]


@pytest.mark.parametrize("value", ["1e400", "-1e400", "NaN", "Infinity"])
def test_non_finite_metric_values_are_rejected_never_accepted_and_dropped(
    database_url: str, project: IngestProject, value: str
) -> None:
    # Given a gauge whose value is not a finite number (1e400 parses as infinity), beside a good one
    at = iso(ago())
    raw = (
        f'[{{"type":"metric","name":"inf","time":"{at}","value":{value}}},'
        f'{{"type":"metric","name":"ok","time":"{at}","value":1}}]'
    )
    # When the batch is sent
    data = ok(post_native(project.headers, raw=raw))
    # Then it is rejected with a reason (queries could never show it), and the good one is stored
    assert data["accepted"] == 1
    assert "finite" in reasons(data)[0]
    assert [p["name"] for p in points_of(database_url, project.project_id)] == ["ok"]


def test_otlp_histogram_count_of_u64_max_is_rejected_in_partial_success(
    database_url: str, project: IngestProject
) -> None:
    # Given an OTLP protobuf histogram whose count is 2^64 - 1 (a legal fixed64), beside a good one
    now = int(ago(30).timestamp() * 1e9)

    def point(count: int) -> HistogramDataPoint:
        return HistogramDataPoint(
            time_unix_nano=now, count=count, sum=1.0, explicit_bounds=[1.0], bucket_counts=[count, 0]
        )

    request = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                scope_metrics=[
                    {
                        "metrics": [
                            Metric(
                                name="big", histogram=Histogram(data_points=[point(U64_MAX)], aggregation_temporality=1)
                            ),
                            Metric(
                                name="small", histogram=Histogram(data_points=[point(3)], aggregation_temporality=1)
                            ),
                        ]
                    }
                ]
            )
        ]
    )
    # When it is exported
    result = post_otlp("/v1/metrics", project.headers, request.SerializeToString())
    # Then 200 with the big one rejected in partial_success, and the small one stored
    assert result.status == 200, result.text
    answer = ExportMetricsServiceResponse.FromString(response_bytes(result))
    assert answer.partial_success.rejected_data_points == 1
    assert "count" in answer.partial_success.error_message
    assert [p["name"] for p in points_of(database_url, project.project_id)] == ["small"]


def test_otlp_json_with_an_invalid_trace_id_reports_the_rejection(database_url: str, project: IngestProject) -> None:
    # Given OTLP/JSON logs, one with traceId "xyz" and one without ids
    now = str(int(ago(30).timestamp() * 1e9))
    body = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"timeUnixNano": now, "body": {"stringValue": "bad id"}, "traceId": "xyz"},
                            {"timeUnixNano": now, "body": {"stringValue": "no id"}},
                        ]
                    }
                ]
            }
        ]
    }
    # When it is exported
    result = post_otlp("/v1/logs", project.headers, json.dumps(body).encode(), content_type="application/json")
    # Then the bad record is never stored with its id silently removed: it is rejected with a message
    assert result.status == 200, result.text
    answer = json.loads(result.text)
    assert answer["partialSuccess"]["rejectedLogRecords"] in (1, "1")
    assert "trace_id must be 16 bytes" in answer["partialSuccess"]["errorMessage"]
    assert [r["body"] for r in logs_of(database_url, project.project_id)] == ["no id"]


# --- a batch with nothing stored ------------------------------------------------------------------------


def test_a_batch_with_every_event_rejected_is_422_with_the_reasons(database_url: str, project: IngestProject) -> None:
    # Given a batch whose every event is older than the accepted window
    old = ago(400 * 86400)
    events = [log("old", at=old), metric("old", 1.0, at=old)]
    # When it is sent
    result = post_native(project.headers, events)
    # Then 422: nothing was stored, and the per-event reasons are in the error's details
    assert result.status == 422, result.text
    error = result.json()["error"]
    assert error["code"] == "all_events_rejected"
    assert [r["index"] for r in error["details"]["rejected"]] == [0, 1]
    assert all(r["reason"] for r in error["details"]["rejected"])
    assert counts(database_url, project.project_id)["logs"] == 0


def test_an_empty_batch_is_still_accepted(database_url: str, project: IngestProject) -> None:
    # Given an empty list (nothing to store, nothing refused)
    data = ok(post_native(project.headers, []))
    # Then it is not an error
    assert data["accepted"] == 0 and data["rejected"] == []


def test_deep_nesting_in_an_attribute_is_400_never_a_500(database_url: str, project: IngestProject) -> None:
    # Given a log whose attribute nests 10,000 levels deep
    at = iso(ago())
    raw = f'[{{"type":"log","time":"{at}","body":"x","attributes":{{"a":' + "[" * 10_000 + "]" * 10_000 + "}}]"
    result = post_native(project.headers, raw=raw)
    # Then a client error, never a 500
    assert result.status in (400, 202), result.text
    if result.status == 202:
        assert reasons(result.json()["data"])


@pytest.mark.parametrize("text", ["bad \\udc00 half", "nul \\u0000 inside"], ids=["lone-surrogate", "nul"])
def test_otlp_json_text_postgres_cannot_hold_is_stored_as_u_fffd(
    database_url: str, project: IngestProject, text: str
) -> None:
    # Given OTLP/JSON logs whose body and attribute hold a lone surrogate or a NUL, beside a clean record
    now = str(int(ago(30).timestamp() * 1e9))
    raw = (
        '{"resourceLogs":[{"scopeLogs":[{"logRecords":['
        f'{{"timeUnixNano":"{now}","body":{{"stringValue":"{text}"}},'
        f'"attributes":[{{"key":"k","value":{{"stringValue":"{text}"}}}}]}},'
        f'{{"timeUnixNano":"{now}","body":{{"stringValue":"clean"}}}}]}}]}}]}}'
    )
    # When it is exported
    result = post_otlp("/v1/logs", project.headers, raw.encode(), content_type="application/json")
    # Then both records are stored, U+FFFD in place of the character Postgres cannot hold
    assert result.status == 200, result.text
    rows = logs_of(database_url, project.project_id)
    assert sorted(r["body"] for r in rows) == sorted(
        ["clean", text.replace("\\udc00", "\ufffd").replace("\\u0000", "\ufffd")]
    )


def test_a_span_ending_in_year_9999_is_rejected_alone(database_url: str, project: IngestProject) -> None:
    # Given a span whose end_time is 9999-12-31: its duration in nanoseconds is past a bigint
    events = [log("kept"), span("far", duration_ms=None, end_time="9999-12-31T23:59:59Z")]
    # When the batch is sent
    data = ok(post_native(project.headers, events))
    # Then the span alone is rejected with a reason, and the log line is stored
    assert data["accepted"] == 1 and "duration" in reasons(data)[1]
    assert [r["body"] for r in logs_of(database_url, project.project_id)] == ["kept"]
