"""The escalation engine against the real database with an injected clock (observai.escalation.engine): a run
starts when a route naming a policy notifies about a triggered incident, pages its steps (the delivery records are
the contract with the delivery worker), halts on acknowledgement, re-triggers at the ack timeout, resumes on
unacknowledge, stops and sends resolved on resolution; repeat rounds; stale, early and duplicate timers; overlapping
sweeps; a deleted policy; an unknown policy name; the SQS timer messages (moto)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.auth.principal import Principal
from observai.db.connection import transaction
from observai.escalation import engine, policies
from observai.escalation.models import EscalationPolicyIn
from observai.incidents import service
from observai.notify import hooks
from psycopg.types.json import Jsonb

from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush
from tests.helpers.ingest import IngestProject, make_project
from tests.helpers.moto_queue import queue_and_bucket
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration

T0 = datetime(2031, 5, 6, 2, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@dataclass
class World:
    project: IngestProject
    owner: User
    alice: User  # e-mail only
    bob: User  # e-mail and Slack (his Slack contact point, member id U0BOB)
    pagerduty: UUID  # a PagerDuty contact point of the project
    slack: UUID  # the Slack contact point bob is reached through

    @property
    def principal(self) -> Principal:
        return Principal(kind="user", user_id=self.owner.id, email=self.owner.email)


def insert_contact_point(db: psycopg.Connection[Any], project: IngestProject, name: str, kind: str) -> UUID:
    row = db.execute(
        "insert into public.contact_points (org_id, project_id, name, kind, settings) values (%s, %s, %s, %s, %s)"
        " returning id",
        (project.org_id, project.project_id, name, kind, Jsonb({})),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


@pytest.fixture(scope="module")
def world(database_url: str) -> World:
    project = make_project(("read",), label="Escalation")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner, alice, bob = make_user(db), make_user(db), make_user(db)
        add_membership(db, project.org_id, owner.id, "owner")
        add_membership(db, project.org_id, alice.id, "member")
        add_membership(db, project.org_id, bob.id, "member")
        pagerduty = insert_contact_point(db, project, "pd-main", "pagerduty")
        slack = insert_contact_point(db, project, "team-slack", "slack")
        db.execute(
            "insert into public.member_notification_settings (org_id, user_id, slack_user_id, slack_contact_point_id)"
            " values (%s, %s, 'U0BOB', %s)",
            (project.org_id, bob.id, slack),
        )
    return World(project, owner, alice, bob, pagerduty, slack)


def make_policy(world: World, *, steps: list[dict[str, Any]], repeat: int = 0, ack_timeout: int | None = None) -> str:
    name = f"esc-{uuid.uuid4().hex[:8]}"
    body = EscalationPolicyIn.model_validate(
        {"name": name, "steps": steps, "repeat": repeat, "ack_timeout_minutes": ack_timeout}
    )
    policies.create_policy(world.principal, world.project.project_id, body)
    return name


def standard_policy(world: World, **kwargs: Any) -> str:
    """Step 0: the PagerDuty contact point, then 5 minutes; step 1: alice and bob, then 10 minutes."""
    return make_policy(
        world,
        steps=[
            {"wait_minutes": 5, "targets": [{"type": "contact_point", "id": str(world.pagerduty)}]},
            {
                "wait_minutes": 10,
                "targets": [{"type": "user", "id": str(world.alice.id)}, {"type": "user", "id": str(world.bob.id)}],
            },
        ],
        **kwargs,
    )


def open_incident(db: psycopg.Connection[Any], world: World, now: datetime) -> dict[str, Any]:
    rule = arrange_rule(db, world.project.org_id, world.project.project_id, severity="critical")
    alert = arrange_alert(db, rule, at=now, summary="checkout is down")
    group_id = arrange_group(db, world.project.org_id, world.project.project_id, alertname=rule.name)
    return dict(flush(group_id, firing=[alert], now=now))


def notify_route(incident: dict[str, Any], policy: str | None, now: datetime, log_id: int = 1) -> None:
    """What the dispatcher does after writing a notification_log entry for a route (its transaction)."""
    with transaction() as cur:
        hooks.on_route_notification(
            cur,
            log={"id": log_id, "org_id": incident["org_id"], "project_id": incident["project_id"], "reason": "first"},
            receivers={"route_id": "0", "contact_points": [], "escalation_policy": policy},
            incident=incident,
            firing=[],
            resolved=[],
            now=now,
        )


def start(db: psycopg.Connection[Any], world: World, policy: str, now: datetime = T0) -> dict[str, Any]:
    incident = open_incident(db, world, now)
    notify_route(incident, policy, now)
    return incident


def deliveries(db: psycopg.Connection[Any], incident_id: UUID) -> list[dict[str, Any]]:
    return db.execute(
        "select channel, event, source, escalation_step, contact_point_id, user_id, payload, idempotency_key,"
        " created_at from public.notification_deliveries where incident_id = %s order by created_at, idempotency_key",
        (incident_id,),
    ).fetchall()


def summary(rows: list[dict[str, Any]], users: dict[UUID, str], points: dict[UUID, str]) -> list[tuple[Any, ...]]:
    """(event, channel, recipient, step) per delivery, recipients by name."""
    out = []
    for row in rows:
        who = users[row["user_id"]] if row["user_id"] else points[row["contact_point_id"]]
        out.append((row["event"], row["channel"], who, row["escalation_step"]))
    return out


def names(world: World) -> tuple[dict[UUID, str], dict[UUID, str]]:
    return {world.alice.id: "alice", world.bob.id: "bob"}, {world.pagerduty: "pd", world.slack: "slack"}


def run_of(db: psycopg.Connection[Any], incident_id: UUID) -> dict[str, Any] | None:
    return db.execute(
        "select status, step, round, seq, next_at, policy from public.incident_escalations where incident_id = %s",
        (incident_id,),
    ).fetchone()


def timeline(db: psycopg.Connection[Any], incident_id: UUID) -> list[dict[str, Any]]:
    return db.execute(
        "select kind, at, details from public.incident_events where incident_id = %s order by id", (incident_id,)
    ).fetchall()


def tick(incident_id: UUID, now: datetime, seq: int | None = None) -> str:
    return engine.tick(incident_id, now, seq=seq, skip_locked=seq is None)


# --- the run -------------------------------------------------------------------------------------------------------


def test_trigger_pages_step_0_then_step_1_after_its_wait(db: psycopg.Connection[Any], world: World) -> None:
    # Given a policy: the PagerDuty contact point, 5 minutes, then alice and bob
    policy = standard_policy(world)
    users, points = names(world)

    # When a route naming it notifies about a new triggered incident
    incident = start(db, world, policy)

    # Then step 0 pages at once: one trigger delivery to the PagerDuty contact point
    rows = deliveries(db, incident["id"])
    assert summary(rows, users, points) == [("trigger", "pagerduty", "pd", 0)]
    assert rows[0]["source"] == "escalation"
    assert rows[0]["idempotency_key"] == f"esc:{incident['id']}:1:0:cp:{world.pagerduty}:pagerduty"
    assert rows[0]["payload"] == {"policy": policy, "step": 0, "round": 0, "reason": "triggered"}
    # And the run waits 5 minutes for step 1, with a copy of the policy
    run = run_of(db, incident["id"])
    assert run is not None
    assert (run["status"], run["step"], run["round"], run["seq"], run["next_at"]) == ("active", 0, 0, 1, T0 + 5 * MIN)
    assert run["policy"]["name"] == policy and len(run["policy"]["steps"]) == 2
    # And the timeline says who was paged
    escalated = [e for e in timeline(db, incident["id"]) if e["kind"] == "escalated"]
    assert len(escalated) == 1
    assert escalated[0]["details"]["paged"] == [
        {"type": "contact_point", "id": str(world.pagerduty), "name": "pd-main", "channels": ["pagerduty"]}
    ]
    assert escalated[0]["details"]["unreached"] == []

    # When a minute passes: nothing moves (not due)
    assert tick(incident["id"], T0 + 4 * MIN) == "early"
    assert len(deliveries(db, incident["id"])) == 1

    # When 5 minutes have passed: step 1 pages alice (e-mail) and bob (e-mail and Slack mentioning him)
    assert tick(incident["id"], T0 + 5 * MIN) == "escalated"
    rows = deliveries(db, incident["id"])
    assert sorted(summary(rows, users, points)[1:]) == [
        ("trigger", "email", "alice", 1),
        ("trigger", "email", "bob", 1),
        ("trigger", "slack", "bob", 1),
    ]
    by_key = {(r["channel"], r["user_id"]): r for r in rows[1:]}
    assert by_key[("email", world.alice.id)]["payload"]["to"] == world.alice.email
    assert by_key[("email", world.bob.id)]["payload"]["to"] == world.bob.email
    assert by_key[("slack", world.bob.id)]["payload"]["mention"] == "U0BOB"
    assert by_key[("slack", world.bob.id)]["contact_point_id"] == world.slack
    assert by_key[("slack", world.bob.id)]["idempotency_key"] == f"esc:{incident['id']}:2:1:user:{world.bob.id}:slack"
    # And, the last step of the only round having paged, the run is done: nobody is paged again
    run = run_of(db, incident["id"])
    assert run is not None
    assert (run["status"], run["step"], run["seq"], run["next_at"]) == ("done", 1, 2, None)
    engine.sweep(T0 + 60 * MIN)
    assert len(deliveries(db, incident["id"])) == 4


def test_acknowledge_halts_ack_timeout_retriggers_and_resolve_sends_resolved(
    db: psycopg.Connection[Any], world: World
) -> None:
    # Given a run at step 1 (alice and bob paged) of a policy repeated once, with a 30-minute ack timeout
    policy = standard_policy(world, ack_timeout=30, repeat=1)
    users, points = names(world)
    incident = start(db, world, policy)
    assert tick(incident["id"], T0 + 5 * MIN) == "escalated"
    pages = len(deliveries(db, incident["id"]))

    # When someone acknowledges at T0+6
    service.acknowledge(world.principal, world.project.project_id, incident["id"], now=T0 + 6 * MIN)

    # Then the run halts with the ack timeout as its next time, and PagerDuty (paged) gets acknowledge
    run = run_of(db, incident["id"])
    assert run is not None and (run["status"], run["step"], run["next_at"]) == ("halted", 1, T0 + 36 * MIN)
    acks = [r for r in deliveries(db, incident["id"]) if r["event"] == "acknowledge"]
    assert summary(acks, users, points) == [("acknowledge", "pagerduty", "pd", None)]
    # And step 1's wait (T0+15, the repeat's round 1) passes without any page
    assert tick(incident["id"], T0 + 15 * MIN) == "early"
    engine.sweep(T0 + 20 * MIN)
    assert len([r for r in deliveries(db, incident["id"]) if r["event"] == "trigger"]) == pages

    # When the ack timeout passes
    assert tick(incident["id"], T0 + 36 * MIN) == "retriggered"

    # Then the incident is triggered again (timeline ack_timeout, incident.triggered) and step 1 pages again
    status = db.execute("select status, acknowledged_at from public.incidents where id = %s", (incident["id"],))
    assert status.fetchone() == {"status": "triggered", "acknowledged_at": None}
    kinds = [e["kind"] for e in timeline(db, incident["id"])]
    assert kinds[-2:] == ["ack_timeout", "escalated"]
    again = [r for r in deliveries(db, incident["id"]) if r["created_at"] == T0 + 36 * MIN]
    assert sorted(summary(again, users, points)) == [
        ("trigger", "email", "alice", 1),
        ("trigger", "email", "bob", 1),
        ("trigger", "slack", "bob", 1),
    ]
    outbox = db.execute(
        "select payload->'data'->>'reason' as reason from public.outbox_events"
        " where type = 'incident.triggered' and payload->'data'->>'incident_id' = %s order by created_at",
        (str(incident["id"]),),
    ).fetchall()
    assert [o["reason"] for o in outbox] == [None, "ack timeout"]
    run = run_of(db, incident["id"])
    assert run is not None and (run["status"], run["step"], run["next_at"]) == ("active", 1, T0 + 46 * MIN)

    # When it is resolved
    service.resolve(world.principal, world.project.project_id, incident["id"], None, now=T0 + 40 * MIN)

    # Then the run is done, and everyone paged gets resolve once (PagerDuty's with the same incident)
    run = run_of(db, incident["id"])
    assert run is not None and (run["status"], run["next_at"]) == ("done", None)
    resolves = [r for r in deliveries(db, incident["id"]) if r["event"] == "resolve"]
    assert sorted(summary(resolves, users, points)) == [
        ("resolve", "email", "alice", None),
        ("resolve", "email", "bob", None),
        ("resolve", "pagerduty", "pd", None),
        ("resolve", "slack", "bob", None),
    ]
    assert {r["payload"].get("to") for r in resolves if r["channel"] == "email"} == {world.alice.email, world.bob.email}
    # And nothing moves any more
    engine.sweep(T0 + 2 * 60 * MIN)
    assert len([r for r in deliveries(db, incident["id"]) if r["event"] == "trigger"]) == pages + 3
    assert tick(incident["id"], T0 + 2 * 60 * MIN) == "idle"


def test_unacknowledge_resumes_the_current_step(db: psycopg.Connection[Any], world: World) -> None:
    # Given a run at step 0, acknowledged at T0+1 (no ack timeout)
    policy = standard_policy(world)
    incident = start(db, world, policy)
    service.acknowledge(world.principal, world.project.project_id, incident["id"], now=T0 + MIN)
    run = run_of(db, incident["id"])
    assert run is not None and (run["status"], run["next_at"]) == ("halted", None)

    # When it is unacknowledged at T0+20
    service.unacknowledge(world.principal, world.project.project_id, incident["id"], now=T0 + 20 * MIN)

    # Then step 0 pages again at once (a new seq) and its wait starts over
    triggers = [r for r in deliveries(db, incident["id"]) if r["event"] == "trigger"]
    assert [(r["escalation_step"], r["created_at"]) for r in triggers] == [(0, T0), (0, T0 + 20 * MIN)]
    assert triggers[1]["payload"]["reason"] == "re-triggered"
    run = run_of(db, incident["id"])
    assert run is not None and (run["status"], run["step"], run["next_at"]) == ("active", 0, T0 + 25 * MIN)
    # And the escalation goes on from there
    assert tick(incident["id"], T0 + 25 * MIN) == "escalated"


def test_repeat_rounds_stop_after_repeat(db: psycopg.Connection[Any], world: World) -> None:
    # Given a one-step policy (PagerDuty, then 2 minutes) repeated twice
    policy = make_policy(
        world,
        steps=[{"wait_minutes": 2, "targets": [{"type": "contact_point", "id": str(world.pagerduty)}]}],
        repeat=2,
    )
    incident = start(db, world, policy)

    # When the sweep runs every minute for half an hour
    for minute in range(1, 31):
        engine.sweep(T0 + minute * MIN)

    # Then it paged three times (the first round and two repeats), two minutes apart, and is done
    triggers = [r for r in deliveries(db, incident["id"]) if r["event"] == "trigger"]
    assert [r["created_at"] for r in triggers] == [T0, T0 + 2 * MIN, T0 + 4 * MIN]
    assert [r["payload"]["round"] for r in triggers] == [0, 1, 2]
    run = run_of(db, incident["id"])
    assert run is not None and (run["status"], run["round"], run["next_at"]) == ("done", 2, None)


def test_a_zero_wait_pages_the_next_step_at_once(db: psycopg.Connection[Any], world: World) -> None:
    policy = make_policy(
        world,
        steps=[
            {"wait_minutes": 0, "targets": [{"type": "contact_point", "id": str(world.pagerduty)}]},
            {"wait_minutes": 0, "targets": [{"type": "user", "id": str(world.alice.id)}]},
        ],
    )
    incident = start(db, world, policy)
    triggers = deliveries(db, incident["id"])
    assert [(r["escalation_step"], r["created_at"]) for r in triggers] == [(0, T0), (1, T0)]
    run = run_of(db, incident["id"])
    assert run is not None and (run["status"], run["seq"]) == ("done", 2)


# --- once only -----------------------------------------------------------------------------------------------------


def test_one_run_per_incident_and_not_for_an_acknowledged_one(db: psycopg.Connection[Any], world: World) -> None:
    policy = standard_policy(world)
    incident = start(db, world, policy)
    # A later notification of the same route (changed, repeat) starts nothing more
    notify_route(incident, policy, T0 + MIN, log_id=2)
    assert len(deliveries(db, incident["id"])) == 1
    # An incident acknowledged before its route names a policy is not paged
    other = open_incident(db, world, T0)
    service.acknowledge(world.principal, world.project.project_id, other["id"], now=T0)
    acknowledged = db.execute("select * from public.incidents where id = %s", (other["id"],)).fetchone()
    notify_route(acknowledged, policy, T0 + MIN)
    assert run_of(db, other["id"]) is None


def test_duplicate_stale_and_early_timer_messages_page_once(db: psycopg.Connection[Any], world: World) -> None:
    # Given a run at step 0 (seq 1), due at T0+5
    policy = standard_policy(world)
    incident = start(db, world, policy)

    # When the same timer message arrives early, then twice when due, then an old seq
    assert tick(incident["id"], T0 + 2 * MIN, seq=1) == "early"
    assert tick(incident["id"], T0 + 5 * MIN, seq=1) == "escalated"
    assert tick(incident["id"], T0 + 5 * MIN, seq=1) == "stale"
    assert tick(incident["id"], T0 + 30 * MIN, seq=0) == "stale"

    # Then step 1 paged once
    assert [r["escalation_step"] for r in deliveries(db, incident["id"])] == [0, 1, 1, 1]


def test_overlapping_sweeps_page_once(db: psycopg.Connection[Any], world: World, database_url: str) -> None:
    # Given a run due at T0+5
    policy = standard_policy(world)
    incident = start(db, world, policy)

    # When a sweep runs while another transaction holds the incident (an acknowledgement in flight)
    with psycopg.connect(database_url) as holder:
        holder.execute("select 1 from public.incidents where id = %s for update", (incident["id"],))
        blocked = engine.sweep(T0 + 5 * MIN)
        holder.rollback()
    # Then it skips the incident instead of waiting
    assert blocked.outcomes.get("locked", 0) >= 1
    assert len(deliveries(db, incident["id"])) == 1

    # When four sweeps run at once
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def sweep() -> None:
        barrier.wait()
        report = engine.sweep(T0 + 5 * MIN)
        outcomes.extend(o for o, n in report.outcomes.items() for _ in range(n))

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then step 1 paged once
    assert [r["escalation_step"] for r in deliveries(db, incident["id"])] == [0, 1, 1, 1]
    run = run_of(db, incident["id"])
    assert run is not None and (run["step"], run["seq"]) == (1, 2)


def test_deleting_the_policy_does_not_change_a_run_in_progress(db: psycopg.Connection[Any], world: World) -> None:
    # Given a run of a policy that is then deleted
    policy = standard_policy(world)
    incident = start(db, world, policy)
    policy_id = db.execute(
        "select id from public.escalation_policies where project_id = %s and name = %s",
        (world.project.project_id, policy),
    ).fetchone()
    assert policy_id is not None
    policies.delete_policy(world.principal, world.project.project_id, policy_id["id"])

    # When its next step is due: it pages as the policy said when the run started
    assert tick(incident["id"], T0 + 5 * MIN) == "escalated"
    assert [r["escalation_step"] for r in deliveries(db, incident["id"])] == [0, 1, 1, 1]

    # And a new incident of a route naming the deleted policy pages nobody
    later = start(db, world, policy, T0 + 10 * MIN)
    assert run_of(db, later["id"]) is None and deliveries(db, later["id"]) == []


def test_an_unknown_policy_is_a_warning_and_a_timeline_note(
    db: psycopg.Connection[Any], world: World, captured_logs: Any
) -> None:
    # Given a route naming a policy the project does not have
    incident = open_incident(db, world, T0)

    # When it notifies twice
    notify_route(incident, "no-such-policy", T0)
    notify_route(incident, "no-such-policy", T0 + MIN, log_id=2)

    # Then nothing is paged, one timeline note says why, and a warning is logged
    assert run_of(db, incident["id"]) is None and deliveries(db, incident["id"]) == []
    notes = [e for e in timeline(db, incident["id"]) if e["kind"] == "escalation_policy_missing"]
    assert len(notes) == 1 and notes[0]["details"]["policy"] == "no-such-policy"
    assert "unknown escalation policy" in captured_logs.getvalue()


def test_unreachable_targets_are_noted(db: psycopg.Connection[Any], world: World, database_url: str) -> None:
    # Given a policy paging a member who then leaves, and a contact point that is then disabled
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        leaver = make_user(conn)
        add_membership(conn, world.project.org_id, leaver.id, "member")
        point = insert_contact_point(conn, world.project, f"pd-{uuid.uuid4().hex[:6]}", "pagerduty")
    policy = make_policy(
        world,
        steps=[
            {
                "wait_minutes": 5,
                "targets": [{"type": "user", "id": str(leaver.id)}, {"type": "contact_point", "id": str(point)}],
            }
        ],
    )
    db.execute("delete from public.memberships where user_id = %s", (leaver.id,))
    db.execute("update public.contact_points set enabled = false where id = %s", (point,))

    # When it starts
    incident = start(db, world, policy)

    # Then nothing is sent, and the step's timeline event says who could not be reached and why
    assert deliveries(db, incident["id"]) == []
    escalated = next(e for e in timeline(db, incident["id"]) if e["kind"] == "escalated")
    assert escalated["details"]["paged"] == []
    assert {u["why"] for u in escalated["details"]["unreached"]} == {
        "not a member of the organization",
        "the contact point is disabled",
    }


# --- timers on SQS -------------------------------------------------------------------------------------------------


@pytest.fixture
def timer_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with queue_and_bucket(monkeypatch, "escalation-timers") as aws:
        monkeypatch.setenv("ESCALATION_QUEUE_URL", aws.queue_url)
        yield aws


def test_timers_are_sqs_delay_messages_after_the_commit(
    db: psycopg.Connection[Any], world: World, timer_queue: Any
) -> None:
    # Given a policy with a 5-minute step and a 30-minute one, repeated once
    policy = make_policy(
        world,
        steps=[
            {"wait_minutes": 5, "targets": [{"type": "contact_point", "id": str(world.pagerduty)}]},
            {"wait_minutes": 30, "targets": [{"type": "user", "id": str(world.alice.id)}]},
        ],
        repeat=1,
    )

    # When the run starts (the real clock: SQS delays count from now)
    now = datetime.now(UTC)
    incident = start(db, world, policy, now)

    # Then one timer message names the incident and seq 1, delayed 5 minutes
    sent = timer_queue.sqs.receive_message(QueueUrl=timer_queue.queue_url, WaitTimeSeconds=0).get("Messages")
    assert sent is None  # delayed: not visible yet
    messages = timer_queue.sqs.get_queue_attributes(
        QueueUrl=timer_queue.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert messages["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"

    # When the SQS batch (the same message twice, and one that is not ours) arrives at the due time
    body = json.dumps({"v": 1, "kind": "escalation", "incident_id": str(incident["id"]), "seq": 1})
    records = [
        {"Body": body, "MessageId": "m1", "ReceiptHandle": "r1"},
        {"Body": body, "MessageId": "m2", "ReceiptHandle": "r2"},
        {"Body": "{}", "MessageId": "m3", "ReceiptHandle": "r3"},
    ]
    response = engine.handle_timer_messages(timer_queue.event(records), now=now + 5 * MIN)

    # Then the step pages once, the bad message alone fails, and the 30-minute wait is armed as a 15-minute hop
    assert response == {"batchItemFailures": [{"itemIdentifier": "m3"}]}
    assert [r["escalation_step"] for r in deliveries(db, incident["id"])] == [0, 1]
    run = run_of(db, incident["id"])
    assert run is not None and run["seq"] == 2
    attributes = timer_queue.sqs.get_queue_attributes(
        QueueUrl=timer_queue.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "2"


def test_a_schedule_with_nobody_on_call_is_noted(db: psycopg.Connection[Any], world: World) -> None:
    # Given a schedule of the organization with nobody on call (its only layer starts next year)
    row = db.execute(
        "insert into public.oncall_schedules (org_id, name, time_zone, layers) values (%s, 'Later', 'UTC', %s)"
        " returning id",
        (
            world.project.org_id,
            Jsonb(
                [
                    {
                        "name": "Later",
                        "users": [str(world.alice.id)],
                        "rotation": {"unit": "days", "length": 1},
                        "start": (T0 + timedelta(days=365)).isoformat(),
                    }
                ]
            ),
        ),
    ).fetchone()
    assert row is not None
    policy = make_policy(
        world,
        steps=[
            {
                "wait_minutes": 5,
                "targets": [
                    {"type": "schedule", "id": str(row["id"])},
                    {"type": "contact_point", "id": str(world.pagerduty)},
                ],
            }
        ],
    )

    # When the step pages
    incident = start(db, world, policy)

    # Then the contact point is paged, and the timeline says the schedule had nobody on call
    users, points = names(world)
    assert summary(deliveries(db, incident["id"]), users, points) == [("trigger", "pagerduty", "pd", 0)]
    escalated = next(e for e in timeline(db, incident["id"]) if e["kind"] == "escalated")
    assert escalated["details"]["unreached"] == [{"type": "schedule", "id": str(row["id"]), "why": "nobody is on call"}]


def test_a_snooze_outlasts_the_ack_timeout_and_its_end_resumes(db: psycopg.Connection[Any], world: World) -> None:
    from observai.incidents.models import SnoozeIn
    from observai.incidents.timers import wake_snoozed

    # Given a run acknowledged at T0+1 (ack timeout 30 minutes), then snoozed for 2 hours
    policy = standard_policy(world, ack_timeout=30)
    incident = start(db, world, policy)
    service.acknowledge(world.principal, world.project.project_id, incident["id"], now=T0 + MIN)
    service.snooze(world.principal, world.project.project_id, incident["id"], SnoozeIn(duration=7200), now=T0 + 2 * MIN)

    # When the ack timeout passes during the snooze: nothing is triggered nor paged
    assert tick(incident["id"], T0 + 31 * MIN) == "snoozed"
    assert db.execute("select status from public.incidents where id = %s", (incident["id"],)).fetchone() == {
        "status": "acknowledged"
    }
    assert len(deliveries(db, incident["id"])) == 2  # the trigger, and PagerDuty's acknowledge

    # When the snooze ends: the incident triggers again and step 0 pages again
    wake_snoozed(T0 + 2 * MIN + timedelta(hours=2), 500)
    triggers = [r for r in deliveries(db, incident["id"]) if r["event"] == "trigger"]
    assert [r["created_at"] for r in triggers] == [T0, T0 + 2 * MIN + timedelta(hours=2)]


def test_escalate_function_takes_timer_batches_and_runs_the_sweep(db: psycopg.Connection[Any], world: World) -> None:
    from observai_local.lambda_context import LambdaContext
    from observai_local.sqs import sqs_event

    from tests.helpers.inprocess import load_function

    # Given a run (seq 1) and EscalateFunction's handler
    incident = start(db, world, standard_policy(world))
    function = load_function("escalate")
    context = LambdaContext("observai-test-escalate", timeout_s=60)

    # When SQS delivers a batch: an early timer of the run, and a message that is not ours
    body = json.dumps({"v": 1, "kind": "escalation", "incident_id": str(incident["id"]), "seq": 1})
    event = sqs_event(
        [{"Body": body, "MessageId": "t1"}, {"Body": "not json", "MessageId": "t2"}],
        source_arn="arn:aws:sqs:us-east-1:000000000000:escalation-timers",
    )
    response = function.lambda_handler(event, context)

    # Then the bad message alone is reported failed, and the early timer changed nothing
    assert response == {"batchItemFailures": [{"itemIdentifier": "t2"}]}
    run = run_of(db, incident["id"])
    assert run is not None and run["seq"] == 1

    # When EventBridge Scheduler runs it: a sweep summary
    summary = function.lambda_handler({"source": "aws.scheduler", "detail-type": "Scheduled Event"}, context)
    assert {"rounds", "due", "outcomes", "more_pending"} <= set(summary)


def test_acknowledging_acknowledges_pagerduty_paged_by_a_route_without_escalation(
    db: psycopg.Connection[Any], world: World
) -> None:
    from observai.notify.deliveries_enqueue import DeliveryRequest, enqueue

    # Given an incident whose route notified the PagerDuty contact point (no escalation policy)
    incident = open_incident(db, world, T0)
    with transaction() as cur:
        enqueue(
            cur,
            DeliveryRequest(
                org_id=world.project.org_id,
                project_id=world.project.project_id,
                channel="pagerduty",
                event="notify",
                source="route",
                key=f"route-test:{incident['id']}",
                incident_id=incident["id"],
                contact_point_id=world.pagerduty,
                payload={"reason": "first"},
            ),
            T0,
        )

    # When it is acknowledged
    service.acknowledge(world.principal, world.project.project_id, incident["id"], now=T0 + MIN)

    # Then PagerDuty gets acknowledge (same incident: same dedup_key), once
    users, points = names(world)
    acks = [r for r in deliveries(db, incident["id"]) if r["event"] == "acknowledge"]
    assert summary(acks, users, points) == [("acknowledge", "pagerduty", "pd", None)]
    assert run_of(db, incident["id"]) is None
