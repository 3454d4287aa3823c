"""The outbox fan-out: one webhook message per event and subscribed endpoint, in the transaction that marks the
events dispatched; idempotent, overlap-safe, nothing for a rolled-back change; wake-ups on the delivery queue
(moto SQS) after the commit."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai import outbox
from observai.db.connection import transaction
from observai.webhooks.fanout import fan_out, prune_dispatched
from observai.webhooks.queue import parse_message

from tests.helpers.ingest import IngestProject, make_project
from tests.helpers.moto_queue import QueueAndBucket, queue_and_bucket
from tests.helpers.webhook_rows import emit_event, fan_out_until_done, insert_endpoint, messages

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
URL = "https://hooks.example.test/in"


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[QueueAndBucket]:
    with queue_and_bucket(monkeypatch, "webhook-deliveries") as env:
        monkeypatch.setenv("WEBHOOK_QUEUE_URL", env.queue_url)
        yield env


@pytest.fixture
def project(database_url: str) -> IngestProject:
    return make_project(scopes=("read",), label="Fanout")


@pytest.fixture(autouse=True)
def _no_pending_events(database_url: str) -> None:
    # Other tests' events must not be fanned out here (or counted): every test starts from an empty backlog.
    with transaction() as cur:
        cur.execute("update public.outbox_events set dispatched_at = now() where dispatched_at is null")


def _queued(queue: QueueAndBucket) -> list[UUID]:
    return sorted(parse_message(m["Body"]) for m in queue.receive())


def test_one_message_per_subscribed_endpoint(db: psycopg.Connection[Any], queue: QueueAndBucket, project) -> None:
    # Given endpoints of the project: two taking the event, one filtering it out, one disabled, one deleted, and one
    # of another project
    every, _ = insert_endpoint(db, project.org_id, project.project_id, URL)
    firing_only, _ = insert_endpoint(db, project.org_id, project.project_id, URL, event_types=["alert.firing"])
    insert_endpoint(db, project.org_id, project.project_id, URL, event_types=["incident.resolved"])
    insert_endpoint(db, project.org_id, project.project_id, URL, enabled=False)
    insert_endpoint(db, project.org_id, project.project_id, URL, deleted=True)
    other = make_project(scopes=("read",), label="Fanout other")
    insert_endpoint(db, other.org_id, other.project_id, URL)
    event_id = emit_event(project.org_id, project.project_id, "alert.firing", {"rule": "cpu"}, NOW)

    # When the fan-out runs
    report = fan_out(NOW, 100)

    # Then exactly the two subscribed endpoints get a message, due now, carrying the event's payload
    rows = messages(db, event_id=event_id)
    assert sorted(r["endpoint_id"] for r in rows) == sorted([every, firing_only])
    assert {r["status"] for r in rows} == {"pending"} and {r["next_attempt_at"] for r in rows} == {NOW}
    assert rows[0]["payload"] == {"type": "alert.firing", "timestamp": NOW.isoformat(), "data": {"rule": "cpu"}}
    assert (report.events, report.messages, report.queued) == (1, 2, 2)
    # and the event is marked dispatched, and each message has a wake-up on the queue (no delay)
    dispatched = db.execute("select dispatched_at from public.outbox_events where id = %s", (event_id,)).fetchone()
    assert dispatched is not None and dispatched["dispatched_at"] == NOW
    woken = queue.receive()
    assert sorted(parse_message(m["Body"]) for m in woken) == sorted(r["id"] for r in rows)
    assert {json.loads(m["Body"])["v"] for m in woken} == {1}


def test_an_event_without_endpoints_is_simply_marked(db: psycopg.Connection[Any], queue, project) -> None:
    # Given an event of a project without endpoints, and an organization-level event (no project)
    lonely = emit_event(project.org_id, project.project_id, "incident.triggered", {}, NOW)
    org_level = emit_event(project.org_id, None, "usage.quota_reached", {}, NOW)
    # When the fan-out runs
    report = fan_out(NOW, 100)
    # Then both are dispatched, and nothing is created or queued
    assert (report.events, report.messages) == (2, 0)
    rows = db.execute(
        "select dispatched_at from public.outbox_events where id = any(%s)", ([lonely, org_level],)
    ).fetchall()
    assert [r["dispatched_at"] for r in rows] == [NOW, NOW]
    assert _queued(queue) == []


def test_fan_out_is_idempotent(db: psycopg.Connection[Any], queue, project) -> None:
    # Given an event fanned out once
    endpoint, _ = insert_endpoint(db, project.org_id, project.project_id, URL)
    event_id = emit_event(project.org_id, project.project_id, "alert.resolved", {}, NOW)
    fan_out(NOW, 100)
    # When it is found undispatched again (a run that died after its insert) and fanned out again
    db.execute("update public.outbox_events set dispatched_at = null where id = %s", (event_id,))
    again = fan_out(NOW + timedelta(seconds=5), 100)
    # Then no second message is made for the endpoint, and nothing more is queued
    assert (again.events, again.messages, again.queued) == (1, 0, 0)
    assert len(messages(db, event_id=event_id, endpoint_id=endpoint)) == 1
    assert len(_queued(queue)) == 1


def test_the_fan_out_is_bounded_and_oldest_first(db: psycopg.Connection[Any], queue, project) -> None:
    # Given an outbox holding only three events, the oldest first (other tests' events, some older, are set aside:
    # the fan-out takes the oldest of all projects)
    db.execute("update public.outbox_events set dispatched_at = now() where dispatched_at is null")
    insert_endpoint(db, project.org_id, project.project_id, URL)
    ids = [
        emit_event(project.org_id, project.project_id, "alert.firing", {"n": n}, NOW + timedelta(seconds=n))
        for n in range(3)
    ]
    # When the fan-out takes two at a time
    first = fan_out(NOW, 2)
    after_first = {m["event_id"] for m in messages(db, project_id=project.project_id)}
    second = fan_out(NOW, 2)
    # Then the two oldest go first (more pending), the last one next
    assert (first.events, first.more_pending, second.events, second.more_pending) == (2, True, 1, False)
    assert after_first == set(ids[:2])
    assert {m["event_id"] for m in messages(db, project_id=project.project_id)} == set(ids)


def test_a_rolled_back_change_sends_nothing(db: psycopg.Connection[Any], queue, project) -> None:
    # Given an endpoint, and a change that emits an event and then fails (rolled back)
    insert_endpoint(db, project.org_id, project.project_id, URL)
    with pytest.raises(RuntimeError), transaction() as cur:
        outbox.emit(cur, org_id=project.org_id, project_id=project.project_id, type="alert.firing", data={}, at=NOW)
        raise RuntimeError("the change failed after emitting")
    # When the fan-out runs
    report = fan_out(NOW, 100)
    # Then there was no event, so no message and no wake-up
    assert (report.events, report.messages) == (0, 0)
    assert messages(db, project_id=project.project_id) == []
    assert _queued(queue) == []


def test_a_locked_event_is_skipped_not_waited_for(
    db: psycopg.Connection[Any], database_url: str, queue, project
) -> None:
    # Given an event another fan-out holds (its transaction open), and one free event
    endpoint, _ = insert_endpoint(db, project.org_id, project.project_id, URL)
    held = emit_event(project.org_id, project.project_id, "alert.firing", {}, NOW)
    free = emit_event(project.org_id, project.project_id, "alert.firing", {}, NOW + timedelta(seconds=1))
    with psycopg.connect(database_url) as other:
        other.execute("select id from public.outbox_events where id = %s for update", (held,))
        # When this fan-out runs meanwhile
        report = fan_out(NOW, 100)
        # Then it takes only the free one, without waiting for the lock
        assert report.events == 1
        assert [m["event_id"] for m in messages(db, endpoint_id=endpoint)] == [free]
        other.rollback()
    # and the held one is fanned out by the next run, once
    assert fan_out(NOW, 100).messages == 1
    assert sorted(m["event_id"] for m in messages(db, endpoint_id=endpoint)) == sorted([held, free])


def test_two_concurrent_fan_outs_make_one_message_per_endpoint_and_event(
    db: psycopg.Connection[Any], database_url: str, project
) -> None:
    # Given two endpoints and 300 events
    endpoints = [insert_endpoint(db, project.org_id, project.project_id, URL)[0] for _ in range(2)]
    with transaction() as cur:
        outbox.emit_many(
            cur,
            [outbox.OutboxEvent(project.org_id, project.project_id, "alert.firing", {"n": n}, NOW) for n in range(300)],
        )
    # When two processes fan out at the same time, small batches each, until nothing is left
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = [pool.submit(fan_out_until_done, NOW.isoformat(), 20) for _ in range(2)]
        results = [run.result(timeout=120) for run in runs]
    # Then every event was taken by exactly one of them, and each endpoint has one message per event
    assert sum(events for events, _ in results) == 300
    assert sum(created for _, created in results) == 600
    counts = db.execute(
        "select endpoint_id, count(*) as n, count(distinct event_id) as events from public.webhook_messages"
        " where endpoint_id = any(%s) group by endpoint_id",
        (endpoints,),
    ).fetchall()
    assert sorted((r["n"], r["events"]) for r in counts) == [(300, 300), (300, 300)]


def test_dispatched_events_are_pruned_after_a_week(db: psycopg.Connection[Any], project) -> None:
    # Given events dispatched 8 and 6 days ago, and one not dispatched
    old = emit_event(project.org_id, project.project_id, "alert.firing", {}, NOW - timedelta(days=9))
    recent = emit_event(project.org_id, project.project_id, "alert.firing", {}, NOW - timedelta(days=7))
    waiting = emit_event(project.org_id, project.project_id, "alert.firing", {}, NOW - timedelta(days=9))
    db.execute("update public.outbox_events set dispatched_at = %s where id = %s", (NOW - timedelta(days=8), old))
    db.execute("update public.outbox_events set dispatched_at = %s where id = %s", (NOW - timedelta(days=6), recent))
    db.execute("update public.outbox_events set dispatched_at = null where id = %s", (waiting,))
    # When the prune runs
    prune_dispatched(NOW)
    # Then only the one dispatched more than a week ago is gone
    left = {
        r["id"] for r in db.execute("select id from public.outbox_events where id = any(%s)", ([old, recent, waiting],))
    }
    assert left == {recent, waiting}


def test_the_scheduled_sweep_fans_out_in_bounded_rounds(db: psycopg.Connection[Any], queue, project) -> None:
    from observai_local.lambda_context import LambdaContext

    from tests.helpers.inprocess import load_function

    # Given an endpoint the SSRF guard refuses without a DNS lookup (this test is about the sweep, not a receiver),
    # an event waiting in the outbox, and no other test's message due (the sweep would deliver them too)
    db.execute("update public.webhook_messages set next_attempt_at = null where next_attempt_at is not null")
    insert_endpoint(db, project.org_id, project.project_id, "https://10.0.0.1/in")
    event = emit_event(project.org_id, project.project_id, "alert.firing", {"n": 1}, NOW)
    # When EventBridge Scheduler runs DeliverWebhooksFunction's minute sweep
    summary = load_function("deliver_webhooks").lambda_handler(
        {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}},
        LambdaContext("observai-test-deliver-webhooks", timeout_s=60),
    )
    # Then it ran at least one round, bounded, and the event became the endpoint's message
    assert 1 <= summary["rounds"] <= 5 and summary["events"] >= 1
    assert [m["event_id"] for m in messages(db, project_id=project.project_id)] == [event]
