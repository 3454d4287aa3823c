"""Error mapping and the envelope, through the product's own resolver and Lambda entry point, in-process."""

from __future__ import annotations

import io
import json
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler.openapi.params import Body
from observai import errors
from observai.http.resolver import SECURITY_HEADERS, create_resolver, lambda_handler_for
from observai_local.events import http_event
from observai_local.lambda_context import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

SECRET = "sup3r-secret"

# Each domain error and the status (and extra headers) it must leave as: written out, not derived.
EXPECTED: dict[str, tuple[errors.ObservAIError, int, str]] = {
    "invalid_input": (errors.InvalidInput("bad input", details={"loc": ["query", "x"]}), 400, "invalid_input"),
    "unauthenticated": (errors.Unauthenticated("who are you"), 401, "unauthenticated"),
    "forbidden": (errors.Forbidden("not you"), 403, "forbidden"),
    "not_found": (errors.NotFound("nothing here"), 404, "not_found"),
    "conflict": (errors.Conflict("taken", code="slug_taken"), 409, "slug_taken"),
    "payload_too_large": (errors.PayloadTooLarge("too big"), 413, "payload_too_large"),
    "unsupported_media_type": (errors.UnsupportedMediaType("json please"), 415, "unsupported_media_type"),
    "unprocessable": (errors.Unprocessable("cannot"), 422, "unprocessable"),
    "rate_limited": (errors.RateLimited("slow down", retry_after_s=7), 429, "rate_limited"),
    "unavailable": (errors.Unavailable("later", retry_after_s=3), 503, "unavailable"),
}


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=5)
    count: int = 1


app = create_resolver()


@app.get("/raise/<name>")
def raise_error(name: str) -> dict[str, Any]:
    raise EXPECTED[name][0]


@app.get("/boom")
def boom() -> dict[str, Any]:
    raise RuntimeError(f"database password is {SECRET}")


@app.post("/items")
def create_item(body: Annotated[Item, Body()]) -> dict[str, Any]:
    return {"data": body.model_dump(), "error": None, "meta": {}}


handler = lambda_handler_for(app)


def call(method: str, path: str, *, body: str | None = None, content_type: str | None = "application/json") -> dict:
    headers = {"content-type": content_type} if content_type else {}
    event = http_event(method, path, headers=headers, body=body)
    return handler(event, LambdaContext("envelope-test"))


def envelope_of(result: dict) -> dict:
    body = json.loads(result["body"])
    assert set(body) == {"data", "error", "meta"}, body
    assert body["data"] is None
    return body


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_domain_error_maps_to_its_status(name: str) -> None:
    # Given a route that raises one ObservAIError subclass
    exc, status, code = EXPECTED[name]
    # When it is called
    result = call("GET", f"/raise/{name}")
    # Then the status is the one written in the table, and the body is the error envelope
    assert result["statusCode"] == status
    body = envelope_of(result)
    assert body["error"]["code"] == code
    assert body["error"]["message"] == exc.message
    assert body["error"]["details"] == exc.details
    headers = {k.lower(): v for k, v in result["headers"].items()}
    assert headers["content-type"].startswith("application/json")
    # And Retry-After only for 429 and 503, WWW-Authenticate only for 401
    if status in (429, 503):
        assert headers["retry-after"] == str(exc.retry_after_s)
    else:
        assert "retry-after" not in headers
    if status == 401:
        assert headers["www-authenticate"].lower().startswith("bearer")
    else:
        assert "www-authenticate" not in headers
    # And the security headers and the request id are on error responses too
    for name_, value in SECURITY_HEADERS.items():
        assert headers[name_.lower()] == value
    assert headers["x-request-id"]


def test_retry_after_is_at_least_one_second() -> None:
    # Given errors built with zero or fractional waits
    # Then Retry-After never says 0 (clients would hammer)
    assert errors.RateLimited("x", retry_after_s=0).retry_after_s == 1
    assert errors.Unavailable("x", retry_after_s=0).retry_after_s == 1


