"""Recording what to send (observai.notify.deliveries_enqueue) and how a person is reached (observai.notify.people):
once per idempotency key, nothing for a rolled-back change, a person's channels within their organization only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from observai.db.connection import transaction
from observai.notify import people
from observai.notify.deliveries_enqueue import DeliveryRequest, enqueue

from tests.helpers.ingest import IngestProject, make_project
from tests.helpers.users import add_membership, make_user

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def project(database_url: str) -> IngestProject:
    return make_project(scopes=("read",), label="Notify")


def _request(project: IngestProject, key: str, **extra: Any) -> DeliveryRequest:
    return DeliveryRequest(
        org_id=project.org_id,
        project_id=project.project_id,
        channel="email",
        event="trigger",
        source="escalation",
        key=key,
        payload={"to": "oncall@example.test"},
        **extra,
    )


def _records(db: psycopg.Connection[Any], key: str) -> list[dict[str, Any]]:
    return db.execute("select * from public.notification_deliveries where idempotency_key = %s", (key,)).fetchall()


def test_a_delivery_is_recorded_once_per_key_and_due_at_once(db: psycopg.Connection[Any], project) -> None:
    # Given a key used twice (a retried run, a redelivered timer)
    key = f"esc:{uuid.uuid4()}:1:0:user:email"
    with transaction() as cur:
        first = enqueue(cur, _request(project, key, escalation_step=0), NOW)
    with transaction() as cur:
        second = enqueue(cur, _request(project, key, escalation_step=0), NOW)
    # Then one record exists, pending and due now; the second call says it was there
    assert first is not None and second is None
    rows = _records(db, key)
    assert [(r["id"], r["status"], r["next_attempt_at"], r["payload"]) for r in rows] == [
        (first, "pending", NOW, {"to": "oncall@example.test"})
    ]


def test_a_rolled_back_change_records_nothing(db: psycopg.Connection[Any], project) -> None:
    key = f"esc:{uuid.uuid4()}:1:0:user:email"
    # When the change that pages fails after recording the delivery
    with pytest.raises(RuntimeError), transaction() as cur:
        assert enqueue(cur, _request(project, key), NOW) is not None
        raise RuntimeError("the escalation step failed")
    # Then nothing is left to send
    assert _records(db, key) == []


def test_a_person_is_reached_by_their_address_and_slack_settings_within_their_org(
    db: psycopg.Connection[Any], project
) -> None:
    # Given a member with a Slack member id and a Slack contact point, and a stranger
    member = make_user(db)
    add_membership(db, project.org_id, member.id, "member")
    stranger = make_user(db)
    slack = db.execute(
        "insert into public.contact_points (org_id, project_id, name, kind) values (%s, %s, %s, 'slack') returning id",
        (project.org_id, project.project_id, f"slack-{uuid.uuid4().hex[:6]}"),
    ).fetchone()["id"]
    db.execute(
        "insert into public.member_notification_settings (org_id, user_id, slack_user_id, slack_contact_point_id)"
        " values (%s, %s, 'U024BE7LH', %s)",
        (project.org_id, member.id, slack),
    )
    with transaction() as cur:
        reached = people.reach(cur, project.org_id, member.id)
        nobody = people.reach(cur, project.org_id, stranger.id)
        mapped = people.member_for_slack_user(cur, project.org_id, "U024BE7LH", "T0001")
        elsewhere = people.member_for_slack_user(cur, uuid.uuid4(), "U024BE7LH", None)
    # Then the member's channels are known, the stranger is nobody here, and the Slack id maps back only here
    assert reached == people.Reach(member.id, member.email, slack, "U024BE7LH")
    assert nobody is None
    assert mapped == member.id and elsewhere is None


def test_a_person_who_turned_email_off_has_no_address(db: psycopg.Connection[Any], project) -> None:
    member = make_user(db)
    add_membership(db, project.org_id, member.id, "viewer")
    db.execute(
        "insert into public.member_notification_settings (org_id, user_id, email_enabled) values (%s, %s, false)",
        (project.org_id, member.id),
    )
    with transaction() as cur:
        reached = people.reach(cur, project.org_id, member.id)
    assert reached is not None and reached.email is None and reached.slack_contact_point_id is None
