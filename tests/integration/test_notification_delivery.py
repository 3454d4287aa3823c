"""Notification deliveries end to end: records woken through moto's SQS, sent by DeliverNotificationsFunction's
queue path and its sweep to real HTTP receivers on localhost standing in for Slack and PagerDuty (secrets sealed
with a moto KMS key), with an injected clock. Retries, 410, 400, no second send, the Slack rate limit, a lease taken
over, the route hook from the real dispatcher, the API and its tenant isolation, and no secret anywhere."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import boto3
import psycopg
import pytest
from observai.config import get_settings
from observai.notify import deliveries
from observai.notify.queue import parse_message
from observai.notify.secrets import forget_data_keys
from observai.webhooks.sender import close_connections

from tests.helpers.alert_rows import new_board
from tests.helpers.ingest import add_key
from tests.helpers.inprocess import invoke, load_function
from tests.helpers.moto_queue import REGION, QueueAndBucket, queue_and_bucket
from tests.helpers.notifications import (
    Paged,
    delivery,
    enqueue_email,
    enqueue_to,
    insert_contact_point,
    project_with_incident,
    timeline_kinds,
)
from tests.helpers.users import add_membership, make_user
from tests.helpers.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
SENDER = "pager@observai.example.test"


@dataclass
class Aws:
    queue: QueueAndBucket
    kms_key_id: str

    def wakeups(self) -> list[tuple[UUID, int]]:
        """(delivery id, delay in seconds) of every wake-up sent so far, from moto's queue (delayed ones too)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sqs.models import sqs_backends

        name = self.queue.queue_url.rsplit("/", 1)[-1]
        q = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues[name]
        return [
            (parse_message(m.body), round((m.delayed_until - m.sent_timestamp) / 1000) if m.delayed_until else 0)
            for m in q._messages
        ]

    def handle(self, at: datetime, messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """DeliverNotificationsFunction's queue path with the visible wake-ups (or ``messages``) at ``at``."""
        messages = self.queue.receive() if messages is None else messages
        return deliveries.handle_queue_messages(self.queue.event(messages), clock=lambda: at)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection[Any]) -> Iterator[Aws]:
    # Earlier tests' due deliveries must not be claimed by the sweeps here.
    db.execute(
        "update public.notification_deliveries set status = 'skipped', next_attempt_at = null"
        " where next_attempt_at is not null"
    )
    monkeypatch.setenv("NOTIFY_ALLOW_LOOPBACK", "true")
    monkeypatch.setenv("NOTIFY_EMAIL_SENDER", SENDER)
    with queue_and_bucket(monkeypatch, "notifications") as env:
        key_id = boto3.client("kms", region_name=REGION).create_key(Description="channel secrets")["KeyMetadata"]
        monkeypatch.setenv("NOTIFY_QUEUE_URL", env.queue_url)
        monkeypatch.setenv("NOTIFY_KMS_KEY_ID", key_id["KeyId"])
        forget_data_keys()
        boto3.client("sesv2", region_name=REGION).create_email_identity(EmailIdentity=SENDER)
        try:
            yield Aws(env, key_id["KeyId"])
        finally:
            forget_data_keys()
            close_connections()


@pytest.fixture
def paged(db: psycopg.Connection[Any], aws: Aws) -> Paged:
    return project_with_incident(db, NOW, label="Deliveries")


def slack_point(db: psycopg.Connection[Any], paged: Paged, url: str, name: str | None = None) -> UUID:
    return insert_contact_point(db, paged.project.org_id, paged.project.project_id, "slack", name=name, secret=url)


