"""The AI worker's queue on the real database: what an incident's changes enqueue (only for organizations that opted
in), idempotent enqueue with a debounce, claim with a lease and SKIP LOCKED, retries with backoff, the fence that
keeps a task enqueued again while it ran, unknown kinds, and the SQS handler. Handlers are the test's own (the
summary handler is exercised in test_ai_summaries.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.ai import tasks, worker
from observai.auth.principal import Principal
from observai.db.connection import transaction
from observai.incidents import service as incidents
from observai.incidents.models import ResolveIn
from observai.sqs_batches import is_sqs_event

from tests.helpers.incidents import arrange_alert, arrange_rule, flush
from tests.helpers.notifications import Paged, project_with_incident
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def member(db: psycopg.Connection[Any], org_id: UUID) -> Principal:
    user = make_user(db)
    add_membership(db, org_id, user.id, "member")
    return Principal(kind="user", user_id=user.id, email=user.email)


def opt_in(db: psycopg.Connection[Any], org_id: UUID) -> None:
    db.execute(
        "insert into public.org_ai_settings (org_id, enabled) values (%s, true)"
        " on conflict (org_id) do update set enabled = true",
        (org_id,),
    )


def tasks_of(db: psycopg.Connection[Any], incident_id: UUID) -> dict[str, dict[str, Any]]:
    rows = db.execute("select * from public.ai_tasks where incident_id = %s", (incident_id,)).fetchall()
    return {r["kind"]: dict(r) for r in rows}


def enqueue(paged: Paged, now: datetime, *, kind: str = "summary", reason: str = "requested", delay_s: int = 0) -> int:
    with transaction() as cur:
        tasks.enqueue(
            cur,
            org_id=paged.project.org_id,
            project_id=paged.project.project_id,
            incident_id=paged.incident["id"],
            kind=kind,  # type: ignore[arg-type]
            reason=reason,
            now=now,
            delay_s=delay_s,
        )
        cur.execute("select id from public.ai_tasks where incident_id = %s and kind = %s", (paged.incident["id"], kind))
        row = cur.fetchone()
    assert row is not None
    return int(row["id"])


class Recorder:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[int, str, datetime]] = []
        self.fail = fail

    def __call__(self, task: Mapping[str, Any], now: datetime) -> None:
        self.calls.append((int(task["id"]), str(task["reason"]), now))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database hiccup")


def test_a_resolved_incident_of_an_org_that_opted_in_gets_its_summary_and_embedding_tasks(
    db: psycopg.Connection[Any],
) -> None:
    # Given two incidents, one in an organization that opted in
    opted = project_with_incident(db, NOW, label="AiOptedIn")
    other = project_with_incident(db, NOW, label="AiOff")
    opt_in(db, opted.project.org_id)
    # When both are resolved by hand
    for paged in (opted, other):
        incidents.resolve(
            member(db, paged.project.org_id), paged.project.project_id, paged.incident["id"], ResolveIn(), NOW
        )
    # Then only the opted-in one has tasks: its summary and its embedding, due now, reason "resolved"
    mine = tasks_of(db, opted.incident["id"])
    assert set(mine) == {"summary", "embedding"}
    assert all(t["reason"] == "resolved" and t["due_at"] == NOW for t in mine.values())
    assert tasks_of(db, other.incident["id"]) == {}


def test_changes_to_an_incident_with_a_summary_are_debounced(db: psycopg.Connection[Any]) -> None:
    # Given an open incident of an org that opted in, with a summary already
    paged = project_with_incident(db, NOW, label="AiChanged")
    opt_in(db, paged.project.org_id)
    caller = member(db, paged.project.org_id)
    incidents.acknowledge(caller, paged.project.project_id, paged.incident["id"], NOW)
    assert tasks_of(db, paged.incident["id"]) == {}  # no summary yet: nothing to regenerate
    db.execute(
        "insert into public.incident_summaries (org_id, project_id, incident_id, status, reason,"
        " incident_updated_at, trigger) values (%s, %s, %s, 'unavailable', 'not_configured', %s, 'requested')",
        (paged.project.org_id, paged.project.project_id, paged.incident["id"], NOW),
    )
    # When a new alert joins the incident, then it is unacknowledged a minute later
    rule = arrange_rule(db, paged.project.org_id, paged.project.project_id)
    alert = arrange_alert(db, rule, at=NOW, n="2")
    flush(paged.group_id, firing=[alert], now=NOW + timedelta(seconds=10))
    first = tasks_of(db, paged.incident["id"])["summary"]
    assert first["reason"] == "changed" and first["due_at"] == NOW + timedelta(seconds=10 + tasks.CHANGED_DEBOUNCE_S)
    incidents.unacknowledge(caller, paged.project.project_id, paged.incident["id"], NOW + timedelta(seconds=60))
    # Then one summary task, moved to the debounce after the last change
    again = tasks_of(db, paged.incident["id"])
    assert set(again) == {"summary"}
    assert again["summary"]["id"] == first["id"]
    assert again["summary"]["due_at"] == NOW + timedelta(seconds=60 + tasks.CHANGED_DEBOUNCE_S)


def test_done_tasks_go_and_failing_ones_retry_with_backoff_then_are_dropped(db: psycopg.Connection[Any]) -> None:
    paged = project_with_incident(db, NOW, label="AiRetry")
    task_id = enqueue(paged, NOW)
    handler = Recorder(fail=worker.MAX_ATTEMPTS)
    now = NOW
    # When the handler raises every time
    for attempt in range(1, worker.MAX_ATTEMPTS):
        report = worker.run(lambda: now, ids=[task_id], handlers={"summary": handler})  # noqa: B023
        assert report.outcomes == {"retrying": 1}
        row = tasks_of(db, paged.incident["id"])["summary"]
        delay = worker.RETRY_DELAYS_S[attempt - 1]
        # Then it is retried after the schedule's delay, with the error kept, and not before
        assert (row["attempts"], row["due_at"], row["claimed_until"]) == (attempt, now + timedelta(seconds=delay), None)
        assert row["last_error"] == "RuntimeError: database hiccup"
        assert worker.run(lambda: now + timedelta(seconds=delay - 1), ids=[task_id], handlers={}).claimed == 0  # noqa: B023
        now = now + timedelta(seconds=delay)
    # And the last failure drops it
    assert worker.run(lambda: now, ids=[task_id], handlers={"summary": handler}).outcomes == {"dropped": 1}
    assert tasks_of(db, paged.incident["id"]) == {}
    assert len(handler.calls) == worker.MAX_ATTEMPTS


def test_a_task_enqueued_again_while_it_runs_is_kept_for_its_new_time(db: psycopg.Connection[Any]) -> None:
    paged = project_with_incident(db, NOW, label="AiFence")
    task_id = enqueue(paged, NOW, reason="resolved")

    def handler(task: Mapping[str, Any], now: datetime) -> None:
        # the incident changes while the summary is being written
        enqueue(paged, NOW + timedelta(seconds=5), reason="changed", delay_s=120)

    assert worker.run(lambda: NOW, ids=[task_id], handlers={"summary": handler}).outcomes == {"done": 1}
    row = tasks_of(db, paged.incident["id"])["summary"]
    assert (row["reason"], row["due_at"], row["attempts"]) == ("changed", NOW + timedelta(seconds=125), 0)
    # And once due it runs and goes
    recorder = Recorder()
    later = NOW + timedelta(seconds=125)
    assert worker.run(lambda: later, ids=[task_id], handlers={"summary": recorder}).outcomes == {"done": 1}
    assert recorder.calls == [(task_id, "changed", later)]
    assert tasks_of(db, paged.incident["id"]) == {}


def test_a_leased_task_is_not_claimed_twice_until_its_lease_expires(db: psycopg.Connection[Any]) -> None:
    paged = project_with_incident(db, NOW, label="AiLease")
    task_id = enqueue(paged, NOW)
    with transaction() as cur:
        (first,) = worker.claim(cur, ids=[task_id], limit=5, now=NOW)
    assert first["attempts"] == 1
    with transaction() as cur:
        assert worker.claim(cur, ids=[task_id], limit=5, now=NOW + timedelta(seconds=10)) == []
    # the worker died: after its lease the task is claimed again (resumable)
    with transaction() as cur:
        (again,) = worker.claim(cur, ids=[task_id], limit=5, now=NOW + timedelta(seconds=worker.LEASE_S))
    assert again["attempts"] == 2


def test_a_kind_without_a_handler_waits(db: psycopg.Connection[Any]) -> None:
    paged = project_with_incident(db, NOW, label="AiUnknown")
    task_id = enqueue(paged, NOW, kind="embedding")
    assert worker.run(lambda: NOW, ids=[task_id], handlers={}).outcomes == {"deferred": 1}
    row = tasks_of(db, paged.incident["id"])["embedding"]
    assert row["due_at"] == NOW + timedelta(seconds=worker.UNKNOWN_KIND_DELAY_S)
    assert row["last_error"] == "no handler for embedding"


def test_the_queue_handler_runs_the_named_tasks_and_fails_undecodable_records(db: psycopg.Connection[Any]) -> None:
    paged = project_with_incident(db, NOW, label="AiQueue")
    task_id = enqueue(paged, NOW, kind="summary")
    event = {
        "Records": [
            {"messageId": "m1", "body": tasks.message_body(task_id), "eventSource": "aws:sqs"},
            {"messageId": "m2", "body": json.dumps({"v": 1, "ai_task_id": "x"}), "eventSource": "aws:sqs"},
        ]
    }
    assert is_sqs_event(event) and not is_sqs_event({"source": "aws.scheduler"})
    result = worker.handle_queue_messages(event, None, clock=lambda: NOW)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    # the named task ran (its organization has not opted in: nothing to do) and is gone
    assert tasks_of(db, paged.incident["id"]) == {}


def test_message_parsing() -> None:
    assert tasks.parse_message(tasks.message_body(42)) == 42
    for bad in ("", "[]", '{"v": 2, "ai_task_id": 1}', '{"v": 1, "ai_task_id": true}', '{"v": 1}'):
        with pytest.raises(ValueError):
            tasks.parse_message(bad)


def test_a_wake_up_leaves_after_the_commit_and_never_for_a_rollback(
    db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers.moto_queue import queue_and_bucket

    paged = project_with_incident(db, NOW, label="AiWake")
    with queue_and_bucket(monkeypatch, "ai-tasks") as aws:
        monkeypatch.setenv("AI_TASK_QUEUE_URL", aws.queue_url)
        # Given a change that rolls back after enqueuing: no row, no message
        with pytest.raises(RuntimeError), transaction() as cur:
            tasks.enqueue(
                cur, org_id=paged.project.org_id, project_id=paged.project.project_id,
                incident_id=paged.incident["id"], kind="summary", reason="resolved", now=NOW,
            )  # fmt: skip
            raise RuntimeError("the change failed")
        assert tasks_of(db, paged.incident["id"]) == {} and aws.receive() == []
        # When one commits: one message naming the task, delayed as asked (the debounce)
        task_id = enqueue(paged, NOW, reason="changed", delay_s=0)
        (message,) = aws.receive()
        assert tasks.parse_message(message["Body"]) == task_id
        # And the queue's event runs it through the handler
        assert worker.handle_queue_messages(aws.event([message]), None, clock=lambda: NOW) == {"batchItemFailures": []}
        assert tasks_of(db, paged.incident["id"]) == {}  # the org has not opted in: nothing to do, done
