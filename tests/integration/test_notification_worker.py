"""The notification delivery worker's records on the real database, with channel results constructed by the test
(the channels themselves are exercised against real receivers in test_notification_delivery.py): claim, the retry
schedule, the attempt fence and lease take-over, no second send, send slots, the sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.config import get_settings
from observai.db.connection import transaction
from observai.notify import deliveries
from observai.notify import deliveries_store as store
from observai.notify.message import SendResult

from tests.helpers.notifications import Paged, delivery, enqueue_email, project_with_incident, timeline_kinds

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def paged(db: psycopg.Connection[Any]) -> Paged:
    # Earlier tests' due deliveries must not be claimed by the sweeps here.
    db.execute(
        "update public.notification_deliveries set status = 'skipped', next_attempt_at = null"
        " where next_attempt_at is not null"
    )
    return project_with_incident(db, NOW)


def attempt(delivery_id: Any, now: datetime, result: SendResult) -> deliveries.Outcome:
    """One claim and one record of the delivery, with ``result`` as the channel's answer."""
    batch = deliveries.prepare(ids=[delivery_id], limit=1, now=now, settings=get_settings())
    if not batch.ready:
        return batch.outcomes.get(delivery_id, deliveries.Outcome(delivery_id, "not_due"))
    (claimed,) = batch.ready
    assert claimed.config == {"addresses": ["oncall@example.test"]}
    return deliveries.record(batch.ready, [result], now)[delivery_id]


def test_two_failures_then_a_success_follow_the_schedule(db: psycopg.Connection[Any], paged: Paged) -> None:
    # Given an e-mail delivery due now
    did = enqueue_email(paged, NOW)
    assert did is not None
    # When the receiver fails twice (503, then a timeout) and then takes it
    first = attempt(did, NOW, SendResult(ok=False, status_code=503, retryable=True, response_excerpt="busy"))
    assert first.outcome == "retrying" and first.next_attempt_at == NOW + timedelta(seconds=10)
    assert attempt(did, NOW + timedelta(seconds=5), SendResult(ok=True)).outcome == "not_due"  # not yet
    second = attempt(did, first.next_attempt_at, SendResult(ok=False, retryable=True, error="timed out"))
    assert second.outcome == "retrying" and second.next_attempt_at == first.next_attempt_at + timedelta(seconds=30)
    third = attempt(did, second.next_attempt_at, SendResult(ok=True, status_code=200))
    # Then it is sent once, after 3 attempts
    assert third.outcome == "sent"
    row = delivery(db, did)
    assert (row["status"], row["attempts"], row["response_code"], row["sent_at"]) == (
        "sent",
        3,
        200,
        second.next_attempt_at,
    )
    assert row["next_attempt_at"] is None and row["lease_until"] is None
    # And another wake-up is a no-op
    assert attempt(did, NOW + timedelta(hours=1), SendResult(ok=True)).outcome == "not_due"
    assert delivery(db, did)["attempts"] == 3
    # And the incident's timeline says it was sent (channel, person, event, status, attempts)
    sent = [d for k, d in timeline_kinds(db, paged.incident["id"]) if k == "notification_sent"]
    assert len(sent) == 1
    assert sent[0]["channel"] == "email" and sent[0]["attempts"] == 3 and sent[0]["status_code"] == 200
    assert sent[0]["event"] == "trigger" and sent[0]["user_id"] == str(row["user_id"])


def test_retry_after_is_honoured_and_the_sixth_failure_is_final(db: psycopg.Connection[Any], paged: Paged) -> None:
    did = enqueue_email(paged, NOW)
    # Given a receiver asking to wait 90 s: the retry waits 90 s, not 10
    out = attempt(did, NOW, SendResult(ok=False, status_code=429, retryable=True, retry_after_s=90))
    assert out.next_attempt_at == NOW + timedelta(seconds=90)
    # When it keeps failing
    at = out.next_attempt_at
    outcomes = []
    for _ in range(5):
        o = attempt(did, at, SendResult(ok=False, status_code=500, retryable=True))
        outcomes.append(o.outcome)
        at = o.next_attempt_at or at
    # Then the 6th attempt is the last: failed, with the reason, on the timeline
    assert outcomes == ["retrying"] * 4 + ["failed"]
    row = delivery(db, did)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("failed", 6, None)
    assert row["error"] == "HTTP 500 (after 6 attempts)"
    failed = [d for k, d in timeline_kinds(db, paged.incident["id"]) if k == "notification_failed"]
    assert [(d["attempts"], d["status_code"]) for d in failed] == [(6, 500)]


def test_a_non_retryable_answer_fails_at_once(db: psycopg.Connection[Any], paged: Paged) -> None:
    did = enqueue_email(paged, NOW)
    out = attempt(did, NOW, SendResult(ok=False, status_code=400, retryable=False, error="invalid event"))
    assert out.outcome == "failed"
    row = delivery(db, did)
    assert (row["status"], row["attempts"], row["error"], row["response_code"]) == ("failed", 1, "invalid event", 400)


