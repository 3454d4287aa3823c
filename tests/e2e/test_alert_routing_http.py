"""Alert routing over HTTP through the local runner (template.yaml's routes and functions): a policy PUT (CORS
allows PUT), a silence, alerts as the evaluator writes them, the dispatcher run by its minute schedule, and what it
notified read back from the notification log and the alert groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from observai_local.functions import Invoker, local_overrides
from observai_local.scheduler import scheduled_event
from observai_local.template import load_template
from psycopg.rows import dict_row

from tests.helpers.alert_rows import AlertBoard
from tests.helpers.http import client, error_of, ok_data
from tests.helpers.ingest import iso, make_project
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.e2e


def run_dispatcher_schedule(database_url: str) -> Any:
    """What EventBridge Scheduler (the runner's scheduler) does each minute: invoke the function with its event."""
    template = load_template()
    (schedule,) = template.function("DispatchNotificationsFunction").schedules
    return Invoker(template, local_overrides("test", database_url)).invoke(
        "DispatchNotificationsFunction", scheduled_event(schedule)
    )


def test_policy_silence_dispatch_and_log_over_http(runner_url: str, database_url: str) -> None:
    project = make_project(scopes=("read",), label="Routing e2e")
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        member = make_user(db)
        add_membership(db, project.org_id, member.id, "member")
        base = f"/v1/projects/{project.project_id}"

        # Given a browser may PUT (CORS preflight)
        preflight = httpx.options(
            f"{runner_url}{base}/notification-policy",
            headers={"Origin": "https://app.example.test", "Access-Control-Request-Method": "PUT"},
        )
        assert preflight.status_code == 204
        assert "PUT" in preflight.headers["access-control-allow-methods"].split(",")

        with client(runner_url, user=member) as http:
            # When a member routes the web team's alerts to their channel, notified at once
            policy = {
                "route": {
                    "receivers": {"contact_points": ["ops-email"]},
                    "group_wait": "0s",
                    "routes": [{"name": "web", "matchers": ['team="web"'], "receivers": {"contact_points": ["web"]}}],
                }
            }
            saved = ok_data(http.put(f"{base}/notification-policy", json=policy))
            assert saved["version"] == 1 and saved["policy"]["route"]["routes"][0]["name"] == "web"
            # And silences the batch service for an hour
            silence = ok_data(
                http.post(
                    f"{base}/silences",
                    json={"matchers": ['service="batch"'], "ends_at": iso(datetime.now(UTC) + timedelta(hours=1))},
                ),
                201,
            )
            assert silence["status"] == "active"
            # And a bad matcher is refused with its location
            bad = http.put(f"{base}/notification-policy", json={"route": {"routes": [{"matchers": ['a=~"(b+)+"']}]}})
            assert error_of(bad, 422)["details"][0]["loc"] == ["body", "route", "routes", "0", "matchers", "0", "value"]

        # And two alerts fire (written as the evaluator writes them)
        board = AlertBoard(db, project.org_id, project.project_id)
        board.fire(datetime.now(UTC), "Slow", service="web", team="web")
        board.fire(datetime.now(UTC), "Slow", service="batch", team="data")

        # When the dispatcher's minute schedule runs
        summary = run_dispatcher_schedule(database_url)
        assert summary["routed"] >= 2

    # Then the web alert was notified through its route, the silenced batch alert not
    with client(runner_url, api_key=project.key) as http:
        log = ok_data(http.get(f"{base}/notification-log"))
        assert [(e["reason"], e["receivers"]["contact_points"]) for e in log] == [("first", ["web"])]
        assert log[0]["firing"][0]["labels"]["service"] == "web" and log[0]["incident_id"]
        # And both groups are active, the batch one with its alert not announced
        groups = {g["route_id"]: g for g in ok_data(http.get(f"{base}/alert-groups"))}
        assert groups["web"]["notifications"] == 1
        assert [a["notified_state"] for a in groups["0"]["alerts"]] == [None]
        # And a read key may not silence
        later = iso(datetime.now(UTC) + timedelta(hours=1))
        refused = http.post(f"{base}/silences", json={"matchers": ['a="b"'], "ends_at": later})
        assert error_of(refused, 403)["code"] == "scope_missing"
