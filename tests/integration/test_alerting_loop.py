"""The alerting loop end to end, in-process on the real Postgres, with an injected clock where time must pass: a point
ingested through the ingest function crosses a rule's threshold → the scheduled evaluate-alerts function fires the
alert and routes it → the group's timer (group_wait) → the dispatcher notifies once and opens an incident → a
person acknowledges it → the series goes quiet, the alert resolves → the resolved notification and the incident
resolving by itself. Every step is checked in the rows a user reads (alerts, notification log, incident, timeline)
and in the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.alerts import dispatch
from observai.alerts.evaluation import run_evaluation
from observai.alerts.routing import route_transitions
from observai.metrics.rollup import run_aggregation
from psycopg.rows import dict_row

from tests.helpers.ingest import make_project, metric, post_native
from tests.helpers.inprocess import invoke, load_function
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.integration

RULE = {
    "name": "Checkout latency",
    "condition": {
        "kind": "metric",
        "metric": "checkout.latency",
        "aggregation": "max",
        "group_by": ["host"],
        "window": "5m",
        "op": ">",
        "threshold": 500,
    },
    "for": "0s",
    "severity": "critical",
    "labels": {"team": "payments"},
    "annotations": {"summary": "Checkout slow on {{ labels.host }}: {{ value }} ms"},
}


def _scheduled(function: str) -> dict[str, Any]:
    from observai_local.lambda_context import LambdaContext

    module = load_function(function)
    return module.lambda_handler(  # type: ignore[no-any-return]
        {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}},
        LambdaContext(f"observai-test-{function}", memory_limit_in_mb=1024, timeout_s=90),
    )


def _rows(db: psycopg.Connection[Any], sql: str, *params: Any) -> list[dict[str, Any]]:
    return db.execute(sql, params).fetchall()  # type: ignore[return-value]


def test_a_crossed_threshold_pages_once_opens_an_incident_and_resolves_it(database_url: str) -> None:
    db = psycopg.connect(database_url, autocommit=True, row_factory=dict_row)
    # Given a project with an ingest key, a member, and a rule "max checkout latency per host > 500 over 5m"
    project = make_project(("ingest",), label="Loop")
    member = make_user(db)
    add_membership(db, project.org_id, member.id, "member")
    base = f"/v1/projects/{project.project_id}"
    created = invoke("alerts", "POST", f"{base}/alert-rules", headers=member.headers, json_body=RULE)
    assert created.status == 201, created.text
    rule_id = created.data["id"]

    # When host a reports 900 ms and host b 120 ms through the ingest function
    start = datetime.now(UTC)
    at = start - timedelta(seconds=90)
    sent = post_native(
        project.headers,
        [
            metric("checkout.latency", 900.0, at=at, attributes={"host": "a"}),
            metric("checkout.latency", 120.0, at=at, attributes={"host": "b"}),
        ],
    )
    assert sent.status in (200, 202), sent.text
    while run_aggregation(lag_s=0).more_pending:
        pass

    # Then a preview of the rule already shows host a over the threshold, b under it, with the rendered summary
    preview = invoke("alerts", "POST", f"{base}/alert-rules/preview", headers=member.headers, json_body=RULE)
    assert preview.status == 200, preview.text
    shown = {i["labels"]["host"]: i for i in preview.data["instances"]}
    assert (shown["a"]["active"], shown["a"]["value"], shown["b"]["active"]) == (True, 900.0, False)
    assert shown["a"]["annotations"]["summary"] == "Checkout slow on a: 900.0 ms"

    # When EventBridge Scheduler runs evaluate-alerts
    report = _scheduled("evaluate_alerts")

    # Then host a fires (for 0), its transition is routed at once into a new group whose timer is group_wait away
    assert report["rules_evaluated"] >= 1 and report["routed"] >= 1
    alerts = invoke("alerts", "GET", f"{base}/alerts", headers=member.headers)
    firing = [a for a in alerts.data if a["state"] == "firing"]
    assert [a["labels"]["host"] for a in firing] == ["a"] and firing[0]["value"] == 900.0
    assert firing[0]["labels"]["alertname"] == "Checkout latency" and firing[0]["labels"]["team"] == "payments"
    unrouted = _rows(db, "select id from public.alert_transitions where rule_id = %s and routed_at is null", rule_id)
    assert unrouted == []
    (group,) = _rows(db, "select * from public.notification_groups where project_id = %s", project.project_id)
    assert group["group_labels"] == {"alertname": "Checkout latency"} and group["next_flush_at"] is not None
    flush_at = group["next_flush_at"]
    assert timedelta(seconds=25) < flush_at - datetime.now(UTC) <= timedelta(seconds=30)

    # When the group is flushed before its timer (an early message): nothing is sent
    assert dispatch.flush_group(group["id"], flush_at - timedelta(seconds=1)).outcome == "not_due"
    assert _rows(db, "select id from public.notification_log where group_id = %s", group["id"]) == []

    # When the timer fires (the group's own flush: the sweep of this shared test database has other projects' groups
    # to flush too), and its SQS message is delivered a second time
    flushed = dispatch.flush_group(group["id"], flush_at)
    assert (flushed.outcome, flushed.reason, flushed.firing) == ("notified", "first", 1)
    from observai.alerts.timers import message_body

    timer = message_body(group["id"], flush_at)
    redelivered = {
        "Records": [
            {
                "messageId": "m1",
                "receiptHandle": "r1",
                "body": timer,
                "attributes": {"ApproximateReceiveCount": "2"},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:alert-timers",
            }
        ]
    }
    from observai_local.lambda_context import LambdaContext

    dispatch_fn = load_function("dispatch_notifications")
    dispatch_fn.lambda_handler(redelivered, LambdaContext("observai-test-dispatch", timeout_s=60))

    # Then one notification (first, one firing alert, what the default route names) and one incident
    log = invoke("alert_routing", "GET", f"{base}/notification-log", headers=member.headers)
    assert log.status == 200 and [entry["reason"] for entry in log.data] == ["first"]
    incidents = invoke("incidents", "GET", f"{base}/incidents", headers=member.headers)
    (incident,) = incidents.data
    assert (incident["status"], incident["severity"], incident["number"]) == ("triggered", "critical", 1)
    assert incident["title"] == "Checkout slow on a: 900.0 ms"
    assert log.data[0]["incident_id"] == incident["id"]

    # When the member acknowledges it
    path = f"{base}/incidents/{incident['id']}"
    acked = invoke("incidents", "POST", f"{path}/acknowledge", headers=member.headers)
    assert acked.status == 200 and acked.data["status"] == "acknowledged"

    # When host a sends nothing more and the rule is evaluated after the point left its window, then routed and
    # swept once the group's interval allows
    later = start + timedelta(minutes=6)
    run_evaluation(now=later, project_ids=[project.project_id])
    while route_transitions(later).more_pending:
        pass
    (regrouped,) = _rows(db, "select next_flush_at from public.notification_groups where id = %s", group["id"])
    assert regrouped["next_flush_at"] == max(later, flush_at + timedelta(minutes=5))  # group_interval after the first
    assert dispatch.flush_group(group["id"], regrouped["next_flush_at"]).reason == "resolved"

    # Then the alert resolved, the resolution was notified once, and the incident resolved by itself
    states = _rows(db, "select state from public.alert_instances where rule_id = %s", rule_id)
    assert [s["state"] for s in states] == ["resolved"]
    log = invoke("alert_routing", "GET", f"{base}/notification-log", headers=member.headers)
    assert sorted(entry["reason"] for entry in log.data) == ["first", "resolved"]
    resolved = invoke("incidents", "GET", path, headers=member.headers)
    assert resolved.data["status"] == "resolved"

    # And the timeline tells the story in order, with the member as the acknowledger
    timeline = invoke("incidents", "GET", f"{path}/timeline", headers=member.headers).data
    kinds = [event["kind"] for event in timeline]
    for expected in ("triggered", "alert_firing", "notification", "acknowledged", "alert_resolved", "resolved"):
        assert expected in kinds, kinds
    assert kinds.index("triggered") < kinds.index("acknowledged") < kinds.index("resolved")
    ack = next(event for event in timeline if event["kind"] == "acknowledged")
    assert ack["actor_type"] == "user" and ack["actor_id"] == str(member.id)

    # And every change left through the outbox, in order
    events = _rows(
        db, "select type from public.outbox_events where project_id = %s order by created_at", project.project_id
    )
    types = [e["type"] for e in events]
    for expected in ("alert.firing", "incident.triggered", "incident.acknowledged", "alert.resolved"):
        assert expected in types, types
    assert types[-1] == "incident.resolved"
    db.close()
