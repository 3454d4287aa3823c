"""Issue 14 §6, the escalation scenario end to end, in-process on the real Postgres: a real alert (a point ingested
through the ingest function crosses a rule's threshold, the rule is evaluated and routed, the dispatcher flushes
its group) → the route names an escalation policy → with an injected clock: step 0 pages PagerDuty (a stand-in on
localhost gets `trigger` with dedup_key = the incident id) → 5 minutes later step 1 pages whoever is on call in a
schedule (e-mail through SES under moto, Slack through a local stand-in mentioning them) → an acknowledgement
through the incidents API halts it (no next step, no repeat) and PagerDuty gets `acknowledge` → the ack timeout
triggers the incident again and the step pages again → the resolution sends `resolve` to PagerDuty with the same
dedup_key, and "resolved" to Slack and e-mail. The delivery worker runs from its queue's wake-ups (SQS under
moto) and the escalation sweep with the same clock. The exact JSON the stand-ins received is asserted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import boto3
import psycopg
import pytest
from observai.alerts import dispatch
from observai.alerts.evaluation import run_evaluation
from observai.alerts.routing import route_transitions
from observai.auth.principal import Principal
from observai.config import get_settings
from observai.escalation import engine
from observai.incidents import service
from observai.metrics.rollup import run_aggregation
from observai.notify import deliveries
from observai.notify.contact_points import secret_context
from observai.notify.secrets import seal
from observai.webhooks.sender import close_connections
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers.ingest import IngestProject, make_project, metric, post_native
from tests.helpers.inprocess import invoke
from tests.helpers.moto_queue import REGION, QueueAndBucket, queue_and_bucket
from tests.helpers.users import User, add_membership, make_user
from tests.helpers.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.integration

MIN = timedelta(minutes=1)
SENDER = "pager@observai.example.test"
ROUTING_KEY = "R0123456789abcdef0123456789abcdef"
SLACK_PATH = "/services/T0001/B0001/abcdefghijklmnop"
RULE = {
    "name": "Checkout latency",
    "condition": {
        "kind": "metric",
        "metric": "checkout.latency",
        "aggregation": "max",
        "window": "5m",
        "op": ">",
        "threshold": 500,
    },
    "for": "0s",
    "severity": "critical",
    "labels": {"service": "checkout"},
    "annotations": {"summary": "Checkout slow: {{ value }} ms"},
}


@dataclass
class Stage:
    project: IngestProject
    owner: User
    bob: User  # on call; reached by e-mail and by Slack (member id U0BOB)
    pagerduty: WebhookReceiver
    slack: WebhookReceiver
    aws: QueueAndBucket  # the notification queue (wake-ups)
    db: psycopg.Connection[Any]

    @property
    def base(self) -> str:
        return f"/v1/projects/{self.project.project_id}"


@pytest.fixture
def stage(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Stage]:
    with (
        WebhookReceiver(reply=Reply(202, b'{"status":"success","message":"Event processed"}')) as pagerduty,
        WebhookReceiver(reply=Reply(200, b"ok")) as slack,
        queue_and_bucket(monkeypatch, "notifications") as aws,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db,
    ):
        monkeypatch.setenv("NOTIFY_QUEUE_URL", aws.queue_url)
        monkeypatch.setenv("PAGERDUTY_EVENTS_URL", pagerduty.url("/v2/enqueue"))
        monkeypatch.setenv("NOTIFY_ALLOW_LOOPBACK", "true")
        monkeypatch.setenv("NOTIFY_EMAIL_SENDER", SENDER)
        monkeypatch.delenv("ESCALATION_QUEUE_URL", raising=False)  # the sweep moves the runs here
        boto3.client("sesv2", region_name=REGION).create_email_identity(EmailIdentity=SENDER)
        # Earlier tests' due deliveries are not this scenario's to send.
        db.execute(
            "update public.notification_deliveries set status = 'skipped', next_attempt_at = null"
            " where next_attempt_at is not null"
        )
        project = make_project(("ingest",), label="Escalation scenario")
        owner, bob = make_user(db), make_user(db)
        add_membership(db, project.org_id, owner.id, "owner")
        add_membership(db, project.org_id, bob.id, "member")
        yield Stage(project, owner, bob, pagerduty, slack, aws, db)
    close_connections()


def insert_contact_point(stage: Stage, name: str, kind: str, secret: str, settings: dict[str, Any]) -> UUID:
    """A contact point as the contact points API stores it: the secret sealed for this contact point only."""
    point_id = uuid.uuid4()
    sealed = seal(secret, secret_context(stage.project.org_id, point_id), get_settings())
    stage.db.execute(
        "insert into public.contact_points (id, org_id, project_id, name, kind, settings, secret_sealed, secret_hint)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (point_id, stage.project.org_id, stage.project.project_id, name, kind, Jsonb(settings), sealed, secret[-4:]),
    )
    return point_id


def principal(user: User) -> Principal:
    return Principal(kind="user", user_id=user.id, email=user.email)


def sent_emails() -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def deliver(stage: Stage, at: datetime) -> int:
    """The delivery worker fed by its queue's wake-ups, at ``at``: how many of this project's deliveries it
    handled (the escalation sweep is global: other tests' escalations may wake deliveries of theirs, left alone)."""
    from observai.notify.queue import parse_message

    ours = {
        row["id"]
        for row in stage.db.execute(
            "select id from public.notification_deliveries where project_id = %s", (stage.project.project_id,)
        ).fetchall()
    }
    handled = 0
    while messages := stage.aws.receive(max_messages=10):
        for m in messages:
            stage.aws.sqs.delete_message(QueueUrl=stage.aws.queue_url, ReceiptHandle=m["ReceiptHandle"])
        mine = [m for m in messages if parse_message(m["Body"]) in ours]
        if mine:
            response = deliveries.handle_queue_messages(stage.aws.event(mine), clock=lambda: at)
            assert response == {"batchItemFailures": []}, response
        handled += len(mine)
    return handled


def pd_events(stage: Stage) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in stage.pagerduty.requests]


