"""Events as AWS sends them: API Gateway HTTP API payload format 2.0, and scheduled (Scheduler/EventBridge) events."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
API_ID = "local"

_TEXT_TYPES = (
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/graphql",
    "application/x-ndjson",
)


def is_text(content_type: str | None, content_encoding: str | None = None) -> bool:
    """Whether API Gateway passes a body with this content type as text (else base64)."""
    if content_encoding and content_encoding.strip().lower() not in ("", "identity"):
        return False
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))


def _headers(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Lowercase names, comma-join duplicates; Cookie headers go to the separate cookies list."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in pairs:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        elif key in headers:
            headers[key] = f"{headers[key]},{value}"
        else:
            headers[key] = value
    return headers, cookies


def _query(raw: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def http_event(
    method: str,
    raw_path: str,
    *,
    raw_query: str = "",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes | str | None = None,
    route_key: str | None = None,
    path_parameters: Mapping[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    stage: str = "$default",
    domain_name: str = "localhost",
    protocol: str = "HTTP/1.1",
    now: datetime | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event for one request."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    hdrs, cookies = _headers(pairs)
    hdrs.setdefault("host", domain_name)
    hdrs.setdefault("x-forwarded-for", source_ip)
    hdrs.setdefault("x-forwarded-proto", "http")
    if body is not None and "content-length" not in hdrs:
        hdrs["content-length"] = str(len(body.encode() if isinstance(body, str) else body))
    now = now or datetime.now(UTC)
    method = method.upper()
    route_key = route_key or f"{method} {raw_path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = hdrs
    if raw_query:
        event["queryStringParameters"] = _query(raw_query)
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": hdrs.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": stage,
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body is not None and body != b"":
        raw = body.encode() if isinstance(body, str) else body
        text = is_text(hdrs.get("content-type"), hdrs.get("content-encoding"))
        if text:
            try:
                event["body"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = False
        if not text:
            event["body"] = base64.b64encode(raw).decode("ascii")
        event["isBase64Encoded"] = not text
    else:
        event["isBase64Encoded"] = False
    return event


def schedule_event(
    schedule_name: str = "observai-local-schedule",
    *,
    source: str = "aws.scheduler",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The default event EventBridge Scheduler (source aws.scheduler) or a schedule rule (aws.events) sends."""
    now = now or datetime.now(UTC)
    scheduler = source == "aws.scheduler"
    resource = (
        f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/{schedule_name}"
        if scheduler
        else f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{schedule_name}"
    )
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": source,
        "account": ACCOUNT_ID,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [resource],
        "detail": "{}" if scheduler else {},
    }
