"""The delivery engine against real receivers on localhost (moto SQS and SES, an injected clock): retries by the
schedule, 410, 3xx, Retry-After, the 5-day disable and its e-mail, no double delivery, per-endpoint isolation."""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import boto3
import psycopg
import pytest
from observai.db.connection import transaction
from observai.webhooks import delivery, engine
from observai.webhooks.delivery import DISABLE_AFTER, MAX_ATTEMPTS, SCHEDULE_S, deliver_message, retry_delay_s
from observai.webhooks.fanout import fan_out
from observai.webhooks.queue import parse_message

from tests.helpers.ingest import IngestProject, make_project
from tests.helpers.moto_queue import REGION, QueueAndBucket, queue_and_bucket
from tests.helpers.users import add_membership, make_user
from tests.helpers.webhook_receiver import Reply, WebhookReceiver
from tests.helpers.webhook_rows import attempts, deliver_in_process, emit_event, insert_endpoint, messages

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SENDER = "alerts@observai.example.test"


@dataclass
class Aws:
    queue: QueueAndBucket
    ses: Any

    def sent_emails(self) -> list[Any]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)

    def wakeups(self) -> list[tuple[UUID, int]]:
        """(message id, delay seconds) of every wake-up sent, read from moto's queue (delays included)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sqs.models import sqs_backends

        name = self.queue.queue_url.rsplit("/", 1)[-1]
        q = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues[name]
        return [
            (parse_message(m.body), round((m.delayed_until - m.sent_timestamp) / 1000) if m.delayed_until else 0)
            for m in q._messages
        ]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Aws]:
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")
    monkeypatch.setenv("WEBHOOK_NOTICE_SENDER", SENDER)
    with queue_and_bucket(monkeypatch, "webhook-deliveries") as env:
        monkeypatch.setenv("WEBHOOK_QUEUE_URL", env.queue_url)
        ses = boto3.client("sesv2", region_name=REGION)
        ses.create_email_identity(EmailIdentity=SENDER)
        yield Aws(env, ses)


@pytest.fixture
def project(database_url: str) -> IngestProject:
    with transaction() as cur:  # earlier tests' events and retries must not be fanned out or swept here
        cur.execute("update public.outbox_events set dispatched_at = now() where dispatched_at is null")
        cur.execute(
            "update public.webhook_messages set status = 'failed', next_attempt_at = null"
            " where next_attempt_at is not null"
        )
    return make_project(scopes=("read",), label="Delivery")


def new_message(db: psycopg.Connection[Any], project: IngestProject, endpoint_id: UUID, at: datetime = NOW) -> UUID:
    """An event of the project, fanned out at ``at``: the endpoint's message for it."""
    event_id = emit_event(project.org_id, project.project_id, "incident.triggered", {"title": "Disk full"}, at)
    fan_out(at, 100)
    (row,) = messages(db, event_id=event_id, endpoint_id=endpoint_id)
    return UUID(str(row["id"]))


def message(db: psycopg.Connection[Any], message_id: UUID) -> dict[str, Any]:
    row = db.execute("select * from public.webhook_messages where id = %s", (message_id,)).fetchone()
    assert row is not None
    return dict(row)


def endpoint(db: psycopg.Connection[Any], endpoint_id: UUID) -> dict[str, Any]:
    row = db.execute("select * from public.webhook_endpoints where id = %s", (endpoint_id,)).fetchone()
    assert row is not None
    return dict(row)


