"""PagerDuty: one event of the Events API v2 (``settings.pagerduty_events_url``, by default
https://events.pagerduty.com/v2/enqueue).

A trigger::

    {"routing_key": ..., "event_action": "trigger", "dedup_key": <our incident id>,
     "payload": {"summary": ≤ 1,024 characters, "source", "severity": critical|error|warning|info, "timestamp",
                 "component", "group", "class", "custom_details": {...}},
     "links": [{"href", "text"}], "client": "ObservAI Hub", "client_url": <the incident page>}

An acknowledge or resolve carries only ``routing_key``, ``event_action`` and ``dedup_key``: the same key as the
trigger, so acknowledging or resolving here acknowledges or resolves there. A route's notification (``notify``)
triggers while its alerts fire and resolves when they resolved; a test triggers under its own key.

Our severities map to PagerDuty's (critical → critical, high → error, warning → warning, info → info), overridable
per contact point (``severity_map``). PagerDuty answers 202 when it took the event; 400 (an invalid event) is not
retried; 429 (about 120 events a minute per routing key) and 5xx are.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from observai.config import Settings
from observai.notify.channels._common import (
    alert_name,
    alert_summary,
    classify,
    cut,
    incident_heading,
    one_line,
    post_json,
)
from observai.notify.message import Message, SendResult

CLIENT = "ObservAI Hub"
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
DEFAULT_SEVERITY_MAP: dict[str, str] = {
    "critical": "critical",
    "error": "error",
    "high": "error",
    "warning": "warning",
    "info": "info",
}
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
MAX_DETAIL_ALERTS = 20
DETAIL_TEXT_MAX = 4000


def event_action(message: Message) -> str:
    """trigger, acknowledge or resolve: ``notify`` triggers while alerts fire and resolves once resolved."""
    if message.event in ("trigger", "acknowledge", "resolve"):
        return message.event
    if message.event == "notify" and message.reason == "resolved":
        return "resolve"
    return "trigger"


def severity(ours: str, severity_map: Mapping[str, str] | None = None) -> str:
    mapped = (severity_map or {}).get(ours) or DEFAULT_SEVERITY_MAP.get(ours) or "warning"
    return mapped if mapped in PAGERDUTY_SEVERITIES else "warning"


def dedup_key(message: Message) -> str:
    incident = message.incident or {}
    key = message.dedup_key or incident.get("id") or (f"test-{message.delivery_id}" if message.delivery_id else "test")
    return str(key)[:DEDUP_KEY_MAX]


def _timestamp(message: Message, now: datetime) -> str:
    for alert in message.alerts:
        started = alert.get("starts_at")
        if started:
            return str(started)
    return now.isoformat()


def render(config: Mapping[str, Any], message: Message, now: datetime) -> dict[str, Any]:
    action = event_action(message)
    event: dict[str, Any] = {
        "routing_key": str(config.get("routing_key") or ""),
        "event_action": action,
        "dedup_key": dedup_key(message),
    }
    if action != "trigger":
        return event
    incident = message.incident or {}
    service = str(incident.get("service") or "")
    summary = one_line(incident_heading(message.title, message.severity, message.incident, message.event), SUMMARY_MAX)
    details: dict[str, Any] = {"text": cut(message.text, DETAIL_TEXT_MAX)}
    if message.reason:
        details["reason"] = message.reason
    if incident:
        details["incident"] = {
            k: incident.get(k) for k in ("id", "number", "title", "status", "severity", "service") if k in incident
        }
    if message.alerts:
        details["alerts"] = [
            {
                "name": alert_name(a),
                "state": a.get("state"),
                "value": a.get("value"),
                "labels": a.get("labels") or {},
                "summary": alert_summary(a)[:500],
                "starts_at": a.get("starts_at"),
            }
            for a in message.alerts[:MAX_DETAIL_ALERTS]
        ]
        if len(message.alerts) > MAX_DETAIL_ALERTS:
            details["more_alerts"] = len(message.alerts) - MAX_DETAIL_ALERTS
    event["payload"] = {
        "summary": summary,
        "source": service or CLIENT,
        "severity": severity(message.severity, config.get("severity_map")),
        "timestamp": _timestamp(message, now),
        "component": service or "observai",
        "group": str(incident.get("project_id") or ""),
        "class": alert_name(message.alerts[0])
        if message.alerts
        else ("test" if message.event == "test" else "incident"),
        "custom_details": details,
    }
    link_texts = {
        "incident": "Open in ObservAI Hub",
        "acknowledge": "Acknowledge in ObservAI Hub",
        "resolve": "Resolve in ObservAI Hub",
    }
    links = [
        {"href": message.links[name], "text": text} for name, text in link_texts.items() if message.links.get(name)
    ]
    if links:
        event["links"] = links
    event["client"] = CLIENT
    if message.links.get("incident"):
        event["client_url"] = message.links["incident"]
    return event


def send(config: Mapping[str, Any], message: Message, *, settings: Settings) -> SendResult:
    if not config.get("routing_key"):
        return SendResult(ok=False, error="not sent: no routing key")
    now = datetime.now(UTC)
    attempt = post_json(settings.pagerduty_events_url, render(config, message, now), settings, now)
    return classify(attempt, success=(202,), retryable=frozenset({429}))
