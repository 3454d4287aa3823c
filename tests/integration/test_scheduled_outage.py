"""Every scheduled function (template.yaml) over a database outage: one log line, no traceback, the next run works."""

from __future__ import annotations

import json
from typing import Any

import pytest
from observai_local.lambda_context import LambdaContext
from observai_local.scheduler import scheduled_event
from observai_local.template import load_template

from tests.helpers.inprocess import load_function

pytestmark = pytest.mark.integration

TEMPLATE = load_template()
UNREACHABLE = "postgresql://observai@127.0.0.1:1/none"  # a closed port: the connection is refused at once


def run_schedule(logical_id: str) -> Any:
    """What EventBridge Scheduler does: invoke the function with its schedule's event."""
    spec = TEMPLATE.functions[logical_id]
    (schedule, *_) = spec.schedules
    handler = load_function(spec.code_uri.name).lambda_handler
    context = LambdaContext(spec.function_name, memory_limit_in_mb=spec.memory_size, timeout_s=spec.timeout)
    return handler(scheduled_event(schedule), context)


@pytest.mark.parametrize("logical_id", sorted({s.function for s in TEMPLATE.schedules}))
def test_a_scheduled_run_inside_a_database_outage_logs_one_line_and_the_next_run_resumes(
    logical_id: str, database_url: str, monkeypatch: pytest.MonkeyPatch, captured_logs: Any
) -> None:
    from observai.db import close_connection

    # Given the database unreachable
    close_connection()
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    try:
        # When the function's schedule fires
        result = run_schedule(logical_id)
    finally:
        close_connection()
        monkeypatch.setenv("DATABASE_URL", database_url)

    # Then the run ends (no error for the retry policy to repeat), having logged one clear warning and no traceback
    assert result == {"skipped": "database unreachable"}
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("WARNING", "scheduled run skipped: the database is unreachable; the next run resumes")
    ]
    (line,) = lines
    assert "Connection refused" in line["error"] and "exception" not in line
    assert line["function_name"] == TEMPLATE.functions[logical_id].function_name

    # When the database is back, the next run does its work
    result = run_schedule(logical_id)
    assert "skipped" not in result
    if logical_id == "AggregateMetricsFunction":
        assert result["ran"] is True
