"""Grouping and its timers with an injected clock: group_wait, group_interval, repeat_interval, a resolution sent
once; a group that forms again; overlapping dispatchers and redelivered timer messages never notify twice (counted
in the notification log); the timers as SQS delay messages under moto; the route tree's first match and continue."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.alerts.dispatch import flush_group, flush_in, sweep
from observai.alerts.routing import route_transitions
from observai_local.lambda_context import LambdaContext

from tests.helpers.alert_rows import AlertBoard, new_board
from tests.helpers.inprocess import load_function
from tests.helpers.moto_queue import QueueAndBucket, queue_and_bucket

pytestmark = pytest.mark.integration

T0 = datetime(2031, 3, 3, 10, 0, tzinfo=UTC)  # a Monday


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def board(db: psycopg.Connection) -> AlertBoard:
    return new_board(db, "Grouping")


def reasons(board: AlertBoard) -> list[str]:
    return [row["reason"] for row in board.log()]


def names(entries: list[dict[str, Any]]) -> list[str]:
    return sorted(e["labels"].get("service", "") for e in entries)


def test_group_wait_then_group_interval_then_repeat_then_resolved_once(board: AlertBoard) -> None:
    # Given an alert firing at T0, routed at once (default policy: group_by alertname, 30s / 5m / 4h)
    a = board.fire(at(0), service="api")
    route_transitions(at(0))
    group = board.group(alertname="HighLatency")
    assert group["next_flush_at"] == at(30) and group["status"] == "active"

    # When the dispatcher comes before group_wait has passed, Then nothing is sent
    assert flush_group(group["id"], at(29)).outcome == "not_due"
    assert board.log() == []

    # When group_wait has passed, Then the first notification names the alert, with an incident
    first = flush_group(group["id"], at(30))
    assert (first.outcome, first.reason, first.seq) == ("notified", "first", 1)
    (entry,) = board.log()
    assert names(entry["firing"]) == ["api"] and entry["resolved"] == []
    assert entry["incident_id"] is not None and entry["receivers"]["route_id"] == "0"
    assert first.next_flush_at == at(30 + 4 * 3600)  # the repeat

    # When a second alert joins 10 s later, Then it waits for the group_interval tick (last flush + 5 min)
    b = board.fire(at(40), service="web")
    route_transitions(at(40))
    assert board.group(alertname="HighLatency")["next_flush_at"] == at(330)
    assert flush_group(group["id"], at(329)).outcome == "not_due"
    changed = flush_group(group["id"], at(330))
    assert (changed.reason, changed.seq) == ("changed", 2)
    assert names(board.log()[-1]["firing"]) == ["api", "web"]

    # When nothing changes, Then nothing is sent until repeat_interval, and then the same alerts again
    sweep(at(330 + 3600))
    assert reasons(board) == ["first", "changed"]
    assert flush_group(group["id"], at(330 + 4 * 3600 - 1)).outcome == "not_due"
    repeat = flush_group(group["id"], at(330 + 4 * 3600))
    assert repeat.reason == "repeat" and names(board.log()[-1]["firing"]) == ["api", "web"]

    # When both resolve, Then one resolved notification names both, and the group and its incident are resolved
    t1 = 330 + 4 * 3600 + 60
    board.resolve(a, at(t1))
    board.resolve(b, at(t1))
    route_transitions(at(t1))
    # the change waits for the group_interval tick after the repeat
    assert board.group(alertname="HighLatency")["next_flush_at"] == at(330 + 4 * 3600 + 300)
    resolved = flush_group(group["id"], at(330 + 4 * 3600 + 300))
    assert resolved.reason == "resolved" and resolved.next_flush_at is None
    last = board.log()[-1]
    assert last["firing"] == [] and names(last["resolved"]) == ["api", "web"]
    assert board.group(alertname="HighLatency")["status"] == "resolved"
    incident = board.db.execute("select status from public.incidents where id = %s", (last["incident_id"],))
    assert incident.fetchone()["status"] == "resolved"

    # And nothing more is ever sent for it: later sweeps, a late timer
    sweep(at(t1 + 86400))
    assert flush_group(group["id"], at(t1 + 86400)).outcome == "not_due"
    assert reasons(board) == ["first", "changed", "repeat", "resolved"]
    # And the incident's timeline has one notification event per log row
    events = board.db.execute(
        "select details from public.incident_events where incident_id = %s and kind = 'notification' order by id",
        (last["incident_id"],),
    ).fetchall()
    assert [e["details"]["reason"] for e in events] == ["first", "changed", "repeat", "resolved"]
    assert events[0]["details"]["firing"] == 1 and events[-1]["details"]["resolved"] == 2


def test_an_alert_resolved_within_group_wait_is_never_notified(board: AlertBoard) -> None:
    # Given an alert that fires and resolves before the group's first flush
    a = board.fire(at(0), service="api")
    route_transitions(at(0))
    board.resolve(a, at(10))
    route_transitions(at(10))

    # When the group flushes at group_wait
    result = flush_group(board.group()["id"], at(30))

    # Then nothing was sent, and the group is resolved
    assert result.outcome == "nothing_new" and board.log() == []
    assert board.group()["status"] == "resolved"


def test_a_group_that_resolved_forms_again_with_group_wait_and_a_new_incident(board: AlertBoard) -> None:
    # Given a group notified and resolved
    a = board.fire(at(0), service="api")
    route_transitions(at(0))
    flush_group(board.group()["id"], at(30))
    board.resolve(a, at(100))
    route_transitions(at(100))
    sweep(at(330))
    assert reasons(board) == ["first", "resolved"]

    # When the alert fires again
    board.fire(at(1000), service="api")
    route_transitions(at(1000))

    # Then the group waits group_wait again, and its notification is a first one with a new incident
    group = board.group()
    assert group["status"] == "active" and group["next_flush_at"] == at(1030)
    assert flush_group(group["id"], at(1030)).reason == "first"
    log = board.log()
    assert reasons(board) == ["first", "resolved", "first"] and [r["seq"] for r in log] == [1, 2, 3]
    assert log[2]["incident_id"] != log[0]["incident_id"]


def test_send_resolved_false_sends_no_resolution_but_the_incident_resolves(board: AlertBoard) -> None:
    # Given a policy that does not announce resolutions, and a notified alert
    board.put_policy({"send_resolved": False})
    a = board.fire(at(0), service="api")
    route_transitions(at(0))
    flush_group(board.group()["id"], at(30))

    # When it resolves and the group flushes
    board.resolve(a, at(60))
    route_transitions(at(60))
    sweep(at(330))

    # Then no resolved notification, the group is resolved, and so is the incident
    (entry,) = board.log()
    assert entry["reason"] == "first" and board.group()["status"] == "resolved"
    status = board.db.execute("select status from public.incidents where id = %s", (entry["incident_id"],))
    assert status.fetchone()["status"] == "resolved"


def test_route_tree_first_match_continue_and_inheritance(board: AlertBoard) -> None:
    # Given routes: db alerts (continue) → the db team, then api alerts → the web team with its own group_wait,
    # then a catch-all for critical ones; the root groups by alertname
    board.put_policy(
        {
            "route": {
                "receivers": {"contact_points": ["default-email"]},
                "routes": [
                    {
                        "name": "db",
                        "matchers": ['service=~"db|db-replica"'],
                        "receivers": {"contact_points": ["db-pager"]},
                        "group_by": ["service"],
                        "continue": True,
                    },
                    {"name": "web", "matchers": ['team="web"'], "group_wait": "10s"},
                    {"name": "critical", "matchers": ['severity="critical"'], "group_wait": "0s"},
                ],
            }
        }
    )
    board.fire(at(0), service="db", team="web")  # db, and (continue) web
    board.fire(at(0), service="db-replica-2", team="ops")  # the regex is anchored: no db route; root
    board.fire(at(0), "Down", service="api", team="ops", severity="critical")  # critical
    board.fire(at(0), "Down", service="api", team="web", severity="critical")  # web first: no continue
    route_transitions(at(0))

    by_route: dict[str, list[dict[str, Any]]] = {}
    for group in board.groups():
        by_route.setdefault(group["route_id"], []).append(group)
    assert sorted(by_route) == ["0", "critical", "db", "web"]
    assert [g["group_labels"] for g in by_route["db"]] == [{"service": "db"}]
    assert sorted(g["group_labels"]["alertname"] for g in by_route["web"]) == ["Down", "HighLatency"]
    assert [g["next_flush_at"] for g in by_route["web"]] == [at(10), at(10)]  # its own group_wait
    assert [g["next_flush_at"] for g in by_route["critical"]] == [at(0)]
    assert [g["next_flush_at"] for g in by_route["0"]] == [at(30)]  # the root's default

    # When all flush, Then each notification names its route's receivers (inherited when unset)
    sweep(at(30))
    receivers = {row["route_id"]: row["receivers"]["contact_points"] for row in board.log()}
    assert receivers == {
        "db": ["db-pager"],
        "web": ["default-email"],
        "critical": ["default-email"],
        "0": ["default-email"],
    }


# --- never twice ------------------------------------------------------------------------------------------------


def test_two_dispatchers_flushing_the_same_group_at_once_notify_once(board: AlertBoard, database_url: str) -> None:
    # Given a group due
    board.fire(at(0), service="api")
    route_transitions(at(0))
    group_id = board.group()["id"]
    outcomes: dict[str, str] = {}
    second_pid: list[int] = []

    def second() -> None:
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
            second_pid.append(conn.info.backend_pid)
            outcomes["second"] = flush_in(conn.cursor(), group_id, at(30)).outcome

    # When two dispatchers (two connections, as two Lambda containers) flush it together: the first holds the
    # group's row (flushed, not committed) while the second asks for it
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        with conn.transaction():
            outcomes["first"] = flush_in(conn.cursor(), group_id, at(30)).outcome
            waiter = threading.Thread(target=second)
            waiter.start()
            _wait_until_blocked_on_a_lock(board.db, second_pid)
        # the first commits: the second goes on
        waiter.join(timeout=60)

    # Then one notified, the other waited, then found the timer moved on
    assert outcomes == {"first": "notified", "second": "not_due"}
    assert len(board.log()) == 1


def _wait_until_blocked_on_a_lock(db: psycopg.Connection, pid_holder: list[int]) -> None:
    """Poll pg_stat_activity (no fixed sleep) until the other connection waits for a lock."""
    for _ in range(10_000):
        if pid_holder:
            row = db.execute("select wait_event_type from pg_stat_activity where pid = %s", (pid_holder[0],)).fetchone()
            if row is not None and row["wait_event_type"] == "Lock":
                return
        threading.Event().wait(0.005)
    raise AssertionError("the second dispatcher never waited for the group's lock")


def test_a_sweep_skips_a_group_another_dispatcher_holds(board: AlertBoard, database_url: str) -> None:
    # Given a due group whose row another dispatcher holds
    board.fire(at(0), service="api")
    route_transitions(at(0))
    group_id = board.group()["id"]
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
        conn.execute("select 1 from public.notification_groups where id = %s for update", (group_id,))
        # When the sweep comes by, Then it skips it at once instead of waiting
        assert flush_group(group_id, at(30), skip_locked=True).outcome == "locked"
    # And once free, it flushes once
    assert flush_group(group_id, at(30), skip_locked=True).outcome == "notified"
    assert flush_group(group_id, at(30), skip_locked=True).outcome == "not_due"
    assert len(board.log()) == 1


# --- the timer queue (SQS under moto) ---------------------------------------------------------------------------


@pytest.fixture
def timer_queue(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[QueueAndBucket]:
    with queue_and_bucket(monkeypatch, "observai-test-alert-timers") as aws:
        monkeypatch.setenv("ALERT_TIMER_QUEUE_URL", aws.queue_url)
        yield aws


def invoke_dispatcher(event: dict[str, Any]) -> Any:
    module = load_function("dispatch_notifications")
    return module.lambda_handler(event, LambdaContext("observai-test-dispatch", memory_limit_in_mb=512, timeout_s=60))


def queued(aws: QueueAndBucket) -> list[dict[str, Any]]:
    """Every message of the queue, delayed ones included (moto keeps the delay: read its attributes)."""
    return [json.loads(m["Body"]) for m in aws.receive(max_messages=50)]


def test_routing_and_flushes_send_their_timers_as_sqs_delay_messages(
    board: AlertBoard, timer_queue: QueueAndBucket
) -> None:
    # Given a policy with a short group_wait and a long one past SQS's 15 minutes
    board.put_policy(
        {"route": {"group_wait": "0s", "routes": [{"matchers": ['service="batch"'], "group_wait": "20m"}]}}
    )
    now = datetime.now(UTC).replace(microsecond=0)  # moto delays by the wall clock
    board.fire(now, service="api")
    board.fire(now, "Slow", service="batch")

    # When the transitions are routed
    report = route_transitions(now)

    # Then the timer due now went to the queue at once; the one 20 minutes away is left to the sweep
    assert report.groups == 2 and report.timers_sent == 1
    (message,) = queued(timer_queue)
    api_group = board.group(alertname="HighLatency")
    assert message == {"v": 1, "group_id": str(api_group["id"]), "due_at": now.isoformat()}

    # When the queue delivers it to the dispatcher (the SQS event source)
    messages = timer_queue.receive()
    assert messages == []  # received above already: deliver that message as the event source would
    event = timer_queue.event(
        [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": json.dumps(message), "Attributes": {}}]
    )
    response = invoke_dispatcher(event)

    # Then the group notified, no item failed, and its next timer (the 4 h repeat) is left to the sweep
    assert response == {"batchItemFailures": []}
    assert reasons(board) == ["first"]

    # When the same message is delivered again (SQS is at-least-once), Then it is a no-op
    assert invoke_dispatcher(event) == {"batchItemFailures": []}
    assert reasons(board) == ["first"]


def test_a_flush_sends_the_next_timer_and_a_bad_message_is_a_batch_item_failure(
    board: AlertBoard, timer_queue: QueueAndBucket
) -> None:
    # Given a group with a 2 minute repeat... (repeat_interval ≥ 1 minute), flushed now
    board.put_policy({"route": {"group_wait": "0s", "group_interval": "1m", "repeat_interval": "2m"}})
    now = datetime.now(UTC).replace(microsecond=0)
    board.fire(now, service="api")
    route_transitions(now)
    queued(timer_queue)  # the routing timer
    result = flush_group(board.group()["id"], now)

    # Then its next timer (the repeat, 120 s) is a delay message
    assert result.reason == "first" and result.next_flush_at == now + timedelta(minutes=2)
    attrs = timer_queue.sqs.get_queue_attributes(
        QueueUrl=timer_queue.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"

    # When a message that is not a timer arrives, Then only it is reported failed
    good = {"MessageId": "ok", "ReceiptHandle": "r", "Body": json.dumps({"v": 1, "group_id": str(result.group_id)})}
    bad = {"MessageId": "bad", "ReceiptHandle": "r", "Body": "not json"}
    response = invoke_dispatcher(timer_queue.event([good, bad]))
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert reasons(board) == ["first"]  # the good one was early: a no-op


def test_the_scheduled_sweep_routes_and_flushes(board: AlertBoard) -> None:
    # Given an alert firing long enough ago that its group_wait has passed
    now = datetime.now(UTC)
    board.fire(now - timedelta(minutes=2), service="api")

    # When the minute schedule runs the dispatcher (twice: routing, then the flush of a due group)
    summary = invoke_dispatcher({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}})

    # Then the transition was routed; its group's first flush is due 30 s after the routing (the sweep's now)
    assert summary["routed"] >= 1
    group = board.group()
    assert group["next_flush_at"] is not None
    sweep(group["next_flush_at"])
    assert reasons(board) == ["first"]


def test_transitions_of_a_deleted_rule_are_marked_routed_without_a_group(board: AlertBoard) -> None:
    # Given a firing transition whose rule (and so instance) was deleted before routing
    board.fire(at(0), "Gone", service="api")
    board.db.execute("delete from public.alert_rules where id = %s", (board.rules["Gone"],))

    # When the router runs
    route_transitions(at(0))

    # Then the transition is routed (never claimed again), and no group formed for it
    (row,) = board.db.execute(
        "select routed_at from public.alert_transitions where project_id = %s", (board.project_id,)
    ).fetchall()
    assert row["routed_at"] == at(0) and board.groups() == []


def test_an_unreadable_stored_policy_routes_with_the_default(board: AlertBoard) -> None:
    # Given a stored policy the code cannot read (a field of a future version)
    board.put_policy({"route": {"group_wait": "not a duration"}})
    board.fire(at(0), service="api")

    # When routed, Then the alert is grouped by the default policy (group_wait 30 s), not stuck
    report = route_transitions(at(0))
    assert report.groups >= 1
    assert board.group()["next_flush_at"] == at(30) and board.group()["route_id"] == "0"


def test_a_timer_message_whose_flush_fails_is_reported_for_redelivery(
    board: AlertBoard, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from observai.db import close_connection

    # Given a due group, and the database unreachable when its timer arrives
    board.fire(at(0), service="api")
    route_transitions(at(0))
    group_id = board.group()["id"]
    body = json.dumps({"v": 1, "group_id": str(group_id), "due_at": at(30).isoformat()})
    event = {
        "Records": [
            {"messageId": "m1", "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {},
             "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:timers",
             "awsRegion": "us-east-1", "md5OfBody": ""}
        ]
    }  # fmt: skip
    close_connection()
    monkeypatch.setenv("DATABASE_URL", "postgresql://observai@127.0.0.1:1/none")
    try:
        # When the dispatcher gets the message, Then it reports it failed (SQS delivers it again)
        assert invoke_dispatcher(event) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    finally:
        close_connection()
        monkeypatch.setenv("DATABASE_URL", database_url)
    # And nothing was recorded; the group is still due and flushes once the database is back
    assert board.log() == []
    assert flush_group(group_id, at(30)).outcome == "notified"