def test_failing_twice_then_succeeding(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    with WebhookReceiver() as hook:
        # Given an endpoint whose receiver fails twice, then succeeds
        hook.script(Reply(500, b"busy"), Reply(502), Reply(204))
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        mid = new_message(db, project, endpoint_id)

        # When the engine delivers at each time the schedule gives
        first = deliver_message(mid, NOW)
        assert first.outcome == "retrying" and first.next_attempt_at is not None
        assert endpoint(db, endpoint_id)["failing_since"] == NOW
        second = deliver_message(mid, first.next_attempt_at)
        assert second.outcome == "retrying" and second.next_attempt_at is not None
        third = deliver_message(mid, second.next_attempt_at)

        # Then the third attempt succeeded: one success, three attempts recorded in order
        assert third.outcome == "succeeded"
        rows = attempts(db, mid)
        assert [(a["attempt"], a["status_code"], a["succeeded"]) for a in rows] == [
            (1, 500, False),
            (2, 502, False),
            (3, 204, True),
        ]
        assert rows[0]["response_excerpt"] == "busy" and rows[0]["at"] == NOW
        assert message(db, mid)["status"] == "succeeded" and message(db, mid)["next_attempt_at"] is None
        assert endpoint(db, endpoint_id)["failing_since"] is None  # the failure run ended
        # The retries waited 5 s and 5 min, ±10%
        assert 4.5 <= (first.next_attempt_at - NOW).total_seconds() <= 5.5 + 1
        gap = (second.next_attempt_at - first.next_attempt_at).total_seconds()
        assert 270 <= gap <= 330 + 1
        # The receiver got the same webhook-id (the event's id) each time, and the compact JSON payload
        assert len(hook.requests) == 3
        event_id = str(message(db, mid)["event_id"])
        assert {r.headers["webhook-id"] for r in hook.requests} == {event_id}
        body = json.loads(hook.requests[0].body)
        assert body["type"] == "incident.triggered" and body["data"] == {"title": "Disk full"}
        assert b" " not in hook.requests[0].body.replace(b"Disk full", b"")
        assert hook.requests[0].headers["webhook-signature"].startswith("v1,")
        # The short retries went to the queue as delay messages: 5 s, then 300 s (±10%)
        delays = [d for m, d in aws.wakeups() if m == mid]
        assert delays[0] == 0 and 5 <= delays[1] <= 7 and 270 <= delays[2] <= 332


def test_a_redelivered_wakeup_never_delivers_twice(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    with WebhookReceiver() as hook:
        # Given a message delivered successfully through its queue wake-up
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        mid = new_message(db, project, endpoint_id)
        wakeup = aws.queue.receive()
        assert [parse_message(m["Body"]) for m in wakeup] == [mid]
        first = engine.handle_queue_messages(aws.queue.event(wakeup), clock=lambda: NOW)
        # When SQS delivers the same wake-up again (at least once), and the sweep runs too
        again = engine.handle_queue_messages(aws.queue.event(wakeup), clock=lambda: NOW + timedelta(seconds=30))
        engine.sweep(lambda: NOW + timedelta(minutes=5))
        # Then the receiver got it once; the repeats were no-ops, not failures
        assert first == {"batchItemFailures": []} and again == {"batchItemFailures": []}
        assert len(hook.requests) == 1
        assert len(attempts(db, mid)) == 1
        assert deliver_message(mid, NOW + timedelta(hours=1)).outcome == "done"


def test_410_disables_the_endpoint(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    with WebhookReceiver(reply=Reply(410, b"gone")) as hook:
        # Given an endpoint whose receiver answers 410 Gone, with two messages
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        first = new_message(db, project, endpoint_id)
        second = new_message(db, project, endpoint_id)
        # When the first is delivered
        outcome = deliver_message(first, NOW)
        # Then the endpoint is disabled with the reason, the message failed without retry
        assert outcome.outcome == "endpoint_disabled"
        row = endpoint(db, endpoint_id)
        assert (row["enabled"], row["disabled_reason"], row["disabled_at"]) == (
            False,
            "410 Gone from the receiver",
            row["disabled_at"],
        )
        assert row["disabled_at"] is not None
        assert message(db, first)["status"] == "failed"
        # and the other message is not sent any more
        assert deliver_message(second, NOW).outcome == "endpoint_disabled"
        assert len(hook.requests) == 1
        assert message(db, second)["status"] == "failed"


def test_a_redirect_is_a_failure_and_not_followed(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    with WebhookReceiver() as target, WebhookReceiver() as hook:
        hook.script(Reply(302, headers={"location": target.url("/hook")}))
        # Given an endpoint that redirects elsewhere
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        mid = new_message(db, project, endpoint_id)
        # When it is delivered
        outcome = deliver_message(mid, NOW)
        # Then the 302 is a failure to retry, and the redirect's target got nothing
        assert outcome.outcome == "retrying" and outcome.status_code == 302
        assert [(a["status_code"], a["succeeded"]) for a in attempts(db, mid)] == [(302, False)]
        assert target.requests == []


@pytest.mark.parametrize(
    ("status", "retry_after", "at_least_s", "at_most_s"),
    [
        (429, "120", 120, 130),  # the schedule says 5 s: Retry-After wins
        (503, "3600", 3600, 3610),
        (500, "3600", 4.5, 6.5),  # only 429 and 503 are honoured
    ],
)
def test_retry_after_is_honoured_on_429_and_503(
    db: psycopg.Connection[Any], aws: Aws, project, status: int, retry_after: str, at_least_s: float, at_most_s: float
) -> None:
    with WebhookReceiver(reply=Reply(status, b"slow down", {"retry-after": retry_after})) as hook:
        # Given a receiver answering with Retry-After
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        mid = new_message(db, project, endpoint_id)
        # When the first attempt fails
        outcome = deliver_message(mid, NOW)
        # Then the next attempt waits accordingly
        assert outcome.outcome == "retrying" and outcome.next_attempt_at is not None
        assert at_least_s <= (outcome.next_attempt_at - NOW).total_seconds() <= at_most_s


def test_the_schedule_and_its_jitter() -> None:
    # Given the schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
    assert SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400) and MAX_ATTEMPTS == 10
    rng = random.Random(7)
    for attempt in range(1, MAX_ATTEMPTS):
        # When many delays after attempt n are drawn
        delays = [retry_delay_s(attempt, None, rng) for _ in range(500)]
        # Then each is within ±10% of the step, and they do spread (jitter)
        step = SCHEDULE_S[attempt]
        assert all(d is not None and step * 0.9 <= d <= step * 1.1 for d in delays)
        assert max(d for d in delays if d is not None) - min(d for d in delays if d is not None) > step * 0.15
    # After the last attempt there is none
    assert retry_delay_s(MAX_ATTEMPTS) is None
    # Retry-After lengthens a delay, never shortens it, and is capped at a day
    assert retry_delay_s(1, 60, rng) == 60
    assert 270 <= (retry_delay_s(2, 1, rng) or 0) <= 330
    assert retry_delay_s(1, 10 * 86400, rng) == 86400


def test_the_message_fails_after_the_last_attempt(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    with WebhookReceiver(reply=Reply(500)) as hook:
        # Given a receiver that always fails
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        mid = new_message(db, project, endpoint_id)
        # When every attempt of the schedule is made at its time
        at = NOW
        outcomes = []
        for _ in range(MAX_ATTEMPTS):
            result = deliver_message(mid, at)
            outcomes.append(result.outcome)
            at = result.next_attempt_at or at
        # Then nine retries, then failed for good (about 3.4 days: the endpoint is not yet disabled)
        assert outcomes == ["retrying"] * 9 + ["failed"]
        assert message(db, mid)["status"] == "failed" and len(attempts(db, mid)) == MAX_ATTEMPTS
        assert deliver_message(mid, at + timedelta(days=1)).outcome == "done"
        assert len(hook.requests) == MAX_ATTEMPTS
        assert endpoint(db, endpoint_id)["enabled"] is True


def test_five_days_failing_disables_and_emails_the_admins(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    # Given an organization with an owner, an admin, a member and a viewer
    people = {role: make_user(db) for role in ("owner", "admin", "member", "viewer")}
    for role, user in people.items():
        add_membership(db, project.org_id, user.id, role)
    with WebhookReceiver(reply=Reply(500)) as hook:
        # and an endpoint failing since a little over 5 days
        endpoint_id, secret = insert_endpoint(
            db, project.org_id, project.project_id, hook.url("/hook") + "?token=s3cr3t-token"
        )
        db.execute(
            "update public.webhook_endpoints set failing_since = %s where id = %s",
            (NOW - DISABLE_AFTER - timedelta(minutes=1), endpoint_id),
        )
        first = new_message(db, project, endpoint_id)
        second = new_message(db, project, endpoint_id)
        # When a delivery fails once more
        outcome = deliver_message(first, NOW)
        # Then the endpoint is disabled, the message failed
        assert outcome.outcome == "endpoint_disabled"
        row = endpoint(db, endpoint_id)
        assert row["enabled"] is False and row["disabled_reason"] == "failing for 5 days in a row"
        assert message(db, first)["status"] == "failed"
        # and one e-mail went to the owner and the admin (not the member or the viewer)
        (email,) = aws.sent_emails()
        assert email.source == SENDER
        assert sorted(email.destinations["ToAddresses"]) == sorted([people["owner"].email, people["admin"].email])
        assert str(endpoint_id) in email.body and "/recover?since=" in email.body
        # naming the endpoint without its query (a token) and never the secret
        assert "s3cr3t-token" not in email.body and secret not in email.body
        # A later message does not go out, and no second e-mail is sent
        assert deliver_message(second, NOW + timedelta(minutes=1)).outcome == "endpoint_disabled"
        assert len(aws.sent_emails()) == 1
        assert len(hook.requests) == 1


def test_a_slow_endpoint_does_not_delay_another_in_the_same_batch(
    db: psycopg.Connection[Any], aws: Aws, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_TIMEOUT_S", "1")
    with WebhookReceiver(reply=Reply(200, delay_s=3)) as slow, WebhookReceiver() as fast:
        # Given a batch of wake-ups: one for a receiver slower than the timeout, then one for a healthy receiver
        slow_id, _ = insert_endpoint(db, project.org_id, project.project_id, slow.url("/hook"))
        fast_id, _ = insert_endpoint(db, project.org_id, project.project_id, fast.url("/hook"))
        event_id = emit_event(project.org_id, project.project_id, "alert.firing", {}, NOW)
        fan_out(NOW, 100)
        by_endpoint = {m["endpoint_id"]: m["id"] for m in messages(db, event_id=event_id)}
        wakeups = {parse_message(m["Body"]): m for m in aws.queue.receive()}
        batch = [wakeups[by_endpoint[slow_id]], wakeups[by_endpoint[fast_id]]]
        # When the function handles the batch
        started = time.monotonic()
        response = engine.handle_queue_messages(aws.queue.event(batch), clock=lambda: NOW)
        elapsed = time.monotonic() - started
        # Then the healthy receiver got its delivery at once, not after the slow one's timeout
        assert len(fast.requests) == 1 and fast.requests[0].at - started < 0.5
        assert response == {"batchItemFailures": []}
        # the slow one timed out (a failure to retry), and the batch took one timeout, not the sum
        (timed_out,) = attempts(db, by_endpoint[slow_id])
        assert timed_out["status_code"] is None and timed_out["error"] and not timed_out["succeeded"]
        assert message(db, by_endpoint[fast_id])["status"] == "succeeded"
        assert elapsed < 2.5


def test_an_endpoint_at_its_in_flight_limit_defers_its_message(
    db: psycopg.Connection[Any], aws: Aws, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "1")
    with WebhookReceiver() as hook:
        # Given an endpoint with one delivery in flight (a live lease), and a second message due
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        busy = new_message(db, project, endpoint_id)
        db.execute(
            "update public.webhook_messages set status = 'delivering', next_attempt_at = %s, lease_until = %s"
            " where id = %s",
            (NOW + timedelta(seconds=40), NOW + timedelta(seconds=40), busy),
        )
        waiting = new_message(db, project, endpoint_id)
        # When the second is delivered
        outcome = deliver_message(waiting, NOW)
        # Then it is deferred a moment (nothing sent), with a wake-up
        assert outcome.outcome == "busy" and outcome.next_attempt_at == NOW + timedelta(seconds=2)
        assert hook.requests == [] and message(db, waiting)["attempts"] == 0
        assert (waiting, 2) in aws.wakeups()
        # and the busy message is not taken by anyone while its lease lives
        assert deliver_message(busy, NOW).outcome == "in_flight"
        # Once the lease has expired (its worker died), both go: the dead worker's message is taken over
        later = NOW + timedelta(seconds=41)
        assert deliver_message(busy, later).outcome == "succeeded"
        assert deliver_message(waiting, later).outcome == "succeeded"
        assert len(hook.requests) == 2


def test_the_rate_limit_defers(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    with WebhookReceiver() as hook:
        # Given an endpoint limited to one delivery a second, with two messages
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"), rate_limit_per_s=1)
        first = new_message(db, project, endpoint_id)
        second = new_message(db, project, endpoint_id)
        # When both are delivered in the same second
        assert deliver_message(first, NOW).outcome == "succeeded"
        deferred = deliver_message(second, NOW + timedelta(milliseconds=200))
        # Then the second waits; a second later it goes
        assert deferred.outcome == "rate_limited" and len(hook.requests) == 1
        assert deliver_message(second, NOW + timedelta(seconds=1, milliseconds=300)).outcome == "succeeded"
        assert len(hook.requests) == 2


def test_the_sweep_delivers_long_retries_when_due(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    with WebhookReceiver() as hook:
        # Given a message whose third attempt failed: the next is 30 minutes away (past SQS's delays)
        hook.script(Reply(500), Reply(500), Reply(500), Reply(204))
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        mid = new_message(db, project, endpoint_id)
        at = NOW
        for _ in range(3):
            at = deliver_message(mid, at).next_attempt_at or at
        assert 1600 <= (at - NOW).total_seconds() <= 2400
        queued_for_it = [d for m, d in aws.wakeups() if m == mid]
        assert len(queued_for_it) == 3  # the first, the 5 s and the 5 min ones; not the 30 min one
        # When the sweep runs before it is due, then after
        early = engine.sweep(lambda: at - timedelta(seconds=10))
        assert early.due == 0 and len(hook.requests) == 3
        late = engine.sweep(lambda: at + timedelta(seconds=10))
        # Then the sweep delivers it
        assert late.outcomes.get("succeeded") == 1
        assert message(db, mid)["status"] == "succeeded"


def test_secrets_never_reach_the_logs(db: psycopg.Connection[Any], aws: Aws, project, captured_logs) -> None:
    people = make_user(db)
    add_membership(db, project.org_id, people.id, "owner")
    with WebhookReceiver() as hook:
        # Given an endpoint, delivered to through failures, a success and a 5-day disable, logs at DEBUG
        hook.script(Reply(500), Reply(200))
        endpoint_id, secret = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        mid = new_message(db, project, endpoint_id)
        first = deliver_message(mid, NOW)
        deliver_message(mid, first.next_attempt_at or NOW)
        db.execute(
            "update public.webhook_endpoints set failing_since = %s where id = %s",
            (NOW - timedelta(days=6), endpoint_id),
        )
        hook.script(Reply(500))
        deliver_message(new_message(db, project, endpoint_id), NOW + timedelta(minutes=1))
    # Then the logs have the deliveries, but neither the secret nor its key material nor the signature
    text = captured_logs.getvalue()
    assert "webhook attempt" in text and "webhook disabled notice sent" in text
    key = secret.removeprefix("whsec_")
    assert secret not in text and key not in text
    assert all(r.headers["webhook-signature"].split(",", 1)[1] not in text for r in hook.requests)


def test_deliver_many_reports_each_message(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    with WebhookReceiver() as hook:
        # Given two messages and an id that names none
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        ids = [new_message(db, project, endpoint_id) for _ in range(2)]
        missing = UUID(int=1)
        # When they are delivered together
        results = delivery.deliver_many([*ids, missing], lambda: NOW)
        # Then each has its outcome
        assert {k: getattr(v, "outcome", v) for k, v in results.items()} == {
            ids[0]: "succeeded",
            ids[1]: "succeeded",
            missing: "gone",
        }


@pytest.mark.parametrize(("first_status", "second_status"), [(200, 500), (500, 200)])
def test_a_worker_whose_lease_was_taken_over_records_its_attempt_and_changes_nothing_else(
    db: psycopg.Connection[Any],
    aws: Aws,
    project,
    monkeypatch: pytest.MonkeyPatch,
    first_status: int,
    second_status: int,
) -> None:
    monkeypatch.setenv("WEBHOOK_TIMEOUT_S", "10")
    lease_s = 10 + delivery.LEASE_MARGIN_S
    arrived, release = threading.Event(), threading.Event()
    answers = iter([first_status, second_status])

    def answer(request: Any) -> Reply:
        status = next(answers)
        if status == first_status and not arrived.is_set():
            arrived.set()
            release.wait(8)  # the first worker's request, held in flight until its lease has been taken over
        return Reply(status)

    with WebhookReceiver(reply=answer) as hook:
        # Given a message whose first worker sent its request at NOW and has not heard back
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        mid = new_message(db, project, endpoint_id)
        first: list[Any] = []
        worker = threading.Thread(target=lambda: first.append(deliver_message(mid, NOW)))
        worker.start()
        assert arrived.wait(5)
        # When its lease expires (by the clock given) and a second worker claims the message and decides
        takeover_at = NOW + timedelta(seconds=lease_s + 1)
        second = deliver_message(mid, takeover_at)
        decided = message(db, mid)
        # and only then does the first worker's request come back and get recorded
        release.set()
        worker.join(10)

        # Then the first worker's attempt is recorded as what it was, with the outcome superseded
        (late,) = first
        assert (late.outcome, late.attempt, late.status_code) == ("superseded", 1, first_status)
        assert second.attempt == 2 and second.outcome == ("succeeded" if second_status == 200 else "retrying")
        rows = attempts(db, mid)
        assert sorted((a["attempt"], a["status_code"], a["succeeded"]) for a in rows) == [
            (1, first_status, first_status == 200),
            (2, second_status, second_status == 200),
        ]
        # and changed nothing else: the message is as the second worker left it
        after = message(db, mid)
        assert {k: after[k] for k in ("status", "attempts", "next_attempt_at", "lease_until")} == {
            k: decided[k] for k in ("status", "attempts", "next_attempt_at", "lease_until")
        }
        assert after["status"] == ("succeeded" if second_status == 200 else "pending")
        # nor the endpoint's failure run: started by the second worker's failure, or never started
        assert endpoint(db, endpoint_id)["failing_since"] == (takeover_at if second_status == 500 else None)
        assert len(hook.requests) == 2


def test_the_fast_deliveries_of_a_batch_are_recorded_before_a_slow_one_ends(
    db: psycopg.Connection[Any], aws: Aws, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_TIMEOUT_S", "5")
    release = threading.Event()

    def held(request: Any) -> Reply:
        release.wait(8)
        return Reply(200)

    with WebhookReceiver(reply=held) as slow, WebhookReceiver() as fast:
        # Given one event for three endpoints: one whose receiver holds its answer, two that answer at once
        slow_id, _ = insert_endpoint(db, project.org_id, project.project_id, slow.url("/hook"))
        fast_ids = [insert_endpoint(db, project.org_id, project.project_id, fast.url(f"/{i}"))[0] for i in range(2)]
        event_id = emit_event(project.org_id, project.project_id, "alert.firing", {}, NOW)
        fan_out(NOW, 100)
        by_endpoint = {m["endpoint_id"]: m["id"] for m in messages(db, event_id=event_id)}
        # When the batch is delivered
        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(delivery.deliver_many(list(by_endpoint.values()),
                                                                                      lambda: NOW)))  # fmt: skip
        worker.start()
        try:
            # Then the fast ones are recorded succeeded while the slow one is still in flight
            deadline = time.monotonic() + 4
            fast_messages = [by_endpoint[e] for e in fast_ids]
            while time.monotonic() < deadline:
                if all(message(db, m)["status"] == "succeeded" for m in fast_messages):
                    break
                time.sleep(0.02)
            assert all(message(db, m)["status"] == "succeeded" for m in fast_messages)
            assert message(db, by_endpoint[slow_id])["status"] == "delivering" and not release.is_set()
        finally:
            release.set()
            worker.join(10)
        # and the slow one once it answers
        (outcomes,) = results
        assert {outcomes[m].outcome for m in by_endpoint.values()} == {"succeeded"}
        assert message(db, by_endpoint[slow_id])["status"] == "succeeded"


def test_a_batch_counts_its_own_claims_against_the_in_flight_limit_and_the_rate(
    db: psycopg.Connection[Any], aws: Aws, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "2")
    with WebhookReceiver() as hook:
        # Given an endpoint allowed 2 deliveries in flight with 3 messages due, and one limited to 1 a second with 2
        limited, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/limited"))
        rated, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/rated"), rate_limit_per_s=1)
        events = [emit_event(project.org_id, project.project_id, "alert.firing", {"n": n}, NOW) for n in range(3)]
        fan_out(NOW, 100)
        to_limited = [messages(db, event_id=e, endpoint_id=limited)[0]["id"] for e in events]
        to_rated = [messages(db, event_id=e, endpoint_id=rated)[0]["id"] for e in events[:2]]
        db.execute("update public.webhook_messages set status = 'failed', next_attempt_at = null"
                   " where endpoint_id = %s and event_id = %s", (rated, events[2]))  # fmt: skip
        # When they are delivered in one batch
        results = delivery.deliver_many([*to_limited, *to_rated], lambda: NOW)
        # Then the first two of the limited endpoint went and the third waits; the rated endpoint sent one
        assert [results[m].outcome for m in to_limited] == ["succeeded", "succeeded", "busy"]  # type: ignore[union-attr]
        assert [results[m].outcome for m in to_rated] == ["succeeded", "rate_limited"]  # type: ignore[union-attr]
        assert len(hook.requests) == 3
        assert message(db, to_limited[2])["next_attempt_at"] == NOW + timedelta(seconds=2)
        assert message(db, to_rated[1])["next_attempt_at"] == NOW + timedelta(seconds=1)
        # with a wake-up each
        assert {(to_limited[2], 2), (to_rated[1], 1)} <= set(aws.wakeups())


def test_what_receivers_answer_is_recorded_exactly(db: psycopg.Connection[Any], aws: Aws, project) -> None:
    # Given receivers answering text that quoting must survive: quotes, backslashes, braces, commas, non-ASCII, NULL
    tricky = ["it's a \\ back'slash", '{"a": [1, 2]}, {NULL}', '€ ünïcode "quoted"', "NULL"]
    with WebhookReceiver() as hook:
        hook.script(*(Reply(500, text.encode()) for text in tricky))
        endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, hook.url("/hook"))
        ids = [new_message(db, project, endpoint_id) for _ in tricky]
        # When they are delivered one after the other and their attempts recorded
        for mid in ids:
            assert deliver_message(mid, NOW).outcome == "retrying"
        # Then each excerpt and error is what the receiver sent
        excerpts = [attempts(db, mid)[0]["response_excerpt"] for mid in ids]
        assert excerpts == tricky
        assert {attempts(db, mid)[0]["error"] for mid in ids} == {"HTTP 500"}


def test_a_long_list_goes_through_a_small_pool_past_a_slow_receiver(
    db: psycopg.Connection[Any], aws: Aws, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_TIMEOUT_S", "5")
    release = threading.Event()

    def held(request: Any) -> Reply:
        release.wait(8)
        return Reply(200)

    with WebhookReceiver(reply=held) as slow, WebhookReceiver() as fast:
        # Given one message for a receiver that holds its answer, then five for a healthy one (two endpoints of it)
        slow_id, _ = insert_endpoint(db, project.org_id, project.project_id, slow.url("/hook"))
        fast_ids = [insert_endpoint(db, project.org_id, project.project_id, fast.url(f"/{i}"))[0] for i in range(2)]
        first = new_message(db, project, slow_id)
        rest = [new_message(db, project, fast_ids[n % 2]) for n in range(5)]
        # When they are delivered through a pool of two threads (as the sweep delivers its list)
        results: list[Any] = []
        worker = threading.Thread(
            target=lambda: results.append(delivery.deliver_many([first, *rest], lambda: NOW, max_workers=2))
        )
        worker.start()
        try:
            # Then the healthy five go through the one free thread while the slow one is held
            deadline = time.monotonic() + 4
            while len(fast.requests) < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(fast.requests) == 5 and not release.is_set()
        finally:
            release.set()
            worker.join(10)
        # and every one succeeded, each sent once
        (outcomes,) = results
        assert [outcomes[m].outcome for m in [first, *rest]] == ["succeeded"] * 6
        assert len(slow.requests) == 1


def test_two_workers_claiming_the_same_endpoints_at_once_share_their_slots(
    db: psycopg.Connection[Any], project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes (a connection each); no queue: a child process would not see this one's moto
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")
    monkeypatch.setenv("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "2")
    monkeypatch.delenv("WEBHOOK_QUEUE_URL", raising=False)
    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}

    def answer(request: Any) -> Reply:
        with lock:
            in_flight[request.path] = in_flight.get(request.path, 0) + 1
            most[request.path] = max(most.get(request.path, 0), in_flight[request.path])
        time.sleep(0.3)  # long enough for the two workers' requests to overlap
        with lock:
            in_flight[request.path] -= 1
        return Reply(200)

    with WebhookReceiver(reply=answer) as hook:
        # Given two endpoints allowed 2 deliveries in flight each, with 4 messages each
        for n in range(2):
            insert_endpoint(db, project.org_id, project.project_id, hook.url(f"/{n}"))
        events = [emit_event(project.org_id, project.project_id, "alert.firing", {"n": n}, NOW) for n in range(4)]
        fan_out(NOW, 100)
        ids = [str(m["id"]) for e in events for m in messages(db, event_id=e)]
        assert len(ids) == 8
        # When two workers deliver them all at the same time, in opposite orders
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = [pool.submit(deliver_in_process, order, NOW.isoformat()) for order in (ids, ids[::-1])]
            results = [run.result(timeout=120) for run in runs]
    # Then neither failed (no deadlock between their locks), and each message was sent once, by one of them
    outcomes = [[r[m] for r in results] for m in ids]
    assert {o for pair in outcomes for o in pair} <= {"succeeded", "busy", "in_flight", "not_due", "done"}, outcomes
    sent = [pair.count("succeeded") for pair in outcomes]
    assert len(hook.requests) == sum(sent) and max(sent) == 1
    assert len({(r.path, r.headers["webhook-id"]) for r in hook.requests}) == len(hook.requests)
    # and an endpoint never had more than its 2 deliveries in flight, both workers counted; the rest wait
    assert max(most.values()) <= 2 and sum(sent) >= 4
    waiting = [m for m, n in zip(ids, sent, strict=True) if n == 0]
    assert all(message(db, UUID(m))["status"] == "pending" for m in waiting)
