"""POST /v1/ingest, our native batch format, through the real ingest handler in-process and the real Postgres.

Envelope and rows, per-event rejections, idempotent replays, dedup, gzip and every request limit,
sanitised NUL/NaN values, metric type clashes, plan limits (series, cardinality) and the daily quota.
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from observai.auth.api_key_format import generate_key
from observai.telemetry import usage
from observai.telemetry.writer import clear_caches

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
    span,
    spans_of,
)
from tests.helpers.inprocess import Result
from tests.helpers.users import make_user
from tests.helpers.webhook_schemas import published_errors

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
def project(database_url: str) -> IngestProject:
    usage.reset_caches()
    clear_caches()
    return make_project()


def accepted(result: Result, status: int = 202) -> dict:
    assert result.status == status, result.text
    body = result.json()
    assert body["error"] is None, body
    return body["data"]


def refused(result: Result, status: int, code: str | None = None) -> dict:
    assert result.status == status, result.text
    body = result.json()
    assert body["data"] is None and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# --- the happy path: envelope and rows ------------------------------------------------------------


def test_mixed_batch_is_stored_with_the_right_columns(database_url: str, project: IngestProject) -> None:
    # Given one event of every kind, with values, attributes, services, severities and ids
    t = ago(120)
    trace_id, root_id, child_id = uuid.uuid4().hex, uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    events = [
        metric("cpu.usage", 0.75, at=t, attributes={"host": "web-1"}, service="api", unit="1"),
        metric("http.requests", 42, at=t, kind="sum", monotonic=True, temporality="delta", service="api"),
        metric(
            "http.duration",
            None,
            at=t,
            kind="histogram",
            count=6,
            sum=321.5,
            bounds=[10.0, 100.0],
            bucket_counts=[2, 3, 1],
        ),
        metric("rpc.latency", None, at=t, kind="summary", count=100, sum=12.5, quantiles=[[0.5, 0.1], [0.99, 0.9]]),
        log(
            "payment failed",
            at=t,
            severity="error",
            service="billing",
            trace_id=trace_id.upper(),
            span_id=child_id,
            attributes={"order": 42, "retry": True},
            event_id="log-1",
        ),
        log({"event": "login", "user": 7}, at=t + timedelta(milliseconds=1), severity=9),
        span(
            "GET /checkout",
            trace_id=trace_id,
            span_id=root_id,
            start=t,
            duration_ms=250,
            kind="server",
            status="ok",
            service="checkout",
            attributes={"http.status": 200},
            events=[{"name": "cache.miss", "time": iso(t + timedelta(milliseconds=5)), "attributes": {"k": "v"}}],
            links=[{"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "00f067aa0ba902b7"}],
        ),
        span(
            "SELECT carts",
            trace_id=trace_id,
            span_id=child_id,
            parent_span_id=root_id,
            duration_ms=None,
            start=t + timedelta(milliseconds=20),
            end_time=iso(t + timedelta(milliseconds=120)),
            kind="client",
            status="error",
            status_message="timeout",
            service="checkout",
        ),
    ]

    # When they are sent in one batch
    data = accepted(post_native(project.headers, events))

    # Then the envelope says stored, all accepted, none rejected
    assert data == {"status": "stored", "accepted": 8, "duplicates": 0, "rejected": []}
    assert counts(database_url, project.project_id) == {"metric_series": 4, "metric_points": 4, "logs": 2, "spans": 2}

    # And the metric points carry their values, types and semantics
    points = {p["name"]: p for p in points_of(database_url, project.project_id)}
    cpu = points["cpu.usage"]
    assert (cpu["type"], cpu["value"], cpu["unit"]) == ("gauge", 0.75, "1")
    assert cpu["attributes"] == {"host": "web-1", "service.name": "api"}
    assert cpu["time"] == t
    requests = points["http.requests"]
    assert (requests["type"], requests["value"], requests["monotonic"], requests["temporality"]) == (
        "sum", 42.0, True, "delta",
    )  # fmt: skip
    hist = points["http.duration"]
    assert (hist["type"], hist["count"], hist["sum"], hist["temporality"]) == ("histogram", 6, 321.5, "cumulative")
    assert hist["distribution"] == {"bounds": [10.0, 100.0], "counts": [2, 3, 1]}
    summary = points["rpc.latency"]
    assert (summary["type"], summary["count"], summary["sum"]) == ("summary", 100, 12.5)
    assert summary["distribution"] == {"quantiles": [[0.5, 0.1], [0.99, 0.9]]}

    # And the logs: body, severity, service, attributes, trace correlation (ids lowercased), event id
    first, second = logs_of(database_url, project.project_id)
    assert (first["body"], first["severity_number"], first["severity_text"], first["service"]) == (
        "payment failed", 17, "error", "billing",
    )  # fmt: skip
    assert (first["trace_id"], first["span_id"], first["event_id"]) == (trace_id, child_id, "log-1")
    assert first["attributes"] == {"order": 42, "retry": True}
    assert json.loads(second["body"]) == {"event": "login", "user": 7}
    assert second["severity_number"] == 9 and second["service"] is None

    # And the spans: parent link, kind, status, service, duration, events, links
    root, child = spans_of(database_url, project.project_id)
    assert (root["span_id"], root["parent_span_id"], root["kind"], root["status_code"]) == (
        root_id,
        None,
        "server",
        "ok",
    )
    assert root["duration_ns"] == 250_000_000 and root["service"] == "checkout"
    assert root["events"][0]["name"] == "cache.miss" and root["events"][0]["attributes"] == {"k": "v"}
    assert root["links"] == [
        {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "00f067aa0ba902b7", "attributes": {}}
    ]
    assert (child["parent_span_id"], child["trace_id"], child["duration_ns"]) == (root_id, trace_id, 100_000_000)
    assert (child["status_code"], child["status_message"], child["kind"]) == ("error", "timeout", "client")
    # And every row carries this project's organization
    assert {r["org_id"] for r in [first, second, root, child, cpu]} == {project.org_id}


def test_key_as_bearer_token_works_too(database_url: str, project: IngestProject) -> None:
    # Given the key sent as Authorization: Bearer <key>
    # When a log is ingested
    data = accepted(post_native(project.bearer, [log("via bearer")]))
    # Then it is stored for the key's project
    assert data["accepted"] == 1
    assert [r["body"] for r in logs_of(database_url, project.project_id)] == ["via bearer"]


# --- per-event rejections -------------------------------------------------------------------------


def test_invalid_events_are_rejected_with_index_and_reason_while_the_rest_land(
    database_url: str, project: IngestProject
) -> None:
    # Given a batch mixing good events with one bad event of each kind
    events = [
        log("good 0"),
        log("too old", at=datetime.now(UTC) - timedelta(days=8)),
        log("too new", at=datetime.now(UTC) + timedelta(hours=2)),
        log("many attributes", attributes={f"k{i}": i for i in range(129)}),
        log("long value", attributes={"k": "x" * 8193}),
        {"type": "log", "time": iso(ago())},  # no body
        {"type": "trace", "name": "nope"},  # unknown type
        metric("no.value", None),
        span("no end", duration_ms=None),
        metric("good.metric", 1.5),
        span("bad trace id", trace_id="xyz"),
        span("good span"),
    ]

    # When the batch is sent
    data = accepted(post_native(project.headers, events))

    # Then the good ones are accepted and each bad one is listed with its index and reason
    assert data["status"] == "stored"
    assert data["accepted"] == 3
    reasons = {r["index"]: r["reason"] for r in data["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert "days in the past" in reasons[1]
    assert "minutes in the future" in reasons[2]
    assert "128" in reasons[3] and "attributes" in reasons[3]
    assert "8192" in reasons[4]
    assert "body" in reasons[5]
    assert "trace" in reasons[6] or "tag" in reasons[6].lower()
    assert "value" in reasons[7]
    assert "end_time or duration_ms" in reasons[8]
    assert "trace_id" in reasons[10]

    # And exactly the good ones landed
    assert counts(database_url, project.project_id) == {"metric_series": 1, "metric_points": 1, "logs": 1, "spans": 1}
    assert [r["body"] for r in logs_of(database_url, project.project_id)] == ["good 0"]


# --- idempotency and dedup ------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_response_and_writes_nothing(
    database_url: str, project: IngestProject
) -> None:
    # Given a batch stored under an Idempotency-Key (one event rejected)
    events = [log("a"), log("b"), metric("m", 1.0), span("s"), log("old", at=datetime.now(UTC) - timedelta(days=9))]
    first = accepted(post_native(project.headers, events, idempotency_key="batch-1"))
    assert first["status"] == "stored" and first["accepted"] == 4 and len(first["rejected"]) == 1
    before = counts(database_url, project.project_id)

    # When the same body is sent again with the same key (twice)
    again = accepted(post_native(project.headers, events, idempotency_key="batch-1"))
    third = accepted(post_native(project.headers, events, idempotency_key="batch-1"))

    # Then the first response comes back, marked replayed, and no row was written
    for replay in (again, third):
        assert replay["status"] == "replayed"
        assert {k: v for k, v in replay.items() if k != "status"} == {k: v for k, v in first.items() if k != "status"}
    assert counts(database_url, project.project_id) == before


def test_same_idempotency_key_with_another_body_is_a_conflict(database_url: str, project: IngestProject) -> None:
    # Given a batch stored under a key
    accepted(post_native(project.headers, [log("first")], idempotency_key="k-409"))
    # When another body comes with the same key
    result = post_native(project.headers, [log("second")], idempotency_key="k-409")
    # Then 409, and the second body was not stored
    error = refused(result, 409, "idempotency_key_reused")
    assert "Idempotency-Key" in error["message"]
    assert [r["body"] for r in logs_of(database_url, project.project_id)] == ["first"]


def test_resent_batch_without_a_key_is_deduplicated(database_url: str, project: IngestProject) -> None:
    # Given a batch of logs with event ids, spans and metric points, stored once
    t = ago(30)
    events = [
        log("with id", at=t, event_id="evt-1"),
        log("with id 2", at=t, event_id="evt-2"),
        span("s1", trace_id="a" * 32, span_id="b" * 16, start=t),
        span("s2", trace_id="a" * 32, span_id="c" * 16, start=t),
        metric("dedup.gauge", 1.0, at=t, attributes={"x": "1"}),
        metric("dedup.gauge", 2.0, at=t, attributes={"x": "2"}),
    ]
    first = accepted(post_native(project.headers, events))
    assert first == {"status": "stored", "accepted": 6, "duplicates": 0, "rejected": []}
    before = counts(database_url, project.project_id)
    assert before == {"metric_series": 2, "metric_points": 2, "logs": 2, "spans": 2}

    # When the very same batch is re-sent without an Idempotency-Key (a client retry)
    second = accepted(post_native(project.headers, events))

    # Then every event is reported as a duplicate and nothing new is stored
    assert second == {"status": "stored", "accepted": 6, "duplicates": 6, "rejected": []}
    assert counts(database_url, project.project_id) == before

    # And a batch mixing old and new events stores only the new ones
    third = accepted(post_native(project.headers, [*events[:2], log("new", at=t, event_id="evt-3")]))
    assert third["duplicates"] == 2 and third["accepted"] == 3
    assert counts(database_url, project.project_id)["logs"] == 3


def test_resent_large_batch_with_new_events_stores_each_exactly_once(database_url: str, project: IngestProject) -> None:
    # Given 300 logs with event ids and 300 spans, stored once
    t = ago(20)
    old = [log(f"l{i}", at=t, event_id=f"big-{i}") for i in range(300)]
    old += [span(f"s{i}", trace_id="f" * 32, span_id=f"{i:016x}", start=t) for i in range(300)]
    assert accepted(post_native(project.headers, old))["accepted"] == 600

    # When they are re-sent with 300 new spans and 300 new points: the logs' COPY fails on a stored event while
    # the worker thread is building the spans' rows, and the batch is written again carefully
    new = [span(f"n{i}", trace_id="e" * 32, span_id=f"{i:016x}", start=t) for i in range(300)]
    new += [metric("big.gauge", float(i), at=t, attributes={"i": str(i)}) for i in range(300)]
    data = accepted(post_native(project.headers, old + new))

    # Then the stored ones are duplicates and every new event is stored exactly once
    assert data["duplicates"] == 600 and data["accepted"] == 1200 and data["rejected"] == []
    assert counts(database_url, project.project_id) == {
        "metric_series": 300, "metric_points": 300, "logs": 300, "spans": 600,
    }  # fmt: skip


def test_duplicates_inside_one_batch_are_written_once(database_url: str, project: IngestProject) -> None:
    # Given a batch holding the same log event, span and point twice
    t = ago(10)
    events = [log("x", at=t, event_id="same"), span("s", trace_id="d" * 32, span_id="e" * 16, start=t),
              metric("twice", 1.0, at=t)]  # fmt: skip
    # When it is sent
    data = accepted(post_native(project.headers, events + events))
    # Then each is stored once and the copies counted as duplicates
    assert data["duplicates"] == 3 and data["accepted"] == 6
    assert counts(database_url, project.project_id) == {"metric_series": 1, "metric_points": 1, "logs": 1, "spans": 1}


# --- bodies and request limits --------------------------------------------------------------------


def test_gzip_body_is_accepted(database_url: str, project: IngestProject) -> None:
    # Given a gzip-compressed batch
    events = [log(f"zipped {i}") for i in range(50)]
    # When it is sent with Content-Encoding: gzip
    data = accepted(post_native(project.headers, events, gzip=True))
    # Then every event is stored
    assert data["accepted"] == 50
    assert counts(database_url, project.project_id)["logs"] == 50


def test_multi_member_gzip_is_read_whole_and_trailing_garbage_refused(
    database_url: str, project: IngestProject
) -> None:
    # Given a batch compressed as two gzip members (as `cat a.gz b.gz` or pigz produce)
    text = json.dumps([log(f"member {i}") for i in range(4)]).encode()
    two_members = gzip.compress(text[:40]) + gzip.compress(text[40:])
    headers = {**project.headers, "content-encoding": "gzip"}
    # When it is sent
    data = accepted(post_native(headers, raw=two_members))
    # Then the whole batch is read and stored
    assert data["accepted"] == 4
    # And a gzip body followed by garbage is refused (400), not silently cut
    garbage = post_native(headers, raw=gzip.compress(json.dumps([log("x")]).encode()) + b"garbage")
    refused(garbage, 400, "bad_compression")
    assert counts(database_url, project.project_id)["logs"] == 4


def test_deeply_nested_json_is_400_not_500(project: IngestProject) -> None:
    # When a batch nests lists, or attribute objects, deeper than any parser's stack
    nested_list = post_native(project.headers, raw="[" * 100_000 + "]" * 100_000)
    nested_attrs = post_native(
        project.headers, raw='[{"type":"log","body":"x","attributes":' + '{"a":' * 5000 + "1" + "}" * 5000 + "}]"
    )
    # Then 400 with the envelope, never an internal error
    refused(nested_list, 400, "malformed_json")
    refused(nested_attrs, 400, "malformed_json")


def test_gzip_bomb_is_refused_with_413(database_url: str, project: IngestProject) -> None:
    # Given 40 MiB of zeros inside a JSON string, compressed to a few tens of KiB (< 6 MiB as sent)
    raw = b'[{"type":"log","body":"' + b"0" * (40 * MIB) + b'"}]'
    bomb = gzip.compress(raw, compresslevel=9)
    assert len(bomb) < 6 * MIB
    # When it is sent
    headers = {**project.headers, "content-encoding": "gzip"}
    result = post_native(headers, raw=bomb)
    # Then 413 in the envelope, naming the decompressed limit, and nothing stored
    error = refused(result, 413, "payload_too_large")
    assert "decompressed" in error["message"] and error["details"]["limit_bytes"] == 32 * MIB
    assert counts(database_url, project.project_id)["logs"] == 0


def test_body_over_6_mib_is_refused_with_413(project: IngestProject) -> None:
    # Given a body of 6 MiB + 1 byte as sent
    raw = "[" + " " * (6 * MIB - 1) + "]"
    assert len(raw) == 6 * MIB + 1
    # When it is sent
    result = post_native(project.headers, raw=raw)
    # Then 413
    error = refused(result, 413, "payload_too_large")
    assert error["details"]["limit_bytes"] == 6 * MIB


def test_more_than_10000_events_is_refused_with_413(database_url: str, project: IngestProject) -> None:
    # Given 10,001 valid events (gzip keeps the body small)
    at = iso(ago())
    events = [{"type": "log", "time": at, "body": "x"}] * 10_001
    # When they are sent
    result = post_native(project.headers, events, gzip=True)
    # Then 413 with the limit, and nothing stored
    error = refused(result, 413, "payload_too_large")
    assert "10000" in error["message"]
    assert counts(database_url, project.project_id)["logs"] == 0


def test_malformed_json_is_400(project: IngestProject) -> None:
    # When the body is not JSON, or JSON but not a list
    broken = post_native(project.headers, raw='[{"type": "log", ')
    not_list = post_native(project.headers, raw='{"type": "log", "body": "x"}')
    # Then 400 in the envelope
    refused(broken, 400, "malformed_json")
    refused(not_list, 400, "not_a_list")


def test_wrong_content_type_is_415(project: IngestProject) -> None:
    # When a batch is sent as text/plain
    result = post_native(project.headers, [log("x")], content_type="text/plain")
    # Then 415
    refused(result, 415, "unsupported_media_type")


def test_nul_characters_and_non_finite_attributes_are_stored_sanitised(
    database_url: str, project: IngestProject
) -> None:
    # Given raw JSON text with NUL characters in a body, attributes and names, and NaN / Infinity values
    at = iso(ago())
    raw = (
        "["
        f'{{"type":"log","time":"{at}","body":"a\\u0000b","service":"s\\u0000","attributes":'
        '{"k\\u0000":"v\\u0000","nan":NaN,"inf":Infinity,"neg":-Infinity}},'
        f'{{"type":"metric","name":"nan.gauge","time":"{at}","value":NaN,"attributes":{{"w":"x\\u0000"}}}},'
        f'{{"type":"metric","name":"inf.gauge","time":"{at}","value":Infinity}},'
        f'{{"type":"span","trace_id":"{"f" * 32}","span_id":"{"1" * 16}","name":"n\\u0000","start_time":"{at}",'
        '"duration_ms":1,"attributes":{"x":NaN,"y":"\\u0000"}}'
        "]"
    )
    json.loads(raw)  # Python's json accepts it (as many clients send it)

    # When the batch is sent
    result = post_native(project.headers, raw=raw)

    # Then it is stored (never a 500), with NUL replaced and non-finite attribute values kept as their names;
    # a metric value that is not finite is rejected with the reason (a query could never show it)
    data = accepted(result)
    assert data["accepted"] == 2
    assert data["rejected"] == [
        {"index": i, "reason": "value: must be a finite number (NaN and infinities are not stored)"} for i in (1, 2)
    ]
    (row,) = logs_of(database_url, project.project_id)
    assert "\x00" not in row["body"] and row["body"].startswith("a") and row["body"].endswith("b")
    assert "\x00" not in row["service"]
    assert row["attributes"]["nan"] == "NaN" and row["attributes"]["inf"] == "Infinity"
    assert row["attributes"]["neg"] == "-Infinity"
    assert all("\x00" not in k and "\x00" not in str(v) for k, v in row["attributes"].items())
    assert points_of(database_url, project.project_id) == []
    (stored_span,) = spans_of(database_url, project.project_id)
    assert "\x00" not in stored_span["name"] and stored_span["attributes"]["x"] == "NaN"


# --- metric semantics and plan limits -------------------------------------------------------------


def test_metric_type_clash_is_rejected_with_a_reason(database_url: str, project: IngestProject) -> None:
    # Given a series stored as a gauge
    accepted(post_native(project.headers, [metric("clash", 1.0, attributes={"a": "1"})]))
    # When the same name and attributes come as a sum (plus a fine event)
    data = accepted(
        post_native(project.headers, [log("fine"), metric("clash", 2.0, kind="sum", attributes={"a": "1"})])
    )
    # Then the sum is rejected with the reason and the rest lands
    assert data["accepted"] == 1
    assert data["rejected"] == [{"index": 1, "reason": "metric 'clash' is a gauge, not a sum"}]
    assert counts(database_url, project.project_id) == {"metric_series": 1, "metric_points": 1, "logs": 1, "spans": 0}


def test_metric_type_clash_within_one_batch_rejects_either_point(database_url: str, project: IngestProject) -> None:
    # Given a new series sent as a gauge and, later in the same batch, as a sum
    events = [metric("clash2", 1.0), metric("clash2", 2.0, kind="sum", at=ago(5))]
    # When the batch is sent
    data = accepted(post_native(project.headers, events))
    # Then exactly one of the two is rejected for the type clash, and the series has the other's type
    assert data["accepted"] == 1 and len(data["rejected"]) == 1
    (point,) = points_of(database_url, project.project_id)
    rejected_index = data["rejected"][0]["index"]
    kept = events[1 - rejected_index]
    assert point["type"] == kept.get("kind", "gauge")
    assert "is a" in data["rejected"][0]["reason"] and "not a" in data["rejected"][0]["reason"]


def test_metric_type_clash_within_one_batch_first_point_wins(project: IngestProject) -> None:
    # Given a new series sent as a gauge and, later in the same batch, as a sum
    events = [metric("clash3", 1.0), metric("clash3", 2.0, kind="sum", at=ago(5))]
    # When the batch is sent
    data = accepted(post_native(project.headers, events))
    # Then the first comer defines the series (as across batches): the sum, index 1, is the one rejected
    assert [r["index"] for r in data["rejected"]] == [1]


def _fill_series(db: psycopg.Connection, project: IngestProject, name: str, count: int) -> None:
    db.execute(
        "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes)"
        " select %s, %s, -g, %s, 'gauge', jsonb_build_object('i', g) from generate_series(1, %s) g",
        (project.org_id, project.project_id, name, count),
    )


def test_cardinality_per_metric_limit_of_the_plan(
    database_url: str, db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a free-plan project whose metric already has 999 series (the plan allows 1,000 per metric)
    _fill_series(db, project, "hot.metric", 999)
    # When three points of new series of that metric arrive (and one of another metric)
    events = [metric("hot.metric", 1.0, attributes={"user": f"u{i}"}) for i in range(3)]
    events.append(metric("cool.metric", 1.0))
    data = accepted(post_native(project.headers, events))
    # Then one new series fits, the two beyond the limit are rejected with the plan's message
    assert data["accepted"] == 2
    assert [r["index"] for r in data["rejected"]] == [1, 2]
    assert data["rejected"][0]["reason"] == (
        "cardinality limit of the free plan reached for 'hot.metric' (1000 series per metric)"
    )
    assert counts(database_url, project.project_id)["metric_points"] == 2


def test_series_per_project_limit_of_the_plan(
    database_url: str, db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a free-plan project with 9,999 series spread over metrics (the plan allows 10,000)
    _fill_series(db, project, "filler", 9_999)
    existing = counts(database_url, project.project_id)["metric_series"]
    assert existing == 9_999
    # When three new series arrive
    data = accepted(post_native(project.headers, [metric(f"brand.new.{i}", 1.0) for i in range(3)]))
    # Then one fits and the rest are rejected with the plan's series limit message
    assert data["accepted"] == 1
    assert [r["reason"] for r in data["rejected"]] == [
        "series limit of the free plan reached (10000 series per project)"
    ] * 2
    assert counts(database_url, project.project_id)["metric_series"] == 10_000


def test_lowered_plan_limit_applies(database_url: str, db: psycopg.Connection, project: IngestProject) -> None:
    # Given the free plan's series limit lowered to 2 (restored afterwards)
    saved = db.execute("select max_series from public.plans where plan = 'free'").fetchone()["max_series"]
    db.execute("update public.plans set max_series = 2 where plan = 'free'")
    usage.reset_caches()
    try:
        # When four points of four new series arrive
        data = accepted(post_native(project.headers, [metric("low", float(i), attributes={"i": i}) for i in range(4)]))
    finally:
        db.execute("update public.plans set max_series = %s where plan = 'free'", (saved,))
        usage.reset_caches()
    # Then two are stored and two rejected with the plan's message
    assert data["accepted"] == 2
    assert [(r["index"], r["reason"]) for r in data["rejected"]] == [
        (2, "series limit of the free plan reached (2 series per project)"),
        (3, "series limit of the free plan reached (2 series per project)"),
    ]
    assert counts(database_url, project.project_id)["metric_points"] == 2


def test_daily_quota_exceeded_is_429_with_retry_after(
    database_url: str, db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a free-plan organization that used 999,999 of its 1,000,000 events today
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes)"
        " values (%s, (now() at time zone 'UTC')::date, 'logs', 999999, 0)",
        (project.org_id,),
    )
    usage.reset_caches()
    # When a batch of two events arrives
    result = post_native(project.headers, [log("one"), log("two")])
    # Then 429 with Retry-After (seconds to 00:00 UTC) and a clear message; nothing stored
    error = refused(result, 429, "rate_limited")
    assert error["message"] == "daily event quota of the free plan reached: 1,000,000 events; resets at 00:00 UTC"
    retry_after = int(result.header("Retry-After") or 0)
    assert 1 <= retry_after <= 86_400
    assert counts(database_url, project.project_id)["logs"] == 0
    # And a second refusal the same day
    refused(post_native(project.headers, [log("three"), log("four")]), 429, "rate_limited")
    # Then the project's webhooks are told once (usage.quota_reached in the outbox), as the published schema says
    events = db.execute(
        "select project_id, payload from public.outbox_events where org_id = %s and type = 'usage.quota_reached'",
        (project.org_id,),
    ).fetchall()
    assert len(events) == 1 and events[0]["project_id"] == project.project_id
    data = events[0]["payload"]["data"]
    assert (data["quota"], data["limit"], data["action"]) == ("events_per_day", 1_000_000, "rejected")
    assert published_errors(events[0]["payload"]) == []
    # And a single event still fits
    usage.reset_caches()
    assert accepted(post_native(project.headers, [log("one")]))["accepted"] == 1


def test_a_replay_is_answered_even_over_quota(
    database_url: str, db: psycopg.Connection, project: IngestProject
) -> None:
    # Given a batch stored under an Idempotency-Key, and then the organization's quota used up
    batch = [log("kept")]
    first = accepted(post_native(project.headers, batch, idempotency_key="quota-replay"))
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes)"
        " values (%s, (now() at time zone 'UTC')::date, 'logs', 1000000, 0)",
        (project.org_id,),
    )
    usage.reset_caches()
    # When the client retries the same request
    replay = accepted(post_native(project.headers, batch, idempotency_key="quota-replay"))
    # Then it gets the first answer back (status replayed), not a 429: nothing new is written
    assert replay["status"] == "replayed" and replay["accepted"] == first["accepted"] == 1
    assert counts(database_url, project.project_id)["logs"] == 1


# --- who may ingest -------------------------------------------------------------------------------


def test_key_without_the_ingest_scope_is_403(database_url: str) -> None:
    # Given a project key with only the read scope
    reader = make_project(scopes=("read",))
    # When it sends a batch
    result = post_native(reader.headers, [log("x")])
    # Then 403 naming the missing scope, and nothing stored
    error = refused(result, 403, "scope_missing")
    assert "ingest scope" in error["message"]
    assert counts(database_url, reader.project_id)["logs"] == 0


def test_user_jwt_cannot_ingest(db: psycopg.Connection) -> None:
    # Given a signed-in user (a JWT, not an API key)
    user = make_user(db)
    # When they send a batch
    result = post_native(user.headers, [log("x")])
    # Then 403: only project API keys ingest
    refused(result, 403, "api_key_required")


def test_missing_or_unknown_key_is_401(database_url: str) -> None:
    # (database_url: the unknown keys are looked up, so the database must be there even when this test runs alone)
    # When a batch comes without credentials, with a malformed key, or with a well-formed unknown key
    missing = post_native({}, [log("x")])
    malformed = post_native({"x-api-key": "oai_nope"}, [log("x")])
    unknown = post_native({"x-api-key": generate_key().key}, [log("x")])
    unknown_bearer = post_native({"Authorization": f"Bearer {generate_key().key}"}, [log("x")])
    # Then 401 each time, with the WWW-Authenticate challenge
    for result in (missing, malformed, unknown, unknown_bearer):
        refused(result, 401)
        assert result.header("WWW-Authenticate")
