"""The sample events of events/ answer what events/README.md and docs/local-development.md say they do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from observai.db.breaker import database_breaker
from observai_local.lambda_context import LambdaContext

from tests.helpers.inprocess import load_function

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _invoke(function: str, event_file: str, event: dict[str, Any] | None = None) -> Any:
    event = event if event is not None else json.loads((EVENTS / event_file).read_text())
    context = LambdaContext(f"observai-test-{function}", memory_limit_in_mb=512, timeout_s=30)
    return load_function(function).lambda_handler(event, context)


@pytest.mark.parametrize(
    ("event_file", "header", "code"),
    [("whoami_api_key.json", "x-api-key", "api_key_invalid"), ("orgs_list.json", "authorization", "token_malformed")],
)
def test_the_events_with_placeholder_credentials_answer_401_as_documented(
    database_url: str, event_file: str, header: str, code: str
) -> None:
    event = json.loads((EVENTS / event_file).read_text())
    assert "REPLACE" in event["headers"][header]  # a placeholder, and the page says so
    readme = (EVENTS / "README.md").read_text()
    assert f"`{event_file}`" in readme and "**401**" in readme
    response = _invoke("orgs", event_file)
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"]["code"] == code


def test_the_placeholders_replaced_as_the_page_shows_answer_200(database_url: str, db: Any) -> None:
    from tests.helpers.ingest import make_project

    # Given a real key, put in the event's x-api-key as the jq recipe of events/README.md does
    project = make_project(scopes=("read",), label="Sample events")
    event = json.loads((EVENTS / "whoami_api_key.json").read_text())
    event["headers"]["x-api-key"] = project.headers["x-api-key"]
    response = _invoke("orgs", "whoami_api_key.json", event)
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["data"]["project_id"] == str(project.project_id)


def test_the_drain_sample_of_an_unknown_project_is_dropped_with_a_log_line_not_a_failure(
    database_url: str, db: Any, captured_logs: Any
) -> None:
    database_breaker.reset()
    event = json.loads((EVENTS / "ingest_drain_sqs.json").read_text())
    project_id = json.loads(event["Records"][0]["body"])["project_id"]
    assert db.execute("select 1 from public.projects where id = %s", (project_id,)).fetchone() is None
    # When the drain gets the sample batch of a project that does not exist
    response = _invoke("ingest_drain", "ingest_drain_sqs.json")
    # Then the record is done (not in batchItemFailures: SQS deletes it), nothing is written, and a line says why
    assert response == {"batchItemFailures": []}
    for table in ("logs", "spans", "metric_points"):
        found = db.execute(f"select count(*) as n from public.{table} where project_id = %s", (project_id,))
        assert found.fetchone()["n"] == 0, table
    dropped = [json.loads(line) for line in captured_logs.getvalue().splitlines() if "spooled batch dropped" in line]
    assert [d["project_id"] for d in dropped] == [project_id]


def test_the_dispatcher_samples_answer_as_documented(database_url: str) -> None:
    # The timer of a group that does not exist: a no-op, no failure; the schedule: the sweep's summary
    timer = _invoke("dispatch_notifications", "dispatch_notifications_timer_sqs.json")
    assert timer == {"batchItemFailures": []}
    summary = _invoke("dispatch_notifications", "dispatch_notifications_schedule.json")
    assert {"routed", "due", "outcomes", "rounds"} <= set(summary)


def test_the_escalation_samples_answer_as_documented(database_url: str) -> None:
    # The timer of an incident that does not exist: a no-op, no failure; the schedule: the sweep's summary
    timer = _invoke("escalate", "escalate_timer_sqs.json")
    assert timer == {"batchItemFailures": []}
    summary = _invoke("escalate", "escalate_schedule.json")
    assert {"due", "outcomes", "rounds", "more_pending"} <= set(summary)
