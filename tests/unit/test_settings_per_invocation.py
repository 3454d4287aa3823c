"""Settings are read once per Lambda invocation, afresh for each one: never frozen across invocations."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from observai.config import get_settings, settings_per_invocation
from observai.http.resolver import create_resolver, lambda_handler_for
from observai_local.events import http_event
from observai_local.lambda_context import LambdaContext

app = create_resolver()


@app.get("/burst")
def burst() -> dict[str, Any]:
    first = get_settings()
    # Something changing the environment in the middle of an invocation (Lambda never does) is not seen.
    # (The tests set RATE_LIMIT_BURST with monkeypatch first: it restores the variable afterwards.)
    os.environ["RATE_LIMIT_BURST"] = "999"
    second = get_settings()
    return {"data": {"first": first.rate_limit_burst, "second": second.rate_limit_burst}, "error": None, "meta": {}}


handler = lambda_handler_for(app)


def call() -> dict[str, Any]:
    result = handler(http_event("GET", "/burst"), LambdaContext("settings-test"))
    assert result["statusCode"] == 200, result
    return json.loads(result["body"])["data"]


def test_one_invocation_reads_the_settings_once_and_the_next_reads_them_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a burst of 7 in the environment
    monkeypatch.setenv("RATE_LIMIT_BURST", "7")
    # When an invocation asks for the settings twice
    # Then both are the settings read at its first call
    assert call() == {"first": 7, "second": 7}
    # And the next invocation sees the environment as it is now
    monkeypatch.setenv("RATE_LIMIT_BURST", "8")
    assert call() == {"first": 8, "second": 8}


def test_outside_an_invocation_each_call_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_BURST", "7")
    assert get_settings().rate_limit_burst == 7
    monkeypatch.setenv("RATE_LIMIT_BURST", "8")
    assert get_settings().rate_limit_burst == 8


def test_a_failed_read_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an invalid setting when the invocation first reads them
    monkeypatch.setenv("RATE_LIMIT_BURST", "0")
    with settings_per_invocation():
        with pytest.raises(ValueError):
            get_settings()
        # Then the error is raised where the settings were asked for, and a later read tries again
        monkeypatch.setenv("RATE_LIMIT_BURST", "5")
        assert get_settings().rate_limit_burst == 5
        assert get_settings() is get_settings()
    # And the scope ends with the block
    monkeypatch.setenv("RATE_LIMIT_BURST", "6")
    assert get_settings().rate_limit_burst == 6