def test_a_receiver_failing_twice_then_answering_gets_one_message_and_three_attempts(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged
) -> None:
    with WebhookReceiver() as slack:
        slack.script(Reply(500, b"oops"), Reply(503, b"busy"), Reply(200, b"ok"))
        url = slack.url("/services/T000/B000/secret-token-xyz")
        point = slack_point(db, paged, url)
        # Given a delivery recorded (its wake-up leaves after the commit)
        did = enqueue_to(paged, point, "slack", NOW)
        assert did is not None and aws.wakeups() == [(did, 0)]
        # When the queue delivers the wake-up, and then each retry's wake-up when its delay has passed
        wakeup = aws.queue.receive()
        assert aws.handle(NOW, wakeup) == {"batchItemFailures": []}
        first_retry = delivery(db, did)["next_attempt_at"]
        assert timedelta(seconds=10) <= first_retry - NOW < timedelta(seconds=11)
        # (the retries' delay messages carry the same body: moto would hold them for real seconds)
        assert aws.handle(first_retry, wakeup) == {"batchItemFailures": []}
        second_retry = delivery(db, did)["next_attempt_at"]
        assert timedelta(seconds=30) <= second_retry - first_retry < timedelta(seconds=31)
        assert aws.handle(second_retry, wakeup) == {"batchItemFailures": []}
        # Then the receiver got it three times, the last one took: one delivery, sent, 3 attempts
        assert len(slack.requests) == 3
        row = delivery(db, did)
        assert (row["status"], row["attempts"], row["response_code"]) == ("sent", 3, 200)
        # the retries were woken with their delays (10 s and 30 s), and the sweep finds nothing more
        delays = [d for i, d in aws.wakeups() if i == did]
        assert delays[0] == 0 and 10 <= delays[1] <= 11 and 30 <= delays[2] <= 31
        assert deliveries.sweep(lambda: NOW + timedelta(hours=2)).claimed == 0
        assert len(slack.requests) == 3
        # The message is the Slack Block Kit of the incident, with its buttons
        body = json.loads(slack.requests[-1].body)
        assert "blocks" in body and body["text"]
        assert paged.incident["title"] in body["text"]
        buttons = [e for b in body["blocks"] if b.get("type") == "actions" for e in b["elements"] if e.get("action_id")]
        value = f"{paged.project.project_id}/{paged.incident['id']}"
        assert {(b["action_id"], b["value"]) for b in buttons} >= {("incident_acknowledge", value)}
        # And the timeline says it was sent, with the contact point's name, not its URL
        (sent,) = [d for k, d in timeline_kinds(db, paged.incident["id"]) if k == "notification_sent"]
        assert sent["channel"] == "slack" and sent["attempts"] == 3 and sent["status_code"] == 200
        assert sent["contact_point_id"] == str(point) and sent["contact_point"].startswith("slack-")
        assert "secret-token-xyz" not in json.dumps(timeline_kinds(db, paged.incident["id"]))


def test_410_from_slack_disables_the_contact_point_and_records_why(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged
) -> None:
    with WebhookReceiver(reply=Reply(410, b"no_service")) as slack:
        point = slack_point(db, paged, slack.url("/services/T1/B1/gone"))
        first = enqueue_to(paged, point, "slack", NOW)
        second = enqueue_to(paged, point, "slack", NOW + timedelta(seconds=5))
        # When the first is sent: Slack says the webhook is gone
        out = deliveries.deliver_many([first], lambda: NOW)
        # Then the contact point is disabled with the reason, the delivery failed (not retried)
        assert out[first].outcome == "disabled"
        cp = db.execute("select enabled, disabled_reason from public.contact_points where id = %s", (point,))
        row = cp.fetchone()
        assert row is not None and row["enabled"] is False and "410" in row["disabled_reason"]
        failed = delivery(db, first)
        assert (failed["status"], failed["attempts"], failed["response_code"]) == ("failed", 1, 410)
        assert failed["error"] == row["disabled_reason"] and failed["next_attempt_at"] is None
        assert [k for k, _ in timeline_kinds(db, paged.incident["id"])].count("notification_failed") == 1
        # And the other delivery of that contact point is skipped, without sending
        assert deliveries.deliver_many([second], lambda: NOW + timedelta(seconds=10))[second].outcome == "skipped"
        skipped = delivery(db, second)
        assert (skipped["status"], skipped["attempts"], skipped["error"]) == (
            "skipped",
            0,
            "the contact point is disabled",
        )
        assert len(slack.requests) == 1