def test_validation_error_is_422_with_locations_and_without_the_submitted_value() -> None:
    # Given a body whose fields are wrong and hold a secret value
    body = json.dumps({"name": SECRET, "count": SECRET, "extra": SECRET})
    # When it is posted
    result = call("POST", "/items", body=body)
    # Then it is a 422 validation_error listing each field's location, type and message
    assert result["statusCode"] == 422
    envelope = envelope_of(result)
    assert envelope["error"]["code"] == "validation_error"
    details = envelope["error"]["details"]
    by_loc = {tuple(d["loc"]): d for d in details}
    assert set(by_loc) == {("body", "name"), ("body", "count"), ("body", "extra")}, details
    assert by_loc[("body", "name")]["type"] == "string_too_long"
    assert by_loc[("body", "count")]["type"] == "int_parsing"
    assert by_loc[("body", "extra")]["type"] == "extra_forbidden"
    for detail in details:
        assert set(detail) == {"loc", "type", "message"}
        assert detail["message"]
    # And the submitted value appears nowhere in the response
    assert SECRET not in result["body"]
    assert SECRET not in json.dumps(result)


def test_missing_body_is_422() -> None:
    # Given no body at all on a route that needs one
    result = call("POST", "/items", body=None)
    # Then it is a validation error, not a 500
    assert result["statusCode"] == 422
    assert envelope_of(result)["error"]["code"] == "validation_error"


@pytest.mark.parametrize("raw", ['{"name": "ab",', "{name: 1}", "not json", '{"name": "a"} trailing'])
def test_malformed_json_is_400(raw: str) -> None:
    # Given a body that is not JSON
    # When it is posted
    result = call("POST", "/items", body=raw)
    # Then 400 malformed_json, with where the parser stopped
    assert result["statusCode"] == 400
    envelope = envelope_of(result)
    assert envelope["error"]["code"] == "malformed_json"
    assert "position" in envelope["error"]["details"]


def test_valid_body_passes() -> None:
    # Given a valid body (the control case: the route itself works)
    result = call("POST", "/items", body='{"name": "ab", "count": 2}')
    # Then 200 and the data back
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["data"] == {"name": "ab", "count": 2}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(content_type: str | None) -> None:
    # Given a JSON-looking body sent with the wrong (or no) content type
    result = call("POST", "/items", body='{"name": "ab"}', content_type=content_type)
    # Then 415 in the envelope
    assert result["statusCode"] == 415
    assert envelope_of(result)["error"]["code"] == "unsupported_media_type"


def test_json_content_type_with_charset_is_accepted() -> None:
    # Given application/json with a charset parameter
    result = call("POST", "/items", body='{"name": "ab"}', content_type="application/json; charset=utf-8")
    # Then it is accepted
    assert result["statusCode"] == 200


@pytest.mark.parametrize("content_type", ["application/merge-patch+json; charset=utf-8", "Application/JSON"])
def test_json_variants_the_guard_accepts_are_accepted(content_type: str) -> None:
    # Given a JSON media type the request guard lets through (a +json suffix, any letter case)
    result = call("POST", "/items", body='{"name": "ab"}', content_type=content_type)
    # Then the route accepts it too (the guard and the parser agree)
    assert result["statusCode"] == 200


def test_oversized_body_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a body over the limit (1 MiB by default)
    body = json.dumps({"name": "x" * (1024 * 1024)})
    # When it is posted
    result = call("POST", "/items", body=body)
    # Then 413 with the limit in the details
    assert result["statusCode"] == 413
    envelope = envelope_of(result)
    assert envelope["error"]["code"] == "payload_too_large"
    assert envelope["error"]["details"] == {"limit_bytes": 1_048_576}


def test_unknown_route_is_404_envelope() -> None:
    # Given a path no route serves
    result = call("GET", "/nowhere")
    # Then 404 route_not_found in the envelope
    assert result["statusCode"] == 404
    assert envelope_of(result)["error"]["code"] == "route_not_found"


def test_unexpected_exception_is_500_without_details() -> None:
    # Given a route that fails with an unexpected error whose message holds a secret
    result = call("GET", "/boom")
    # Then 500 internal_error, and neither the message nor a stack trace leaves
    assert result["statusCode"] == 500
    envelope = envelope_of(result)
    assert envelope["error"]["code"] == "internal_error"
    assert SECRET not in result["body"]
    assert "Traceback" not in result["body"]


def test_every_log_line_carries_the_request_id(captured_logs: io.StringIO) -> None:
    # Given an invocation whose handler fails unexpectedly (the error is logged)
    event = http_event("GET", "/boom")
    request_id = event["requestContext"]["requestId"]
    # When it runs
    result = handler(event, LambdaContext("envelope-test"))
    # Then the response and every JSON log line name the same request id
    assert result["headers"]["X-Request-Id"] == request_id
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines() if line.startswith("{")]
    assert lines, "expected the unhandled error to be logged"
    assert all(line.get("correlation_id") == request_id for line in lines)
