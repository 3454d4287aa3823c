"""Incidents opened, fed and resolved by notification group flushes (observai.incidents.lifecycle.on_group_flush),
and snoozes ending (observai.incidents.timers.wake_snoozed), against the real database with an injected clock."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.auth.principal import Principal
from observai.incidents import service
from observai.incidents.models import SnoozeIn
from observai.incidents.timers import wake_snoozed
from psycopg.rows import dict_row

from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush, resolved
from tests.helpers.ingest import IngestProject, make_project
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.integration

T0 = datetime(2031, 3, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
def project(database_url: str) -> IngestProject:
    return make_project(("read",), label="Incidents")


def events(db: psycopg.Connection[Any], incident_id: UUID) -> list[dict[str, Any]]:
    return db.execute(
        "select kind, actor_type, actor_id, at, details from public.incident_events where incident_id = %s order by id",
        (incident_id,),
    ).fetchall()


def outbox_types(db: psycopg.Connection[Any], incident_id: UUID) -> list[str]:
    rows = db.execute(
        "select type from public.outbox_events where payload->'data'->>'incident_id' = %s order by created_at, type",
        (str(incident_id),),
    ).fetchall()
    return [r["type"] for r in rows]


def test_a_flush_with_firing_alerts_opens_a_triggered_incident(
    db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given a group with one firing alert of a warning rule
    rule = arrange_rule(db, project.org_id, project.project_id)
    alert = arrange_alert(db, rule, at=T0, summary="p95 latency of checkout above 500 ms")
    group_id = arrange_group(db, project.org_id, project.project_id, alertname=rule.name)

    # When the group flushes
    incident = flush(group_id, firing=[alert], now=T0)

    # Then a triggered incident #1 is opened, titled from the summary, with the alert's severity and service
    assert incident["number"] == 1 and incident["status"] == "triggered"
    assert incident["title"] == "p95 latency of checkout above 500 ms"
    assert (incident["severity"], incident["service"], incident["triggered_at"]) == ("warning", "checkout", T0)
    # And the group points at it, the alert is recorded with its rule version, the timeline and outbox have it
    group = db.execute("select incident_id from public.notification_groups where id = %s", (group_id,)).fetchone()
    assert group == {"incident_id": incident["id"]}
    alerts = db.execute(
        "select instance_id, rule_id, rule_version, resolved_at from public.incident_alerts where incident_id = %s",
        (incident["id"],),
    ).fetchall()
    assert alerts == [{"instance_id": alert.instance_id, "rule_id": rule.id, "rule_version": 1, "resolved_at": None}]
    assert [(e["kind"], e["actor_type"]) for e in events(db, incident["id"])] == [
        ("triggered", "system"),
        ("alert_firing", "system"),
    ]
    assert outbox_types(db, incident["id"]) == ["incident.triggered"]


def test_later_flushes_feed_the_open_incident_and_acknowledged_stays_acknowledged(
    db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given an incident opened by a group, then acknowledged
    rule = arrange_rule(db, project.org_id, project.project_id)
    first = arrange_alert(db, rule, at=T0, instance="a")
    group_id = arrange_group(db, project.org_id, project.project_id)
    incident = flush(group_id, firing=[first], now=T0)
    owner = make_user(db)
    add_membership(db, project.org_id, owner.id, "owner")
    service.acknowledge(Principal(kind="user", user_id=owner.id), project.project_id, incident["id"], now=T0)

    # When a second (critical) alert joins the group and the group flushes with both
    second = arrange_alert(db, rule, at=T0 + timedelta(minutes=5), severity="critical", instance="b")
    again = flush(group_id, firing=[first, second], now=T0 + timedelta(minutes=5))

    # Then it is the same incident, still acknowledged (new alerts do not re-trigger it), now critical
    assert again["id"] == incident["id"] and again["status"] == "acknowledged"
    assert (incident["severity"], again["severity"]) == ("warning", "critical")
    # And only the new alert and the raised severity are new timeline events
    timeline = events(db, incident["id"])
    assert [e["kind"] for e in timeline] == [
        "triggered",
        "alert_firing",
        "acknowledged",
        "alert_firing",
        "severity_raised",
    ]
    assert timeline[-1]["details"] == {"from": "warning", "to": "critical"}

    # When a warning alert joins later: Then the severity is not lowered
    third = arrange_alert(db, rule, at=T0 + timedelta(minutes=9), severity="info", instance="c")
    assert flush(group_id, firing=[first, second, third], now=T0 + timedelta(minutes=9))["severity"] == "critical"
    count = db.execute("select count(*) as n from public.incident_alerts where incident_id = %s", (incident["id"],))
    assert count.fetchone() == {"n": 3}


def test_all_alerts_resolved_resolves_the_incident_by_itself(
    db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given an open incident with two alerts
    rule = arrange_rule(db, project.org_id, project.project_id)
    a, b = (arrange_alert(db, rule, at=T0, instance=name) for name in ("a", "b"))
    group_id = arrange_group(db, project.org_id, project.project_id)
    incident = flush(group_id, firing=[a, b], now=T0)

    # When one resolves: Then the incident stays open
    later = T0 + timedelta(minutes=10)
    assert flush(group_id, firing=[b], resolved=[resolved(a, later)], now=later)["status"] == "triggered"

    # When the other resolves too
    end = T0 + timedelta(minutes=20)
    done = flush(group_id, firing=[], resolved=[resolved(b, end)], now=end)

    # Then the incident has resolved by itself (no user), with a timeline event and incident.resolved
    assert (done["status"], done["resolved_at"], done["resolved_by"]) == ("resolved", end, None)
    timeline = events(db, incident["id"])
    assert [e["kind"] for e in timeline] == [
        "triggered",
        "alert_firing",
        "alert_firing",
        "alert_resolved",
        "alert_resolved",
        "resolved",
    ]
    assert timeline[-1]["details"] == {"reason": "all alerts resolved"} and timeline[-1]["actor_type"] == "system"
    assert outbox_types(db, incident["id"]) == ["incident.triggered", "incident.resolved"]


def test_auto_resolve_off_keeps_the_incident_open(db: psycopg.Connection[Any], project: IngestProject) -> None:
    # Given an open incident whose auto-resolve was turned off
    rule = arrange_rule(db, project.org_id, project.project_id)
    alert = arrange_alert(db, rule, at=T0)
    group_id = arrange_group(db, project.org_id, project.project_id)
    incident = flush(group_id, firing=[alert], now=T0)
    db.execute("update public.incidents set auto_resolve = false where id = %s", (incident["id"],))

    # When its only alert resolves
    end = T0 + timedelta(minutes=3)
    after = flush(group_id, firing=[], resolved=[resolved(alert, end)], now=end)

    # Then it stays triggered, and the alert is recorded as resolved
    assert after["status"] == "triggered"
    row = db.execute("select resolved_at from public.incident_alerts where incident_id = %s", (incident["id"],))
    assert row.fetchone() == {"resolved_at": end}


def test_alerts_firing_again_after_resolution_open_a_new_incident(
    db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given a group whose incident resolved by itself
    rule = arrange_rule(db, project.org_id, project.project_id)
    alert = arrange_alert(db, rule, at=T0)
    group_id = arrange_group(db, project.org_id, project.project_id)
    first = flush(group_id, firing=[alert], now=T0)
    flush(group_id, firing=[], resolved=[resolved(alert, T0 + timedelta(minutes=1))], now=T0 + timedelta(minutes=1))

    # When the alert fires again
    again_at = T0 + timedelta(minutes=30)
    second = flush(group_id, firing=[alert], now=again_at)

    # Then a NEW incident #2 is opened; the first stays resolved; the group points at the new one
    assert second["id"] != first["id"] and second["number"] == 2 and second["status"] == "triggered"
    statuses = db.execute(
        "select number, status from public.incidents where project_id = %s order by number", (project.project_id,)
    ).fetchall()
    assert statuses == [{"number": 1, "status": "resolved"}, {"number": 2, "status": "triggered"}]
    group = db.execute("select incident_id from public.notification_groups where id = %s", (group_id,)).fetchone()
    assert group == {"incident_id": second["id"]}


def test_a_flush_with_nothing_firing_and_no_incident_opens_none(
    db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given a group without incident / When it flushes with only resolved alerts / Then no incident exists
    rule = arrange_rule(db, project.org_id, project.project_id)
    alert = arrange_alert(db, rule, at=T0)
    group_id = arrange_group(db, project.org_id, project.project_id)
    assert flush(group_id, firing=[], resolved=[resolved(alert, T0)], now=T0) is None
    count = db.execute("select count(*) as n from public.incidents where project_id = %s", (project.project_id,))
    assert count.fetchone() == {"n": 0}


def test_numbers_are_unique_and_dense_per_project_under_concurrent_flushes(
    database_url: str, db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given 6 groups of one project, each with a firing alert, and another project with one incident already
    from observai.incidents.lifecycle import on_group_flush

    rule = arrange_rule(db, project.org_id, project.project_id)
    work = []
    for n in range(6):
        work.append((arrange_group(db, project.org_id, project.project_id), arrange_alert(db, rule, at=T0, n=str(n))))
    other = make_project(("read",), label="Other")
    other_rule = arrange_rule(db, other.org_id, other.project_id)
    flush(arrange_group(db, other.org_id, other.project_id), firing=[arrange_alert(db, other_rule, at=T0)], now=T0)
    barrier = threading.Barrier(len(work))
    numbers: list[int] = []
    errors: list[BaseException] = []

    def run(group_id: UUID, alert: Any) -> None:
        try:
            with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as cur:
                cur.execute("select * from public.notification_groups where id = %s for update", (group_id,))
                group = cur.fetchone()
                barrier.wait(timeout=10)
                numbers.append(on_group_flush(cur, group=group, firing=[alert], resolved=[], now=T0)["number"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    # When they all flush at the same moment, each in its own transaction
    threads = [threading.Thread(target=run, args=item) for item in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then every incident got its own number: 1..6, none repeated, none skipped (the other project has its own #1)
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]


# --- snooze expiry -----------------------------------------------------------------------------------------------


def _snoozed_incident(db: psycopg.Connection[Any], project: IngestProject, until: datetime, now: datetime) -> UUID:
    rule = arrange_rule(db, project.org_id, project.project_id)
    group_id = arrange_group(db, project.org_id, project.project_id)
    incident = flush(group_id, firing=[arrange_alert(db, rule, at=now)], now=now)
    owner = make_user(db)
    add_membership(db, project.org_id, owner.id, "member")
    service.snooze(
        Principal(kind="user", user_id=owner.id), project.project_id, incident["id"], SnoozeIn(until=until), now=now
    )
    return UUID(str(incident["id"]))


def _status(db: psycopg.Connection[Any], incident_id: UUID) -> dict[str, Any]:
    row = db.execute(
        "select status, snoozed_until, acknowledged_at from public.incidents where id = %s", (incident_id,)
    ).fetchone()
    assert row is not None
    return dict(row)


def test_a_snoozed_incident_is_triggered_again_when_its_snooze_ends(
    db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given an incident snoozed for an hour at T (clock injected: nothing sleeps)
    base = T0 + timedelta(days=400 + uuid.uuid4().int % 1000)
    incident_id = _snoozed_incident(db, project, base + timedelta(hours=1), base)
    assert _status(db, incident_id)["status"] == "acknowledged"

    # When the sweep runs a minute before the end: Then it is still acknowledged
    wake_snoozed(base + timedelta(minutes=59), 100)
    assert _status(db, incident_id)["status"] == "acknowledged"

    # When the sweep runs at the end
    wake_snoozed(base + timedelta(hours=1), 100)

    # Then it is triggered again, unsnoozed, with a system timeline event and incident.triggered
    assert _status(db, incident_id) == {"status": "triggered", "snoozed_until": None, "acknowledged_at": None}
    last = events(db, incident_id)[-1]
    assert (last["kind"], last["actor_type"], last["at"]) == ("unsnoozed", "system", base + timedelta(hours=1))
    assert outbox_types(db, incident_id).count("incident.triggered") == 2  # opened, then woken


def test_the_sweep_is_bounded_and_resumes(db: psycopg.Connection[Any], project: IngestProject) -> None:
    # Given nothing else due before a far time, then three incidents whose snooze ends there
    base = datetime(2090, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 100_000)
    while wake_snoozed(base, 1000):
        pass
    ids = [_snoozed_incident(db, project, base + timedelta(minutes=10), base) for _ in range(3)]

    # When the sweep runs with a limit of 2, three times
    woken = [wake_snoozed(base + timedelta(minutes=10), 2) for _ in range(3)]

    # Then it wakes 2, then the last one, then nothing
    assert woken == [2, 1, 0]
    assert {_status(db, i)["status"] for i in ids} == {"triggered"}


def test_overlapping_sweeps_skip_an_incident_held_by_another(
    database_url: str, db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given a due snoozed incident whose row another transaction holds (a concurrent run or an action)
    base = datetime(2095, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 100_000)
    while wake_snoozed(base, 1000):
        pass
    incident_id = _snoozed_incident(db, project, base + timedelta(minutes=5), base)
    with psycopg.connect(database_url) as holder:
        holder.execute("select 1 from public.incidents where id = %s for update", (incident_id,))

        # When the sweep runs meanwhile: Then it neither waits nor wakes it
        assert wake_snoozed(base + timedelta(minutes=5), 100) == 0
        assert _status(db, incident_id)["status"] == "acknowledged"

    # When the holder is done and the next run comes: Then it is woken exactly once
    assert wake_snoozed(base + timedelta(minutes=6), 100) == 1
    assert wake_snoozed(base + timedelta(minutes=7), 100) == 0
    assert [e["kind"] for e in events(db, incident_id)].count("unsnoozed") == 1


def test_the_scheduled_function_wakes_incidents_whose_snooze_has_passed(
    db: psycopg.Connection[Any], project: IngestProject
) -> None:
    # Given an incident snoozed until a minute ago (the real clock: the function reads it)
    from observai_local.events import schedule_event
    from observai_local.lambda_context import LambdaContext

    from tests.helpers.inprocess import load_function

    now = datetime.now(UTC)
    incident_id = _snoozed_incident(db, project, now + timedelta(minutes=1), now)
    db.execute("update public.incidents set snoozed_until = now() - interval '1 minute' where id = %s", (incident_id,))

    # When IncidentTimersFunction runs on its schedule's event
    handler = load_function("incident_timers").lambda_handler
    report = handler(schedule_event(), LambdaContext("observai-test-incident-timers", timeout_s=60))

    # Then it reports what it woke, and the incident is triggered again
    assert report["woken"] >= 1 and report["more_pending"] is False
    assert _status(db, incident_id)["status"] == "triggered"
