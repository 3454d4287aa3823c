"""Credentials never reach the logs: redact(), RedactingFilter, and a handler invoked with secrets in its headers."""

from __future__ import annotations

import io
import json
import logging

import pytest
from observai.auth.api_key_format import generate_key
from observai.auth.jwt import issue_dev_token
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.observability import RedactingFilter, logger, redact, redact_text
from observai_local.events import http_event
from observai_local.lambda_context import LambdaContext

from tests.helpers.inprocess import invoke

JWT = issue_dev_token("6f1c1d55-5c4a-4b7e-9d0e-0f6b0c3d2a11", "someone@example.test")
API_KEY = generate_key().key
OPAQUE = "opaque-bearer-value-123"


def assert_no_secret(text: str) -> None:
    for secret in (JWT, API_KEY, OPAQUE, JWT.split(".")[2], API_KEY[4:]):
        assert secret not in text


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (f"Authorization: Bearer {JWT}", "Authorization:"),
        (f"got bearer {OPAQUE} from client", "from client"),
        (f"token={JWT}", "token="),
        (f"key {API_KEY} used", "used"),
        (f"BEARER {API_KEY}", ""),
    ],
    # Fixed ids: the key is random per process, and pytest-xdist workers must collect the same tests.
    ids=["authorization-header", "bearer-opaque", "jwt-assignment", "api-key-in-text", "bearer-api-key"],
)
def test_redact_text_scrubs_tokens_and_keeps_the_rest(raw: str, kept: str) -> None:
    # Given text holding a bearer token, a JWT or an API key
    # When redacted
    result = redact_text(raw)
    # Then no credential survives, the marker is there, and the surrounding text is kept
    assert_no_secret(result)
    assert "[REDACTED]" in result
    assert kept in result


def test_redact_text_leaves_innocent_text_alone() -> None:
    # Given text without credentials (including words close to the patterns)
    text = "oai_ is our prefix; eyJ alone is fine; key rotation every 90 days"
    # Then it is unchanged
    assert redact_text(text) == text


def test_redact_dicts_lists_and_sensitive_keys() -> None:
    # Given nested data with credentials under sensitive keys and inside values
    value = {
        "Authorization": f"Bearer {JWT}",
        "X-API-Key": API_KEY,
        "headers": {"authorization": OPAQUE, "x-api-key": API_KEY, "accept": "application/json"},
        "note": f"client sent {API_KEY}",
        "list": [f"Bearer {OPAQUE}", {"password": "hunter2"}, 42],
    }
    # When redacted
    result = redact(value)
    # Then the sensitive keys are replaced whatever their case, values are scrubbed, the rest is kept
    assert result["Authorization"] == "[REDACTED]"
    assert result["X-API-Key"] == "[REDACTED]"
    assert result["headers"] == {"authorization": "[REDACTED]", "x-api-key": "[REDACTED]", "accept": "application/json"}
    assert result["note"] == "client sent [REDACTED]"
    assert result["list"] == ["[REDACTED]", {"password": "[REDACTED]"}, 42]
    assert_no_secret(json.dumps(result))
    # And the input is not mutated
    assert value["X-API-Key"] == API_KEY


def test_filter_scrubs_message_args_and_extra_fields() -> None:
    # Given a log record with credentials in its message, its args and its extra fields
    record = logging.LogRecord(
        "observai", logging.INFO, __file__, 1, "auth %s with %s", (f"Bearer {JWT}", API_KEY), None
    )
    record.authorization = OPAQUE
    record.headers = {"x-api-key": API_KEY, "host": "localhost"}
    record.detail = f"token {JWT}"
    # When the filter runs
    assert RedactingFilter().filter(record) is True
    # Then none survives anywhere, and harmless fields are kept
    assert_no_secret(record.getMessage())
    assert record.authorization == "[REDACTED]"
    assert record.headers == {"x-api-key": "[REDACTED]", "host": "localhost"}
    assert_no_secret(record.detail)


def test_logger_output_has_no_credentials_whatever_the_call_shape(captured_logs: io.StringIO) -> None:
    # Given the product logger
    # When a careless caller logs credentials in every shape the logging API allows
    logger.info(f"incoming Authorization: Bearer {JWT}")
    logger.info("api key %s", API_KEY)
    logger.info("headers", extra={"headers": {"Authorization": f"Bearer {JWT}", "x-api-key": API_KEY}})
    logger.debug("x-api-key=%(key)s", {"key": API_KEY})
    logger.info({"authorization": f"Bearer {OPAQUE}", "note": f"key {API_KEY}"})
    # Then every line was written (the capture works) and no credential is in the output
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert len(lines) == 5
    assert_no_secret(captured_logs.getvalue())


def test_handler_invoked_with_credentials_logs_none_of_them(
    captured_logs: io.StringIO, caplog: pytest.LogCaptureFixture, database_url: str
) -> None:
    # Given the product's resolver and entry point with a route that logs the request it got,
    # and the real orgs function
    app = create_resolver()

    @app.get("/echo")
    def echo() -> dict:
        logger.debug("request headers", extra={"request_headers": dict(app.current_event.headers)})
        logger.info(f"raw event {app.current_event.raw_event}")
        return {"data": None, "error": None, "meta": {}}

    handler = lambda_handler_for(app)
    headers = {"Authorization": f"Bearer {JWT}", "x-api-key": API_KEY}
    caplog.set_level(logging.DEBUG)
    # When both are invoked in-process with an Authorization header and an x-api-key (one valid-looking JWT,
    # one well-formed but unknown key), at DEBUG
    echoed = handler(http_event("GET", "/echo", headers=headers), LambdaContext("redaction-test"))
    whoami_by_key = invoke("orgs", "GET", "/v1/whoami", headers=headers)
    whoami_by_jwt = invoke("orgs", "GET", "/v1/whoami", headers={"Authorization": f"Bearer {JWT}"})
    # Then the requests were handled (the key is unknown: 401)
    assert echoed["statusCode"] == 200
    assert whoami_by_key.status == 401
    assert whoami_by_jwt.status == 200
    # And the captured output holds the logged lines, but neither secret
    output = captured_logs.getvalue()
    assert "request headers" in output and "raw event" in output
    assert_no_secret(output)
    assert_no_secret(caplog.text)
    for record in caplog.records:
        assert_no_secret(json.dumps(record.__dict__, default=str))