def test_pagerduty_400_is_not_retried_and_202_carries_the_incident_as_dedup_key(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver() as pagerduty:
        monkeypatch.setenv("PAGERDUTY_EVENTS_URL", pagerduty.url("/v2/enqueue"))
        routing_key = "R0UT1NGKEY0123456789abcdef012345"
        point = insert_contact_point(
            db, paged.project.org_id, paged.project.project_id, "pagerduty", secret=routing_key
        )
        pagerduty.script(Reply(400, b'{"status":"invalid event"}'), Reply(202, b'{"status":"success"}'))
        bad = enqueue_to(paged, point, "pagerduty", NOW)
        # When PagerDuty refuses the event (400): Then it failed at once, no retry
        assert deliveries.deliver_many([bad], lambda: NOW)[bad].outcome == "failed"
        row = delivery(db, bad)
        assert (row["status"], row["attempts"], row["response_code"], row["next_attempt_at"]) == (
            "failed",
            1,
            400,
            None,
        )
        assert deliveries.sweep(lambda: NOW + timedelta(hours=1)).claimed == 0
        # When another event is accepted (202): Then sent, and the event names the incident as its dedup_key
        good = enqueue_to(paged, point, "pagerduty", NOW, event="resolve")
        assert deliveries.deliver_many([good], lambda: NOW)[good].outcome == "sent"
        assert delivery(db, good)["response_code"] == 202
        assert len(pagerduty.requests) == 2
        event = json.loads(pagerduty.requests[1].body)
        assert event == {"routing_key": routing_key, "event_action": "resolve", "dedup_key": str(paged.incident["id"])}
        trigger = json.loads(pagerduty.requests[0].body)
        assert trigger["event_action"] == "trigger" and trigger["payload"]["severity"] == "critical"


def test_a_redelivered_message_and_repeated_sweeps_never_send_twice(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged
) -> None:
    with WebhookReceiver(reply=Reply(200, b"ok")) as slack:
        point = slack_point(db, paged, slack.url("/services/T2/B2/once"))
        did = enqueue_to(paged, point, "slack", NOW)
        wakeup = aws.queue.receive()
        # When the wake-up is handled, delivered again by SQS, and two sweeps run (one at the same time)
        assert aws.handle(NOW, wakeup) == {"batchItemFailures": []}
        assert aws.handle(NOW + timedelta(seconds=1), wakeup) == {"batchItemFailures": []}
        deliveries.sweep(lambda: NOW + timedelta(minutes=1))
        deliveries.sweep(lambda: NOW + timedelta(minutes=2))
        # Then it was sent once
        assert len(slack.requests) == 1
        assert (delivery(db, did)["status"], delivery(db, did)["attempts"]) == ("sent", 1)


def test_a_wakeup_that_is_not_ours_fails_alone_to_the_dlq(db: psycopg.Connection[Any], aws: Aws, paged: Paged) -> None:
    with WebhookReceiver(reply=Reply(200, b"ok")) as slack:
        point = slack_point(db, paged, slack.url("/services/T3/B3/mixed"))
        enqueue_to(paged, point, "slack", NOW)
        aws.queue.sqs.send_message(QueueUrl=aws.queue.queue_url, MessageBody="garbage")
        messages = aws.queue.receive()
        response = aws.handle(NOW, messages)
        garbage = [m["MessageId"] for m in messages if m["Body"] == "garbage"]
        assert response == {"batchItemFailures": [{"itemIdentifier": garbage[0]}]}
        assert len(slack.requests) == 1


def test_slack_one_message_a_second_per_webhook_url(db: psycopg.Connection[Any], aws: Aws, paged: Paged) -> None:
    with WebhookReceiver(reply=Reply(200, b"ok")) as slack:
        shared = slack.url("/services/T4/B4/shared")
        # Given two contact points on the same Slack webhook, and one on another
        a = slack_point(db, paged, shared)
        b = slack_point(db, paged, shared)
        c = slack_point(db, paged, slack.url("/services/T4/B5/other"))
        ids = [
            enqueue_to(paged, a, "slack", NOW),
            enqueue_to(paged, a, "slack", NOW),
            enqueue_to(paged, b, "slack", NOW),
            enqueue_to(paged, c, "slack", NOW),
        ]
        # When all four are due in the same second
        out = deliveries.deliver_many(ids, lambda: NOW)
        # Then one goes to the shared webhook and one to the other; the two others wait for the next second,
        # without counting an attempt
        assert sorted(o.outcome for o in out.values()) == ["deferred", "deferred", "sent", "sent"]
        deferred = [i for i in ids if out[i].outcome == "deferred"]
        for did in deferred:
            row = delivery(db, did)
            assert (row["status"], row["attempts"], row["next_attempt_at"]) == (
                "pending",
                0,
                NOW + timedelta(seconds=1),
            )
        assert sorted(d for i, d in aws.wakeups() if i in deferred and d > 0) == [1, 1]
        # When woken at the next second, then the one after: one each time
        assert [
            o.outcome for o in deliveries.deliver_many(deferred, lambda: NOW + timedelta(seconds=1)).values()
        ].count("sent") == 1
        again = deliveries.deliver_many(deferred, lambda: NOW + timedelta(seconds=2))
        assert [o.outcome for o in again.values()].count("sent") == 1
        assert {delivery(db, i)["status"] for i in ids} == {"sent"}
        by_path: dict[str, int] = {}
        for r in slack.requests:
            by_path[r.path] = by_path.get(r.path, 0) + 1
        assert by_path == {"/services/T4/B4/shared": 3, "/services/T4/B5/other": 1}


def test_an_expired_lease_is_taken_over_by_the_sweep(db: psycopg.Connection[Any], aws: Aws, paged: Paged) -> None:
    with WebhookReceiver(reply=Reply(200, b"ok")) as slack:
        point = slack_point(db, paged, slack.url("/services/T5/B5/lease"))
        did = enqueue_to(paged, point, "slack", NOW)
        # Given a worker that claimed it and died before sending
        dead = deliveries.prepare(ids=[did], limit=1, now=NOW, settings=get_settings())
        assert len(dead.ready) == 1
        lease = delivery(db, did)["lease_until"]
        # When the sweep runs while the lease holds: Then it leaves it alone
        assert deliveries.sweep(lambda: lease - timedelta(seconds=1)).claimed == 0
        # When the lease has expired: Then the sweep takes it over and sends it (attempt 2)
        assert deliveries.sweep(lambda: lease + timedelta(seconds=1)).claimed == 1
        assert (delivery(db, did)["status"], delivery(db, did)["attempts"]) == ("sent", 2)
        assert len(slack.requests) == 1


def test_email_to_a_person_through_ses(db: psycopg.Connection[Any], aws: Aws, paged: Paged) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    did = enqueue_email(paged, NOW, to="oncall@example.test")
    assert deliveries.deliver_many([did], lambda: NOW)[did].outcome == "sent"
    sent = [
        m
        for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
        if "oncall@example.test" in str(m.destinations)
    ]
    assert len(sent) == 1


def test_an_emails_progress_is_kept_so_its_retry_resumes_after_the_parts_sent(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged
) -> None:
    from observai.notify.message import SendResult

    # Given an e-mail delivery claimed for its first attempt
    did = enqueue_email(paged, NOW, to="oncall@example.test")
    assert did is not None
    settings = get_settings()
    first = deliveries.prepare(ids=[did], limit=10, now=NOW, settings=settings)
    assert [c.message.resume_from for c in first.ready] == [0]
    # When the attempt ends with SES throttling after accepting 2 of its messages
    throttled = SendResult(ok=False, retryable=True, status_code=429, error="SES TooManyRequestsException", progress=2)
    outcome = deliveries.record(first.ready, [throttled], NOW, settings)[did]
    assert outcome.outcome == "retrying" and outcome.next_attempt_at is not None
    # Then the delivery keeps its progress, and the retry's message resumes after those 2 messages
    assert delivery(db, did)["progress"] == 2
    retry = deliveries.prepare(ids=[did], limit=10, now=outcome.next_attempt_at, settings=settings)
    assert [c.message.resume_from for c in retry.ready] == [2]
    # And an attempt that says nothing of parts leaves the progress as it was
    deliveries.record(retry.ready, [SendResult(ok=False, retryable=True, error="no answer")], NOW, settings)
    assert delivery(db, did)["progress"] == 2


def test_a_route_notification_from_the_dispatcher_reaches_each_contact_point(
    db: psycopg.Connection[Any], aws: Aws
) -> None:
    from observai.alerts.dispatch import flush_group
    from observai.alerts.routing import route_transitions

    with WebhookReceiver(reply=Reply(200, b"ok")) as slack, WebhookReceiver() as pagerduty:
        import os

        os.environ["PAGERDUTY_EVENTS_URL"] = pagerduty.url("/v2/enqueue")
        pagerduty.script(Reply(202, b"{}"))
        try:
            board = new_board(db, "Routes")
            ops = insert_contact_point(
                db, board.org_id, board.project_id, "slack", name="ops-slack", secret=slack.url("/services/T6/B6/ops")
            )
            pager = insert_contact_point(
                db, board.org_id, board.project_id, "pagerduty", name="ops-pager", secret="routingkey-ops-0123456789"
            )
            # Given a route naming both contact points, and a name that exists nowhere
            board.put_policy({"route": {"receivers": {"contact_points": ["ops-slack", "ops-pager", "nobody"]}}})
            t0 = NOW
            board.fire(t0, service="api")
            route_transitions(t0)
            group = board.group(alertname="HighLatency")
            # When the dispatcher flushes the group (its first notification)
            result = flush_group(group["id"], group["next_flush_at"])
            assert result.outcome == "notified"
            # Then one delivery per contact point, keyed on the log entry
            rows = db.execute(
                "select * from public.notification_deliveries where notification_log_id = %s order by channel",
                (result.log_id,),
            ).fetchall()
            assert [(r["channel"], r["contact_point_id"], r["event"], r["source"]) for r in rows] == [
                ("pagerduty", pager, "notify", "route"),
                ("slack", ops, "notify", "route"),
            ]
            assert {r["idempotency_key"] for r in rows} == {
                f"route:{result.log_id}:{pager}",
                f"route:{result.log_id}:{ops}",
            }
            assert rows[0]["payload"]["reason"] == "first" and len(rows[0]["payload"]["firing"]) == 1
            # and the name that resolves to nothing is noted on the incident's timeline
            notes = [d for k, d in timeline_kinds(db, result.incident_id) if k == "notification_skipped"]
            assert [n["contact_points"] for n in notes] == [["nobody"]]
            # When the queue delivers their wake-ups: Then each receiver gets its message
            assert aws.handle(group["next_flush_at"]) == {"batchItemFailures": []}
            assert len(slack.requests) == 1 and len(pagerduty.requests) == 1
            assert json.loads(pagerduty.requests[0].body)["dedup_key"] == str(result.incident_id)
            assert {delivery(db, r["id"])["status"] for r in rows} == {"sent"}
        finally:
            os.environ.pop("PAGERDUTY_EVENTS_URL", None)


# --- the API -------------------------------------------------------------------------------------------------


def test_get_notifications_lists_the_records_with_tenant_isolation_and_no_secret(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged, captured_logs: io.StringIO
) -> None:
    secret_url_token = "xoxb-very-secret-path-987654"
    with WebhookReceiver() as slack:
        slack.script(Reply(500, f"error at {slack.url('/services/T7/B7/' + secret_url_token)}".encode()), Reply(200))
        point = slack_point(db, paged, slack.url(f"/services/T7/B7/{secret_url_token}"), name="team-slack")
        first = enqueue_to(paged, point, "slack", NOW)
        second = enqueue_email(paged, NOW + timedelta(seconds=1))
        deliveries.deliver_many([first, second], lambda: NOW + timedelta(seconds=1))
    viewer = make_user(db)
    add_membership(db, paged.project.org_id, viewer.id, "viewer")
    path = f"/v1/projects/{paged.project.project_id}/incidents/{paged.incident['id']}/notifications"

    # When a viewer reads the incident's notifications
    result = invoke("incidents", "GET", path, headers=viewer.headers)
    # Then both records, oldest first, with what happened
    assert result.status == 200, result.text
    items = result.data
    assert [i["id"] for i in items] == [str(first), str(second)]
    slack_row, email_row = items
    assert slack_row["contact_point_name"] == "team-slack" and slack_row["channel"] == "slack"
    assert (slack_row["status"], slack_row["attempts"], slack_row["response_code"]) == ("pending", 1, 500)
    assert slack_row["next_attempt_at"] is not None and slack_row["source"] == "escalation"
    assert email_row["user_id"] is not None and email_row["contact_point_id"] is None and email_row["status"] == "sent"
    # and the incident's timeline (over the API) says the e-mail was sent
    kinds = [
        e["kind"]
        for e in invoke("incidents", "GET", path.replace("/notifications", "/timeline"), headers=viewer.headers).data
    ]
    assert kinds.count("notification_sent") == 1
    # and a read key of the project reads them too; pages of one
    key_result = invoke("incidents", "GET", path, headers=paged.project.headers, query="limit=1")
    assert key_result.status == 200 and [i["id"] for i in key_result.data] == [str(first)]
    cursor = key_result.json()["meta"]["next_cursor"]
    rest = invoke("incidents", "GET", path, headers=paged.project.headers, query=f"limit=1&cursor={cursor}")
    assert [i["id"] for i in rest.data] == [str(second)]

    # When another organization's member, or another project's key, asks: Then 404
    stranger = project_with_incident(db, NOW, label="Stranger")
    outsider = make_user(db)
    add_membership(db, stranger.project.org_id, outsider.id, "owner")
    assert invoke("incidents", "GET", path, headers=outsider.headers).status == 404
    assert invoke("incidents", "GET", path, headers=stranger.project.headers).status in (403, 404)
    # and the incident of another project under this project's path: 404
    other = f"/v1/projects/{paged.project.project_id}/incidents/{stranger.incident['id']}/notifications"
    assert invoke("incidents", "GET", other, headers=viewer.headers).status == 404

    # And the secret URL is nowhere: not in the response, the records, the timeline, the logs
    everything = [
        result.text,
        json.dumps(
            [
                dict(r)
                for r in db.execute(
                    "select * from public.notification_deliveries where id = any(%s)", ([first, second],)
                ).fetchall()
            ],
            default=str,
        ),
        json.dumps(timeline_kinds(db, paged.incident["id"]), default=str),
        captured_logs.getvalue(),
    ]
    for text in everything:
        assert secret_url_token not in text


def test_the_function_handles_its_queue_and_its_schedule(db: psycopg.Connection[Any], aws: Aws, paged: Paged) -> None:
    from observai_local.lambda_context import LambdaContext

    fn = load_function("deliver_notifications")
    with WebhookReceiver(reply=Reply(200, b"ok")) as slack:
        point = slack_point(db, paged, slack.url("/services/T8/B8/fn"))
        did = enqueue_to(paged, point, "slack", datetime.now(UTC))
        context = LambdaContext("observai-test-deliver-notifications", memory_limit_in_mb=512, timeout_s=60)
        # The queue path
        assert fn.lambda_handler(aws.queue.event(aws.queue.receive()), context) == {"batchItemFailures": []}
        assert delivery(db, did)["status"] == "sent"
        # The scheduled path (nothing due of ours)
        summary = fn.lambda_handler({"source": "aws.scheduler"}, context)
        assert summary["rounds"] >= 1 and "outcomes" in summary


def test_the_template_gives_the_queue_a_dead_letter_queue() -> None:
    from observai_local.template import TEMPLATE_PATH, load_yaml

    resources = load_yaml(TEMPLATE_PATH)["Resources"]
    queue = resources["NotificationQueue"]["Properties"]
    fn = resources["DeliverNotificationsFunction"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["NotificationDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert queue["VisibilityTimeout"] == 6 * fn["Timeout"]
    assert resources["NotificationDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 1209600
    (sqs_event,) = [e for e in fn["Events"].values() if e["Type"] == "SQS"]
    assert sqs_event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    for name in (
        "DeliverNotificationsFunction",
        "DispatchNotificationsFunction",
        "IncidentsFunction",
        "IncidentTimersFunction",
    ):
        props = resources[name]["Properties"]
        assert props["Environment"]["Variables"]["NOTIFY_QUEUE_URL"] == {"Ref": "NotificationQueue"}, name
        sends = [p for p in props["Policies"] if isinstance(p, dict) and "SQSSendMessagePolicy" in p]
        assert {"QueueName": {"Fn::GetAtt": ["NotificationQueue", "QueueName"]}} in [
            p["SQSSendMessagePolicy"] for p in sends
        ], name


def test_with_key_only_scope_read(db: psycopg.Connection[Any], aws: Aws, paged: Paged) -> None:
    # An ingest-only key of the project may not read incidents' notifications
    ingest_key = add_key(paged.project, ("ingest",))
    path = f"/v1/projects/{paged.project.project_id}/incidents/{paged.incident['id']}/notifications"
    assert invoke("incidents", "GET", path, headers=ingest_key.headers).status == 403


def test_a_person_paged_through_their_slack_contact_point_is_mentioned(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged
) -> None:
    from observai.db.connection import transaction
    from observai.notify.deliveries_enqueue import DeliveryRequest, enqueue

    with WebhookReceiver(reply=Reply(200, b"ok")) as slack:
        point = slack_point(db, paged, slack.url("/services/T9/B9/person"))
        person = make_user(db)
        with transaction() as cur:
            did = enqueue(
                cur,
                DeliveryRequest(
                    org_id=paged.project.org_id,
                    project_id=paged.project.project_id,
                    channel="slack",
                    event="trigger",
                    source="escalation",
                    key=f"person:{point}",
                    incident_id=paged.incident["id"],
                    contact_point_id=point,
                    user_id=person.id,
                    escalation_step=1,
                    payload={"mention": "U024BE7LH"},
                ),
                NOW,
            )
        assert deliveries.deliver_many([did], lambda: NOW)[did].outcome == "sent"
        assert "<@U024BE7LH>" in slack.requests[0].body.decode()
        (sent,) = [d for k, d in timeline_kinds(db, paged.incident["id"]) if k == "notification_sent"]
        assert sent["user_id"] == str(person.id) and sent["escalation_step"] == 1


def test_a_webhook_contact_point_hands_its_message_to_the_webhook_engine(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")
    owner = make_user(db)
    add_membership(db, paged.project.org_id, owner.id, "owner")
    with WebhookReceiver(reply=Reply(200, b"ok")) as hook:
        body = {"name": "hook", "kind": "webhook", "settings": {"url": hook.url("/hook")}}
        created = invoke(
            "contact_points",
            "POST",
            f"/v1/projects/{paged.project.project_id}/contact-points",
            headers=owner.headers,
            json_body=body,
        )
        assert created.status == 201, created.text
        point = UUID(created.data["id"])
        # Given three webhook deliveries in one batch (the channel uses the database: they take turns)
        ids = [enqueue_to(paged, point, "webhook", NOW) for _ in range(3)]
        out = deliveries.deliver_many(ids, lambda: NOW)
        # Then each is handed over (sent), one webhook message each, keyed by the delivery's id
        assert {o.outcome for o in out.values()} == {"sent"}
        rows = db.execute(
            "select event_id, event_type from public.webhook_messages where event_id = any(%s)", (ids,)
        ).fetchall()
        assert sorted(r["event_id"] for r in rows) == sorted(ids)
        assert {r["event_type"] for r in rows} == {"incident.trigger"}


def test_a_slow_receiver_does_not_hold_the_others_of_its_batch(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("NOTIFY_TIMEOUT_S", "1")
    with (
        WebhookReceiver(reply=Reply(200, b"ok", delay_s=3)) as slow,
        WebhookReceiver(reply=Reply(200, b"ok")) as fast,
    ):
        # Given a batch whose first delivery goes to a receiver that never answers within the timeout
        slow_id = enqueue_to(paged, slack_point(db, paged, slow.url("/services/slow")), "slack", NOW)
        fast_id = enqueue_to(paged, slack_point(db, paged, fast.url("/services/fast")), "slack", NOW)
        started = time.monotonic()
        out = deliveries.deliver_many([slow_id, fast_id], lambda: NOW)
        # Then the other one was sent at once, and the slow one is retried after its timeout
        assert fast.requests[0].at - started < 0.5
        assert out[fast_id].outcome == "sent" and out[slow_id].outcome == "retrying"
        slow_row = delivery(db, slow_id)
        assert slow_row["response_code"] is None and slow_row["error"] and slow_row["status"] == "pending"


def test_slack_429_waits_at_least_its_retry_after(db: psycopg.Connection[Any], aws: Aws, paged: Paged) -> None:
    with WebhookReceiver(reply=Reply(429, b"rate_limited", {"retry-after": "45"})) as slack:
        point = slack_point(db, paged, slack.url("/services/T10/B10/busy"))
        did = enqueue_to(paged, point, "slack", NOW)
        out = deliveries.deliver_many([did], lambda: NOW)
        # Then it is retried no sooner than Slack asked (45 s, not the schedule's 10 s), woken by a delay message
        assert out[did].outcome == "retrying" and out[did].next_attempt_at is not None
        assert timedelta(seconds=45) <= out[did].next_attempt_at - NOW < timedelta(seconds=46)
        row = delivery(db, did)
        assert (row["status"], row["attempts"], row["response_code"]) == ("pending", 1, 429)
        assert [d for i, d in aws.wakeups() if i == did][-1] in (45, 46)


def test_pagerduty_120_events_a_minute_per_routing_key(
    db: psycopg.Connection[Any], aws: Aws, paged: Paged, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver(reply=Reply(202, b"{}")) as pagerduty:
        monkeypatch.setenv("PAGERDUTY_EVENTS_URL", pagerduty.url("/v2/enqueue"))
        point = insert_contact_point(
            db, paged.project.org_id, paged.project.project_id, "pagerduty", secret="busy-routing-key-0123456789"
        )
        # Given 122 events for one routing key due in the same minute
        ids = [enqueue_to(paged, point, "pagerduty", NOW) for _ in range(122)]
        out = deliveries.deliver_many(ids, lambda: NOW + timedelta(seconds=5))
        # Then 120 go, the 2 others wait for the next minute without counting an attempt
        assert sorted(o.outcome for o in out.values()).count("sent") == 120
        late = [i for i in ids if out[i].outcome == "deferred"]
        assert len(late) == 2 and len(pagerduty.requests) == 120
        assert {(delivery(db, i)["next_attempt_at"], delivery(db, i)["attempts"]) for i in late} == {
            (NOW + timedelta(minutes=1), 0)
        }
        # When the next minute comes: Then they go
        again = deliveries.deliver_many(late, lambda: NOW + timedelta(minutes=1))
        assert {o.outcome for o in again.values()} == {"sent"} and len(pagerduty.requests) == 122
