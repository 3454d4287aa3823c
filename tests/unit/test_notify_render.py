"""What a delivery's message says (observai.notify.render): the incident's fields and dedup key, the route's alerts
firing first, the escalation step, the person to mention, and the test message."""

from __future__ import annotations

from uuid import uuid4

from observai.notify.render import MAX_ALERTS, build_message

INCIDENT = {
    "id": uuid4(),
    "org_id": uuid4(),
    "project_id": uuid4(),
    "number": 7,
    "title": "Checkout is slow",
    "status": "triggered",
    "severity": "critical",
    "service": "checkout",
}


def entry(n: int) -> dict:
    return {
        "labels": {"alertname": "HighLatency", "n": str(n)},
        "annotations": {"summary": f"alert {n}"},
        "value": 0.9,
        "fired_at": "2026-12-01T10:00:00+00:00",
        "resolved_at": None,
    }


def test_a_route_notification_lists_its_alerts_firing_first() -> None:
    delivery = {
        "id": uuid4(),
        "event": "notify",
        "escalation_step": None,
        "payload": {"reason": "changed", "firing": [entry(1)], "resolved": [entry(2)]},
    }
    message = build_message(delivery, INCIDENT, links={"incident": "https://x/i"})
    assert message.title == "Checkout is slow" and message.severity == "critical" and message.reason == "changed"
    assert message.dedup_key == str(INCIDENT["id"]) and message.delivery_id == str(delivery["id"])
    assert [a["state"] for a in message.alerts] == ["firing", "resolved"]
    assert message.alerts[0]["starts_at"] == "2026-12-01T10:00:00+00:00"
    assert message.incident is not None and message.incident["number"] == 7
    assert message.incident["project_id"] == str(INCIDENT["project_id"])
    assert "1 firing, 1 resolved" in message.text and message.links == {"incident": "https://x/i"}


def test_alerts_are_capped_and_a_page_names_its_step_and_mention() -> None:
    many = {"id": uuid4(), "event": "notify", "payload": {"firing": [entry(i) for i in range(100)]}}
    assert len(build_message(many, INCIDENT).alerts) == MAX_ALERTS
    page = {"id": uuid4(), "event": "trigger", "escalation_step": 1, "payload": {"policy": "ops", "mention": "U1"}}
    message = build_message(page, INCIDENT)
    assert "Escalation step 2 of ops." in message.text and message.mention == "U1"


def test_without_an_incident_the_title_is_the_alert_name() -> None:
    delivery = {"id": uuid4(), "event": "notify", "payload": {"reason": "first", "firing": [entry(1)]}}
    message = build_message(delivery, None)
    assert message.title == "HighLatency" and message.dedup_key is None and message.incident is None
    assert build_message({"id": uuid4(), "event": "test", "payload": {}}, None).title.startswith("Test")
