"""Real payloads from the alerting and incident code paths (evaluation, rule retirement, group flushes, acknowledge,
snooze and its end, resolve) match the event schemas published in docs/openapi.json and stay under 20 kB; the outbox
refuses a bigger one and records nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai import outbox
from observai.alerts.evaluation import retire_rule, run_evaluation
from observai.auth.principal import Principal
from observai.db.connection import transaction
from observai.incidents import service
from observai.incidents.models import SnoozeIn
from observai.incidents.timers import wake_snoozed
from observai.metrics.rollup import run_aggregation
from observai.webhooks.events import validate_payload

from tests.helpers.alert_eval import add_points, add_rule, add_series
from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush, resolved
from tests.helpers.ingest import make_project
from tests.helpers.users import add_membership, make_user
from tests.helpers.webhook_schemas import published_errors

pytestmark = pytest.mark.integration

T = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
HOT = {"kind": "metric", "metric": "cpu", "aggregation": "max", "group_by": ["host"], "window": "5m", "op": ">",
       "threshold": 50}  # fmt: skip


def _drain() -> None:
    for _ in range(1000):
        if not run_aggregation(lag_s=0).more_pending:
            return


def _payloads(db: psycopg.Connection[Any], project_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = db.execute(
        "select type, payload from public.outbox_events where project_id = %s order by created_at, id", (project_id,)
    ).fetchall()
    assert all(r["type"] == r["payload"]["type"] for r in rows)
    return [r["payload"] for r in rows]


def test_alerting_and_incident_payloads_match_the_published_schemas(db: psycopg.Connection[Any]) -> None:
    project = make_project(("read",), label="Webhook events")
    owner = make_user(db)
    add_membership(db, project.org_id, owner.id, "owner")
    person = Principal(kind="user", user_id=owner.id)

    # Given a rule with 40 labels of 1 kB (over 20 kB of labels alone) and a hot series, and a second plain rule
    add_points(project, add_series(project, "cpu", {"host": "a"}), [(T - timedelta(minutes=2), 90.0)])
    _drain()
    big_labels = {f"label_{i:02d}": chr(ord("a") + i % 26) * 1024 for i in range(40)}
    add_rule(project, HOT, name="Big CPU", severity="critical", labels=big_labels, next_eval_at=T,
             annotations={"summary": "{{ labels.host }} at {{ value }}"})  # fmt: skip
    retired = add_rule(project, HOT, name="Retired CPU", next_eval_at=T)

    # When both fire, the second is retired while firing, and the first resolves when its series goes quiet
    run_evaluation(now=T + timedelta(seconds=5), project_ids=[project.project_id])
    with transaction() as cur:
        retire_rule(cur, retired, now=T + timedelta(minutes=1))
    run_evaluation(now=T + timedelta(minutes=6, seconds=5), project_ids=[project.project_id])

    # And incidents open, are acknowledged, un-acknowledged, snoozed, woken, resolved by hand and by their alerts
    base = datetime(2033, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 100_000)
    rule = arrange_rule(db, project.org_id, project.project_id, severity="error")
    alert = arrange_alert(db, rule, at=base, summary="p95 latency of checkout above 500 ms")
    group = arrange_group(db, project.org_id, project.project_id, alertname=rule.name)
    first = flush(group, firing=[alert], now=base)
    service.acknowledge(person, project.project_id, first["id"], now=base + timedelta(minutes=1))
    service.unacknowledge(person, project.project_id, first["id"], now=base + timedelta(minutes=2))
    service.snooze(person, project.project_id, first["id"], SnoozeIn(until=base + timedelta(minutes=30)),
                   now=base + timedelta(minutes=3))  # fmt: skip
    wake_snoozed(base + timedelta(minutes=30), 1000)
    service.resolve(person, project.project_id, first["id"], None, now=base + timedelta(minutes=31))
    other_group = arrange_group(db, project.org_id, project.project_id, alertname="other")
    other_alert = arrange_alert(db, rule, at=base, instance="b")
    flush(other_group, firing=[other_alert], now=base + timedelta(minutes=40))
    flush(other_group, firing=[], resolved=[resolved(other_alert, base + timedelta(minutes=41))],
          now=base + timedelta(minutes=41))  # fmt: skip

    # Then every type the alerting and incident code emits is there
    payloads = _payloads(db, project.project_id)
    types = [p["type"] for p in payloads]
    assert set(types) == {"alert.firing", "alert.resolved", "incident.triggered", "incident.acknowledged",
                          "incident.resolved"}, types  # fmt: skip
    # with the variants: re-triggered (unacknowledged, snooze ended), snoozed, resolved by hand and by its alerts,
    # an alert retired, an alert cut to size
    data = [p["data"] for p in payloads]
    assert {d.get("reason") for d in data if d.get("status") == "triggered"} == {None, "unacknowledged", "snooze ended"}
    assert any(d.get("snoozed_until") for d in data if d.get("status") == "acknowledged")
    assert {d.get("reason") for d in data if d.get("status") == "resolved"} == {"manual", "all alerts resolved"}
    assert any(d.get("reason") == "rule retired" for d in data if d.get("state") == "resolved")
    assert any(d.get("truncated") for d in data if d.get("state") == "firing")
    # And each payload validates by its published schema and by its model, and is under 20 kB
    for payload in payloads:
        assert published_errors(payload) == [], payload
        validate_payload(payload)
        assert outbox.payload_size(payload) <= outbox.MAX_PAYLOAD_BYTES


def test_the_outbox_refuses_a_payload_over_20_kb_and_records_nothing(db: psycopg.Connection[Any]) -> None:
    # Given a project and an event whose data is 25 kB
    project = make_project(("read",), label="Webhook events big")
    data = {"export_id": str(uuid.uuid4()), "error": "x" * 25_000}
    # When it is emitted, alone or among others
    with pytest.raises(ValueError, match="over the 20000 bytes"), transaction() as cur:
        outbox.emit(cur, org_id=project.org_id, project_id=project.project_id, type="export.completed", data=data,
                    at=T)  # fmt: skip
    small = outbox.OutboxEvent(project.org_id, project.project_id, "export.completed", {"ok": True}, T)
    big = outbox.OutboxEvent(project.org_id, project.project_id, "export.completed", data, T)
    with pytest.raises(ValueError, match="over the 20000 bytes"), transaction() as cur:
        outbox.emit_many(cur, [small, big])
    # Then nothing was recorded
    assert _payloads(db, project.project_id) == []
