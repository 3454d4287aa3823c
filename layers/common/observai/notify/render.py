"""What a delivery says: the channel-neutral ``Message`` built at send time from the delivery's row, its incident
(title, number, severity, status, service) and its payload (the route's reason and alerts, an escalation step, the
person to mention), with the signed acknowledge and resolve links (observai.notify.links)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from observai.config import Settings
from observai.notify.message import Message

# A message lists at most this many alerts (Slack's 50 blocks, an e-mail people read); the counts say how many.
MAX_ALERTS = 20
TITLE_MAX = 250


def incident_fields(incident: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The incident's public fields a message shows."""
    if incident is None:
        return None
    return {
        "id": str(incident["id"]),
        "number": incident.get("number"),
        "title": incident.get("title"),
        "status": incident.get("status"),
        "severity": incident.get("severity"),
        "service": incident.get("service"),
        "project_id": str(incident["project_id"]),
    }


def _alert(entry: Mapping[str, Any], state: str) -> dict[str, Any]:
    return {
        "labels": dict(entry.get("labels") or {}),
        "annotations": dict(entry.get("annotations") or {}),
        "state": state,
        "value": entry.get("value"),
        "starts_at": entry.get("fired_at"),
        "ends_at": entry.get("resolved_at"),
    }


def alerts_of(payload: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """The payload's alerts (a route's firing and resolved entries), firing first, at most MAX_ALERTS."""
    firing = [_alert(e, "firing") for e in payload.get("firing") or [] if isinstance(e, Mapping)]
    resolved = [_alert(e, "resolved") for e in payload.get("resolved") or [] if isinstance(e, Mapping)]
    return tuple([*firing, *resolved][:MAX_ALERTS])


def _title(event: str, incident: Mapping[str, Any] | None, payload: Mapping[str, Any]) -> str:
    """The bare title: the channels put the severity (or RESOLVED, TEST...) and the incident's number before it."""
    if event == "test":
        return "Test notification from ObservAI"
    if incident is not None and incident.get("title"):
        return str(incident["title"])[:TITLE_MAX]
    for entry in [*(payload.get("firing") or []), *(payload.get("resolved") or [])]:
        if isinstance(entry, Mapping):
            name = (entry.get("labels") or {}).get("alertname")
            if name:
                return str(name)[:TITLE_MAX]
    return str(payload.get("title") or "Alert notification")[:TITLE_MAX]


_REASON_TEXT = {
    "first": "Alerts started firing.",
    "changed": "The alerts of this notification changed.",
    "repeat": "Still firing (a reminder).",
    "resolved": "The alerts resolved.",
}
_EVENT_TEXT = {
    "trigger": "You are paged for this incident.",
    "acknowledge": "The incident was acknowledged.",
    "resolve": "The incident was resolved.",
}


def _text(
    event: str, reason: str | None, incident: Mapping[str, Any] | None, payload: Mapping[str, Any], step: Any
) -> str:
    """A short plain description; the channels show the alerts themselves."""
    if event == "test":
        return "This is a test notification: the contact point works."
    lines: list[str] = []
    if event == "notify":
        lines.append(_REASON_TEXT.get(reason or "", "An alert notification."))
    elif event in _EVENT_TEXT:
        lines.append(_EVENT_TEXT[event])
    if incident is not None:
        service = f" on {incident['service']}" if incident.get("service") else ""
        lines.append(
            f"Incident #{incident.get('number')} ({incident.get('severity')}{service}) is {incident.get('status')}."
        )
    policy = payload.get("policy")
    if isinstance(step, int) and event == "trigger":
        lines.append(f"Escalation step {step + 1}" + (f" of {policy}." if isinstance(policy, str) else "."))
    firing = int(payload.get("firing_count") or len(payload.get("firing") or []))
    resolved = int(payload.get("resolved_count") or len(payload.get("resolved") or []))
    if firing or resolved:
        lines.append(f"{firing} firing, {resolved} resolved.")
    return " ".join(lines)


def build_message(
    delivery: Mapping[str, Any],
    incident: Mapping[str, Any] | None,
    *,
    links: Mapping[str, str] | None = None,
) -> Message:
    """The Message of one delivery row (id, event, payload) about ``incident`` (or none)."""
    payload: Mapping[str, Any] = delivery.get("payload") or {}
    event = str(delivery["event"])
    reason = payload.get("reason")
    alerts = alerts_of(payload)
    fields = incident_fields(incident)
    severity = str((incident or {}).get("severity") or payload.get("severity") or "warning")
    mention = payload.get("mention")
    return Message(
        event=event,  # type: ignore[arg-type]
        title=_title(event, incident, payload),
        text=_text(
            event, reason if isinstance(reason, str) else None, incident, payload, delivery.get("escalation_step")
        ),
        severity=severity,
        reason=str(reason) if reason is not None else None,
        incident=fields,
        alerts=alerts,
        links=dict(links or {}),
        mention=str(mention) if mention else None,
        dedup_key=str(incident["id"]) if incident is not None else None,
        delivery_id=str(delivery["id"]),
        resume_from=int(delivery.get("progress") or 0),
    )


def links_for(incident: Mapping[str, Any] | None, user_id: Any, now: datetime, settings: Settings) -> dict[str, str]:
    """The incident's links (open it, and the signed acknowledge and resolve links, bound to the person paged when
    there is one); none without an incident, or without a public base URL and a link secret."""
    if incident is None:
        return {}
    from observai.notify.links import action_links

    return action_links(incident["id"], incident["project_id"], now, settings, user_id)
