"""How notification groups open, feed and resolve incidents (the dispatcher calls ``on_group_flush`` when a group
flushes, in its transaction, with the group row locked).

* A group with firing alerts and no open incident opens one: ``triggered``, numbered per project (#1, #2...),
  titled from its first alert's ``summary`` annotation (else alertname and the group's labels), with the highest
  severity of its alerts. Its alerts are recorded with the rule version they fired under (``incident_alerts``).
* Every alert newly firing or resolved in the group is a timeline event. An alert more severe than the incident
  raises its severity (``severity_raised``); an acknowledged incident stays acknowledged (as PagerDuty: new alerts
  of the same group do not page again while someone is on it).
* When every alert of the group has resolved, an incident with ``auto_resolve`` resolves by itself.

Events leave through the outbox in the same transaction (incident.triggered, incident.resolved).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai import outbox
from observai.ai import tasks as ai_tasks
from observai.db.connection import Cursor
from observai.incidents import timeline

SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.incidents:' || %s::text, 0))"
INCIDENT_COLUMNS = (
    "id, org_id, project_id, number, title, status, severity, service, labels, group_id, auto_resolve, assignee_id,"
    " snoozed_until, triggered_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, resolution_note,"
    " created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class GroupAlert:
    """One alert of a group as the dispatcher sees it at a flush."""

    instance_id: UUID
    rule_id: UUID
    rule_version: int
    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None

    @property
    def severity(self) -> str:
        severity = self.labels.get("severity", "warning")
        return severity if severity in SEVERITY_RANK else "warning"

    def brief(self) -> dict[str, Any]:
        return {
            "instance_id": str(self.instance_id),
            "rule_id": str(self.rule_id),
            "rule_version": self.rule_version,
            "fingerprint": self.fingerprint,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "value": self.value,
        }


def _title(alerts: Sequence[GroupAlert], group_labels: Mapping[str, Any]) -> str:
    first = alerts[0]
    summary = (first.annotations.get("summary") or "").strip()
    if summary and not summary.startswith("<template error"):
        title = summary
    else:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(group_labels.items()) if k != "alertname")
        title = first.labels.get("alertname", "alert") + (f" ({shown})" if shown else "")
    if len(alerts) > 1:
        title += f" and {len(alerts) - 1} more"
    return title[:500]


def _common_service(alerts: Sequence[GroupAlert]) -> str | None:
    services = {a.labels.get("service") or a.labels.get("service.name") for a in alerts}
    services.discard(None)
    services.discard("")
    return services.pop() if len(services) == 1 else None


def get_for_update(cur: Cursor, incident_id: UUID) -> dict[str, Any] | None:
    cur.execute(f"select {INCIDENT_COLUMNS} from public.incidents where id = %s for update", (incident_id,))
    return cur.fetchone()


def open_incident(cur: Cursor, *, group: Mapping[str, Any], firing: Sequence[GroupAlert], now: datetime) -> dict:
    """A new triggered incident for the group's firing alerts (numbered under a per-project lock)."""
    org_id, project_id = group["org_id"], group["project_id"]
    cur.execute(_LOCK_SQL, (project_id,))
    severity = min((a.severity for a in firing), key=SEVERITY_RANK.__getitem__)
    cur.execute(
        "insert into public.incidents (org_id, project_id, number, title, status, severity, service, labels,"
        " group_id, triggered_at, created_at, updated_at)"
        " values (%(org)s, %(project)s,"
        "  (select coalesce(max(number), 0) + 1 from public.incidents where project_id = %(project)s),"
        "  %(title)s, 'triggered', %(severity)s, %(service)s, %(labels)s, %(group)s, %(now)s, %(now)s, %(now)s)"
        f" returning {INCIDENT_COLUMNS}",
        {
            "org": org_id,
            "project": project_id,
            "title": _title(firing, group.get("group_labels") or {}),
            "severity": severity,
            "service": _common_service(firing),
            "labels": Jsonb(dict(group.get("group_labels") or {})),
            "group": group["id"],
            "now": now,
        },
    )
    incident = cur.fetchone()
    assert incident is not None
    timeline.record(
        cur,
        incident,
        kind="triggered",
        at=now,
        details={"title": incident["title"], "severity": severity, "alerts": len(firing)},
    )
    emit_incident_event(cur, incident, "incident.triggered", now)
    return incident


def emit_incident_event(cur: Cursor, incident: Mapping[str, Any], type: str, now: datetime, **extra: Any) -> None:
    """An incident's change leaves in its own transaction: the outbox event (webhooks), and the hand-over to paging
    (escalation halts, resumes or stops). ``incident`` is the row after the change."""
    from observai.notify import hooks

    outbox.emit(
        cur,
        org_id=incident["org_id"],
        project_id=incident["project_id"],
        type=type,
        data={**incident_event_data(incident), **extra},
        at=now,
    )
    hooks.on_incident_event(cur, incident, type, now)