def slack_posts(stage: Stage) -> list[dict[str, Any]]:
    assert all(r.path == SLACK_PATH for r in stage.slack.requests)
    return [json.loads(r.body) for r in stage.slack.requests]


def run(stage: Stage, incident_id: Any) -> dict[str, Any]:
    row = stage.db.execute(
        "select status, step, round, seq, next_at from public.incident_escalations where incident_id = %s",
        (incident_id,),
    ).fetchone()
    assert row is not None
    return dict(row)


def a_real_alert_opens_an_incident(stage: Stage, policy_name: str) -> tuple[dict[str, Any], datetime]:
    """The alerting loop up to the dispatcher's first notification; the incident and the flush time (T0)."""
    headers = stage.owner.headers
    routed = invoke(
        "alert_routing",
        "PUT",
        f"{stage.base}/notification-policy",
        headers=headers,
        json_body={"route": {"receivers": {"escalation_policy": policy_name}, "group_wait": "0s"}},
    )
    assert routed.status == 200, routed.text
    created = invoke("alerts", "POST", f"{stage.base}/alert-rules", headers=headers, json_body=RULE)
    assert created.status == 201, created.text
    at = datetime.now(UTC) - timedelta(seconds=90)
    sent = post_native(stage.project.headers, [metric("checkout.latency", 900.0, at=at)])
    assert sent.status in (200, 202), sent.text
    while run_aggregation(lag_s=0).more_pending:
        pass
    now = datetime.now(UTC)
    run_evaluation(now=now, project_ids=[stage.project.project_id])
    while route_transitions(now).more_pending:
        pass
    (group,) = stage.db.execute(
        "select id, next_flush_at from public.notification_groups where project_id = %s", (stage.project.project_id,)
    ).fetchall()
    t0: datetime = group["next_flush_at"]
    flushed = dispatch.flush_group(group["id"], t0)
    assert (flushed.outcome, flushed.reason) == ("notified", "first"), flushed
    incident = stage.db.execute("select * from public.incidents where id = %s", (flushed.incident_id,)).fetchone()
    assert incident is not None and incident["status"] == "triggered"
    return dict(incident), t0