def test_an_expired_lease_is_taken_over_and_the_old_worker_changes_nothing(
    db: psycopg.Connection[Any], paged: Paged
) -> None:
    settings = get_settings()
    did = enqueue_email(paged, NOW)
    # Given a worker that claimed the delivery and stalls
    slow = deliveries.prepare(ids=[did], limit=1, now=NOW, settings=settings)
    assert [c.id for c in slow.ready] == [did]
    lease = delivery(db, did)["lease_until"]
    assert lease == NOW + timedelta(seconds=settings.notify_timeout_s + deliveries.LEASE_MARGIN_S)
    # When another worker comes while the lease holds: nothing to claim
    assert deliveries.prepare(ids=[did], limit=1, now=lease - timedelta(seconds=1), settings=settings).ready == []
    # When the lease has expired: another worker takes it over (attempt 2)
    taker = deliveries.prepare(ids=[did], limit=1, now=lease + timedelta(seconds=1), settings=settings)
    assert [c.attempt for c in taker.ready] == [2]
    # Then the stalled worker's late record is superseded: it changes nothing
    late = deliveries.record(slow.ready, [SendResult(ok=True, status_code=200)], lease)
    assert late[did].outcome == "superseded"
    assert (delivery(db, did)["status"], delivery(db, did)["attempts"]) == ("sending", 2)
    # and the new worker's record holds
    done = deliveries.record(taker.ready, [SendResult(ok=True, status_code=200)], lease + timedelta(seconds=2))
    assert done[did].outcome == "sent"
    assert (delivery(db, did)["status"], delivery(db, did)["attempts"]) == ("sent", 2)
    assert [k for k, _ in timeline_kinds(db, paged.incident["id"])].count("notification_sent") == 1


def test_a_duplicate_enqueue_records_once(db: psycopg.Connection[Any], paged: Paged) -> None:
    key = f"dup:{paged.incident['id']}"
    first = enqueue_email(paged, NOW, key=key)
    second = enqueue_email(paged, NOW, key=key)
    assert first is not None and second is None
    count = db.execute("select count(*) as n from public.notification_deliveries where idempotency_key = %s", (key,))
    assert count.fetchone() == {"n": 1}


def test_send_slots_allow_the_limit_per_window(database_url: str) -> None:
    key = f"slack:test-{NOW.timestamp()}"
    window = NOW
    with transaction() as cur:
        # Given a limit of 1 a second: 3 wanted in one window get 1
        assert store.take_slots(cur, [store.SlotRequest(key, 3, 1, window)]) == {key: 1}
        # then none more in the same window
        assert store.take_slots(cur, [store.SlotRequest(key, 1, 1, window)]) == {key: 0}
        # the next window starts again
        nxt = window + timedelta(seconds=1)
        assert store.take_slots(cur, [store.SlotRequest(key, 2, 1, nxt)]) == {key: 1}
        # a worker with a clock behind gets nothing rather than reopening an old window
        assert store.take_slots(cur, [store.SlotRequest(key, 1, 1, window)]) == {key: 0}
        # 120 a minute: two batches of 100 get 100, then 20
        pd = f"pagerduty:test-{NOW.timestamp()}"
        assert store.take_slots(cur, [store.SlotRequest(pd, 100, 120, window)]) == {pd: 100}
        assert store.take_slots(cur, [store.SlotRequest(pd, 100, 120, window), store.SlotRequest(key, 1, 1, nxt)]) == {
            pd: 20,
            key: 0,
        }


def test_retry_delays() -> None:
    assert [deliveries.retry_delay_s(n) for n in range(1, 7)] == [10, 30, 120, 300, 900, None]
    assert deliveries.retry_delay_s(1, 45) == 45
    assert deliveries.retry_delay_s(1, 86400) == deliveries.MAX_RETRY_AFTER_S


def test_errors_are_scrubbed_of_the_channel_secret() -> None:
    config = {"url": "https://hooks.slack.com/services/T1/B2/abcdef123456"}
    text = "connection to https://hooks.slack.com/services/T1/B2/abcdef123456 refused"
    assert deliveries.scrub(text, config) == "connection to [secret] refused"
    assert deliveries.scrub("x" * 5000, config) == "x" * deliveries.ERROR_MAX
    key = deliveries.limit_key("slack", config)
    assert key is not None and key.startswith("slack:") and "abcdef" not in key
    assert deliveries.limit_key("email", {"addresses": ["a@b.c"]}) is None


def test_the_sweep_fails_a_delivery_whose_last_attempt_was_never_recorded(
    db: psycopg.Connection[Any], paged: Paged
) -> None:
    did = enqueue_email(paged, NOW)
    # Given a delivery at its 6th attempt whose worker stopped (the lease expired)
    db.execute(
        "update public.notification_deliveries set status = 'sending', attempts = 6, lease_until = %s,"
        " next_attempt_at = %s where id = %s",
        (NOW, NOW, did),
    )
    # When the sweep runs: Then it is failed, not tried a 7th time
    report = deliveries.sweep(lambda: NOW + timedelta(seconds=1))
    assert report.abandoned >= 1 and report.claimed == 0
    row = delivery(db, did)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("failed", 6, None)