def incident_event_data(incident: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "incident_id": str(incident["id"]),
        "project_id": str(incident["project_id"]),
        "number": incident["number"],
        "title": incident["title"],
        "status": incident["status"],
        "severity": incident["severity"],
        "service": incident["service"],
    }


def record_alerts(
    cur: Cursor,
    incident: Mapping[str, Any],
    *,
    firing: Sequence[GroupAlert],
    resolved: Sequence[GroupAlert],
    now: datetime,
) -> int:
    """Add the group's alerts to the incident; each newly firing or newly resolved one is a timeline event. The
    number of alerts newly firing."""
    new_firing = 0
    for alert in firing:
        cur.execute(
            "insert into public.incident_alerts (incident_id, instance_id, org_id, project_id, rule_id, rule_version,"
            " fingerprint, labels, first_fired_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (incident_id, instance_id) do update set resolved_at = null"
            " where public.incident_alerts.resolved_at is not null"
            " returning (xmax = 0) as inserted",
            (
                incident["id"],
                alert.instance_id,
                incident["org_id"],
                incident["project_id"],
                alert.rule_id,
                alert.rule_version,
                alert.fingerprint,
                Jsonb(dict(alert.labels)),
                alert.fired_at or now,
            ),
        )
        if cur.fetchone() is not None:  # new to the incident, or firing again after it had resolved
            new_firing += 1
            timeline.record(cur, incident, kind="alert_firing", at=alert.fired_at or now, details=alert.brief())
    for alert in resolved:
        cur.execute(
            "update public.incident_alerts set resolved_at = %s"
            " where incident_id = %s and instance_id = %s and resolved_at is null",
            (alert.resolved_at or now, incident["id"], alert.instance_id),
        )
        if cur.rowcount:
            timeline.record(cur, incident, kind="alert_resolved", at=alert.resolved_at or now, details=alert.brief())
    return new_firing


def raise_severity(
    cur: Cursor, incident: dict[str, Any], *, firing: Sequence[GroupAlert], now: datetime
) -> dict[str, Any]:
    """The incident, its severity raised to its most severe firing alert's (never lowered: the page was that bad)."""
    if not firing:
        return incident
    worst = min((a.severity for a in firing), key=SEVERITY_RANK.__getitem__)
    if SEVERITY_RANK[worst] >= SEVERITY_RANK[incident["severity"]]:
        return incident
    cur.execute(
        f"update public.incidents set severity = %s, updated_at = %s where id = %s returning {INCIDENT_COLUMNS}",
        (worst, now, incident["id"]),
    )
    updated = cur.fetchone()
    assert updated is not None
    timeline.record(
        cur,
        incident,
        kind="severity_raised",
        at=now,
        details={"from": incident["severity"], "to": worst},
    )
    return updated


def resolve(
    cur: Cursor,
    incident: Mapping[str, Any],
    *,
    now: datetime,
    by: UUID | None = None,
    reason: str,
    actor: Any = None,
    note: str | None = None,
    via: str | None = None,
) -> dict[str, Any]:
    """Resolve an open incident (the caller holds its row lock); a timeline event and incident.resolved. ``via``:
    where a person's action came from when not the API (``link``, ``slack``), kept in the timeline event."""
    cur.execute(
        "update public.incidents set status = 'resolved', resolved_at = %s, resolved_by = %s, snoozed_until = null,"
        " resolution_note = coalesce(%s, resolution_note), updated_at = %s"
        f" where id = %s returning {INCIDENT_COLUMNS}",
        (now, by, note, now, incident["id"]),
    )
    updated = cur.fetchone()
    assert updated is not None
    timeline.record(
        cur,
        incident,
        kind="resolved",
        at=now,
        actor=actor,
        details={"reason": reason, **({"note": note} if note else {}), **({"via": via} if via else {})},
    )
    emit_incident_event(cur, updated, "incident.resolved", now, reason=reason)
    return updated


def on_group_flush(
    cur: Cursor,
    *,
    group: Mapping[str, Any],
    firing: Sequence[GroupAlert],
    resolved: Sequence[GroupAlert],
    now: datetime,
) -> dict[str, Any] | None:
    """The group's incident after this flush: opened when alerts fire and none is open, fed with the alerts'
    changes, resolved by itself when nothing fires any more (``auto_resolve``). None when there is none."""
    incident = get_for_update(cur, group["incident_id"]) if group.get("incident_id") else None
    if incident is not None and incident["status"] == "resolved":
        incident = None
    if incident is None:
        if not firing:
            return None
        incident = open_incident(cur, group=group, firing=firing, now=now)
        cur.execute(
            "update public.notification_groups set incident_id = %s, updated_at = %s where id = %s",
            (incident["id"], now, group["id"]),
        )
    if record_alerts(cur, incident, firing=firing, resolved=resolved, now=now):
        ai_tasks.on_incident_event(cur, incident, "incident.alerts_changed", now)  # its summary is regenerated
    incident = raise_severity(cur, incident, firing=firing, now=now)
    if not firing and incident["auto_resolve"]:
        incident = resolve(cur, incident, now=now, reason="all alerts resolved")
    return dict(incident)