def test_trigger_step_wait_step_ack_halts_ack_timeout_retriggers_resolve_sends_resolved(stage: Stage) -> None:
    # Given a PagerDuty contact point, bob's Slack contact point and member id, a schedule where bob is on call
    pagerduty = insert_contact_point(
        stage, "pd-checkout", "pagerduty", ROUTING_KEY, {"severity_map": {"critical": "critical"}}
    )
    slack = insert_contact_point(stage, "bob-slack", "slack", stage.slack.url(SLACK_PATH), {})
    stage.db.execute(
        "insert into public.member_notification_settings (org_id, user_id, slack_user_id, slack_contact_point_id)"
        " values (%s, %s, 'U0BOB', %s)",
        (stage.project.org_id, stage.bob.id, slack),
    )
    schedule = invoke(
        "schedules",
        "POST",
        f"/v1/orgs/{stage.project.org_id}/schedules",
        headers=stage.owner.headers,
        json_body={
            "name": "Checkout primary",
            "time_zone": "Europe/Paris",
            "layers": [
                {
                    "name": "Weekly",
                    "users": [str(stage.bob.id)],
                    "rotation": {"unit": "weeks", "length": 1},
                    "start": "2026-01-05T09:00:00+01:00",
                }
            ],
        },
    )
    assert schedule.status == 201, schedule.text
    # And an escalation policy: step 0 PagerDuty, 5 minutes, step 1 the schedule, 10 minutes; once more; ack
    # timeout 30 minutes
    policy = invoke(
        "escalation_policies",
        "POST",
        f"{stage.base}/escalation-policies",
        headers=stage.owner.headers,
        json_body={
            "name": "checkout-oncall",
            "steps": [
                {"wait_minutes": 5, "targets": [{"type": "contact_point", "id": str(pagerduty)}]},
                {"wait_minutes": 10, "targets": [{"type": "schedule", "id": schedule.data["id"]}]},
            ],
            "repeat": 1,
            "ack_timeout_minutes": 30,
        },
    )
    assert policy.status == 201, policy.text
    emails_before = len(sent_emails())

    # When a real alert fires and its route (naming the policy) notifies: T0
    incident, t0 = a_real_alert_opens_an_incident(stage, "checkout-oncall")
    incident_id = str(incident["id"])
    assert deliver(stage, t0) == 1

    # Then PagerDuty got a trigger whose dedup_key is the incident id
    (trigger,) = pd_events(stage)
    assert trigger["routing_key"] == ROUTING_KEY
    assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", incident_id)
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == f"[CRITICAL] #{incident['number']} Checkout slow: 900.0 ms"
    assert trigger["payload"]["custom_details"]["incident"]["id"] == incident_id
    assert "Escalation step 1 of checkout-oncall." in trigger["payload"]["custom_details"]["text"]
    assert stage.slack.requests == [] and len(sent_emails()) == emails_before

    # When 4 minutes pass: nothing more
    engine.sweep(t0 + 4 * MIN)
    assert run(stage, incident["id"])["seq"] == 1

    # When 5 minutes have passed: step 1 pages bob, on call: an e-mail (SES) and Slack mentioning him
    engine.sweep(t0 + 5 * MIN)
    assert run(stage, incident["id"])["step"] == 1
    assert deliver(stage, t0 + 5 * MIN) == 2
    (post,) = slack_posts(stage)
    assert post["text"] == f"<@U0BOB> [CRITICAL] #{incident['number']} Checkout slow: 900.0 ms"
    assert post["blocks"][1] == {"type": "section", "text": {"type": "mrkdwn", "text": "<@U0BOB> you are paged"}}
    buttons = [e for e in post["blocks"][-1]["elements"] if e.get("action_id")]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("incident_acknowledge", f"{stage.project.project_id}/{incident_id}"),
        ("incident_resolve", f"{stage.project.project_id}/{incident_id}"),
    ]
    (mail,) = sent_emails()[emails_before:]
    assert mail.source == SENDER and mail.destinations["ToAddresses"] == [stage.bob.email]
    assert mail.subject == f"[CRITICAL] #{incident['number']} Checkout slow: 900.0 ms"

    # When bob acknowledges at T0+6 (the incidents service, as its API and the Slack button call it)
    path = f"{stage.base}/incidents/{incident_id}"
    acked_at = t0 + 6 * MIN
    service.acknowledge(principal(stage.bob), stage.project.project_id, incident["id"], now=acked_at)
    assert deliver(stage, acked_at) == 1

    # Then PagerDuty got acknowledge for the same dedup_key, and the run is halted until the ack timeout
    assert pd_events(stage)[-1] == {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": incident_id}
    assert run(stage, incident["id"])["status"] == "halted"
    assert run(stage, incident["id"])["next_at"] == acked_at + 30 * MIN
    # And while halted no step pages, nor the repeat round (due at T0+15 before the acknowledgement)
    for minute in (15, 20, 29):
        engine.sweep(acked_at + minute * MIN)
        assert deliver(stage, acked_at + minute * MIN) == 0
    assert len(stage.pagerduty.requests) == 2 and len(stage.slack.requests) == 1

    # When the ack timeout passes
    timeout_at = acked_at + 30 * MIN
    engine.sweep(timeout_at)
    assert run(stage, incident["id"])["status"] == "active"
    assert deliver(stage, timeout_at) == 2

    # Then the incident is triggered again (its timeline says why) and step 1 pages bob again
    got = invoke("incidents", "GET", path, headers=stage.owner.headers)
    assert got.data["status"] == "triggered"
    kinds = [e["kind"] for e in invoke("incidents", "GET", f"{path}/timeline", headers=stage.owner.headers).data]
    assert "ack_timeout" in kinds and kinds.count("escalated") == 3
    assert len(slack_posts(stage)) == 2 and slack_posts(stage)[-1]["text"].startswith("<@U0BOB> ")
    assert [m.destinations["ToAddresses"] for m in sent_emails()[emails_before:]] == [[stage.bob.email]] * 2

    # When the owner resolves it 4 minutes later
    resolved_at = timeout_at + 4 * MIN
    service.resolve(principal(stage.owner), stage.project.project_id, incident["id"], None, now=resolved_at)
    delivered = deliver(stage, resolved_at)

    # Then PagerDuty gets resolve with the same dedup_key; Slack and e-mail get the resolution
    assert pd_events(stage)[-1] == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": incident_id}
    assert [e["dedup_key"] for e in pd_events(stage)] == [incident_id] * 3
    assert [e["event_action"] for e in pd_events(stage)] == ["trigger", "acknowledge", "resolve"]
    assert delivered == 3
    heading = f"#{incident['number']} Checkout slow: 900.0 ms"
    assert slack_posts(stage)[-1]["text"] == f"[RESOLVED] {heading}"
    assert [(m.subject, m.destinations["ToAddresses"]) for m in sent_emails()[emails_before:]] == [
        (f"[CRITICAL] {heading}", [stage.bob.email]),
        (f"[CRITICAL] {heading}", [stage.bob.email]),
        (f"[RESOLVED] {heading}", [stage.bob.email]),
    ]
    # And the run is done: nothing is ever paged again
    assert run(stage, incident["id"])["status"] == "done"
    engine.sweep(resolved_at + 2 * 60 * MIN)
    assert deliver(stage, resolved_at + 2 * 60 * MIN) == 0
    assert len(stage.pagerduty.requests) == 3
    # And every delivery of the incident was sent once, readable by the incident's readers
    rows = stage.db.execute(
        "select status, count(*) as n from public.notification_deliveries where incident_id = %s group by status",
        (incident["id"],),
    ).fetchall()
    assert rows == [{"status": "sent", "n": 9}]
    # And no secret ever reached a response: the routing key and the Slack URL are not in the notifications list
    listed = invoke("incidents", "GET", f"{path}/notifications", headers=stage.owner.headers)
    if listed.status == 200:
        assert ROUTING_KEY not in listed.text and SLACK_PATH not in listed.text
