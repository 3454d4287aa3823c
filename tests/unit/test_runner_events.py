"""Events as AWS builds them (HTTP API payload 2.0, scheduled events), schedules, context, responses."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from observai_local.events import http_event, schedule_event
from observai_local.functions import to_http_response
from observai_local.lambda_context import LambdaContext
from observai_local.scheduler import Cron, next_fire, parse_rate

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_http_event_shape() -> None:
    now = datetime(2025, 3, 12, 19, 3, 58, tzinfo=UTC)
    event = http_event(
        "post",
        "/v1/orgs/o1/members",
        raw_query="limit=5&tag=a&tag=b&empty=",
        headers=[
            ("Content-Type", "application/json"),
            ("X-Api-Key", "k"),
            ("Accept", "text/plain"),
            ("accept", "application/json"),
            ("Cookie", "a=1; b=2"),
            ("User-Agent", "tester/1"),
        ],
        body=b'{"email": "x@y.test"}',
        route_key="POST /v1/orgs/{org_id}/members",
        path_parameters={"org_id": "o1"},
        source_ip="10.0.0.9",
        now=now,
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/orgs/{org_id}/members"
    assert event["rawPath"] == "/v1/orgs/o1/members"
    assert event["rawQueryString"] == "limit=5&tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"limit": "5", "tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"org_id": "o1"}
    assert event["cookies"] == ["a=1", "b=2"]
    headers = event["headers"]
    assert all(name == name.lower() for name in headers)
    assert headers["accept"] == "text/plain,application/json"
    assert headers["x-api-key"] == "k"
    assert "cookie" not in headers
    assert headers["content-length"] == str(len(b'{"email": "x@y.test"}'))
    assert event["body"] == '{"email": "x@y.test"}'
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "POST",
        "path": "/v1/orgs/o1/members",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.9",
        "userAgent": "tester/1",
    }
    assert ctx["routeKey"] == event["routeKey"]
    assert ctx["stage"] == "$default"
    assert ctx["time"] == "12/Mar/2025:19:03:58 +0000"
    assert ctx["timeEpoch"] == int(now.timestamp() * 1000)
    assert {"accountId", "apiId", "domainName", "domainPrefix", "requestId"} <= set(ctx)
    assert http_event("GET", "/x")["requestContext"]["requestId"] != ctx["requestId"]


def test_get_without_query_body_or_params_omits_them() -> None:
    event = http_event("GET", "/v1/health")
    assert event["rawQueryString"] == ""
    for absent in ("queryStringParameters", "pathParameters", "body", "cookies"):
        assert absent not in event
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "encoding", "expect_base64"),
    [
        ("application/x-protobuf", None, True),
        ("application/octet-stream", None, True),
        ("image/png", None, True),
        ("application/json", "gzip", True),
        ("application/json; charset=utf-8", None, False),
        ("application/vnd.api+json", None, False),
        ("text/plain", None, False),
    ],
)
def test_binary_bodies_are_base64(content_type, encoding, expect_base64) -> None:
    body = b"\x00\x01binary\xff" if expect_base64 else b"hello"
    headers = {"content-type": content_type} | ({"content-encoding": encoding} if encoding else {})
    event = http_event("POST", "/x", headers=headers, body=body)
    assert event["isBase64Encoded"] is expect_base64
    decoded = base64.b64decode(event["body"]) if expect_base64 else event["body"].encode()
    assert decoded == body


def test_invalid_utf8_text_falls_back_to_base64() -> None:
    event = http_event("POST", "/x", headers={"content-type": "text/plain"}, body=b"\xff\xfe")
    assert event["isBase64Encoded"] is True


def test_schedule_events() -> None:
    scheduler = schedule_event("observai-dev-housekeeping")
    assert scheduler["source"] == "aws.scheduler"
    assert scheduler["detail-type"] == "Scheduled Event"
    assert scheduler["detail"] == "{}"
    assert scheduler["resources"] == [
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/observai-dev-housekeeping"
    ]
    rule = schedule_event("nightly", source="aws.events")
    assert rule["detail"] == {} and rule["resources"][0].endswith(":rule/nightly")


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("*.json")))
def test_sample_events_are_well_formed(name: str) -> None:
    event = json.loads((EVENTS / name).read_text())
    if event.get("version") == "2.0":
        assert event["routeKey"] == f"{event['requestContext']['http']['method']} {event['rawPath']}"
        assert all(h == h.lower() for h in event["headers"])
        assert event["requestContext"]["stage"] == "$default"
    elif "Records" in event:  # SQS (the ingest spool drain)
        assert event["Records"] and all(r["eventSource"] == "aws:sqs" for r in event["Records"])
        assert all({"messageId", "receiptHandle", "body", "eventSourceARN"} <= set(r) for r in event["Records"])
    else:
        assert event["detail-type"] == "Scheduled Event"


def test_rate_expressions() -> None:
    assert parse_rate("rate(1 minute)").total_seconds() == 60
    assert parse_rate("rate(5 minutes)").total_seconds() == 300
    assert parse_rate("rate(1 hour)").total_seconds() == 3600
    assert parse_rate("rate(2 days)").total_seconds() == 172800
    for bad in ("rate(1 hours)", "rate(2 hour)", "rate(0 minutes)", "rate(5 weeks)", "rate(five minutes)"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    start = datetime(2025, 1, 1, 10, 30, tzinfo=UTC)
    assert next_fire("rate(1 hour)", start) == datetime(2025, 1, 1, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0 3 * * ? *)", datetime(2025, 1, 1, 2, 59, 30), datetime(2025, 1, 1, 3, 0)),
        ("cron(0 3 * * ? *)", datetime(2025, 1, 1, 3, 0), datetime(2025, 1, 2, 3, 0)),  # strictly after
        ("cron(*/15 * * * ? *)", datetime(2025, 1, 1, 10, 7), datetime(2025, 1, 1, 10, 15)),
        ("cron(0/20 9-17 ? * MON-FRI *)", datetime(2025, 1, 3, 17, 45), datetime(2025, 1, 6, 9, 0)),  # Fri → Mon
        ("cron(15,45 12 1 * ? *)", datetime(2025, 1, 1, 12, 20), datetime(2025, 1, 1, 12, 45)),
        ("cron(0 0 1 JAN,JUL ? *)", datetime(2025, 2, 1), datetime(2025, 7, 1)),
        ("cron(0 8 ? * 1 *)", datetime(2025, 1, 1), datetime(2025, 1, 5, 8, 0)),  # 1 = Sunday
        ("cron(30 6 ? * 2-6 2026)", datetime(2025, 6, 1), datetime(2026, 1, 1, 6, 30)),  # Thu 1 Jan 2026
        ("cron(0 12 29 2 ? *)", datetime(2025, 3, 1), datetime(2028, 2, 29, 12, 0)),
    ],
)
def test_cron_next_fire(expression: str, after: datetime, expected: datetime) -> None:
    assert next_fire(expression, after.replace(tzinfo=UTC)) == expected.replace(tzinfo=UTC)


def test_cron_timezone() -> None:
    # 09:00 in New York (EST, UTC-5) is 14:00 UTC.
    after = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)
    assert next_fire("cron(0 9 * * ? *)", after, "America/New_York") == datetime(2025, 1, 10, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [
        "cron(0 3 * * *)",
        "cron(0 3 * * * *)",
        "cron(0 3 ? * ? *)",
        "cron(61 3 * * ? *)",
        "cron(0 3 L * ? *)",
        "0 3 * * ? *",
    ],
)
def test_invalid_cron(bad: str) -> None:
    with pytest.raises(ValueError):
        Cron.parse(bad)


def test_lambda_context() -> None:
    ctx = LambdaContext("observai-dev-health", memory_limit_in_mb=512, timeout_s=10)
    assert ctx.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:observai-dev-health"
    assert ctx.memory_limit_in_mb == 512
    assert ctx.function_version == "$LATEST"
    assert ctx.log_group_name == "/aws/lambda/observai-dev-health"
    assert "[$LATEST]" in ctx.log_stream_name
    assert 9000 < ctx.get_remaining_time_in_millis() <= 10000
    assert ctx.aws_request_id != LambdaContext("x").aws_request_id


def test_handler_responses() -> None:
    full = to_http_response(
        {"statusCode": 201, "headers": {"X-A": "1"}, "cookies": ["s=1; HttpOnly"], "body": '{"ok":true}'}
    )
    assert full.status == 201 and full.body == b'{"ok":true}'
    assert ("X-A", "1") in full.headers and ("set-cookie", "s=1; HttpOnly") in full.headers
    assert ("content-type", "application/json") in full.headers
    binary = to_http_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    )
    assert binary.body == b"\x00\x01"
    inferred = to_http_response({"hello": "world"})
    assert (inferred.status, json.loads(inferred.body)) == (200, {"hello": "world"})
    assert to_http_response("plain").body == b"plain"
    assert to_http_response({"statusCode": 204}).body == b""
