"""What the model sees of an incident: a bounded context assembled by our code, never by the model.

``build_context`` reads, for one incident (and only its own project's rows):

* the incident itself (``incident:<id>``: title, severity, service, labels, status, times), always included;
* its alerts (``alert:<instance_id>``): rule, labels, state, current value and recent transitions with values;
* the top error log lines (severity >= ERROR) of the affected services in the incident's window, grouped by message
  with digits folded (``timeout after 3001 ms`` and ``... 2950 ms`` are one group), with counts
  (``log:<id>``: the group's latest line);
* the failing or slowest traces of those services in the window (``trace:<trace_id>``: the worst span of each);
* correlated anomalies (``anomaly:<id>``): anomaly events of the project overlapping the window and sharing a
  service (or any, when the incident names none), with their group's reason;
* similar past incidents of the organization (``incident:<id>``: observai.ai.similar.nearest), with the
  resolution note a person wrote ("last time, X fixed it");
* its timeline (``event:<id>``): acknowledgments, comments, severity changes, notifications.

The window is from 15 minutes before the incident triggered to 5 minutes after it resolved (or now), at most 24 hours.
Every query is bounded (a LIMIT on an indexed range). Items are ranked most informative first (the first alerts,
the most frequent errors, failing traces, the strongest anomalies, then the rest) and kept while the token budget
allows (~4 characters a token); the context says how many were left out. Every string is redacted
(``observai.ai.redaction``) and every item rendered as JSON in a delimited block whose delimiter carries a random
nonce, so that a log line can neither close its block nor pass for an instruction.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from observai.ai.redaction import redact_for_model
from observai.config import Settings
from observai.db.connection import Cursor
from observai.errors import NotFound

CHARS_PER_TOKEN = 4
WINDOW_BEFORE = timedelta(minutes=15)
WINDOW_AFTER = timedelta(minutes=5)
MAX_WINDOW = timedelta(hours=24)
# Bounds of the reads: rows scanned for error lines and spans, items kept per kind before the budget cut.
LOG_SCAN = 5000
SPAN_SCAN = 5000
MAX_ALERTS = 50
MAX_LOG_GROUPS = 20
MAX_TRACES = 10
MAX_ANOMALIES = 10
MAX_EVENTS = 100
MAX_SIMILAR = 3
MIN_SIMILARITY = 0.2  # cosine similarity below which a past incident says nothing about this one
TRANSITIONS_PER_ALERT = 5
TEXT_MAX = 500
ERROR_SEVERITY = 17  # OpenTelemetry: 17..20 ERROR, 21..24 FATAL

# Kinds in the order they are shown within a tier; the first items of each kind come first (tier 0).
_KIND_ORDER = {"alert": 0, "log": 1, "trace": 2, "anomaly": 3, "similar": 4, "event": 5}
_TIER0 = {"alert": 3, "log": 3, "trace": 2, "anomaly": 2, "similar": 1, "event": 0}
_TIER1 = {"alert": 10, "log": 8, "trace": 5, "anomaly": 5, "similar": 3, "event": 0}
# Timeline events people wrote or that changed the incident: worth more than notifications.
_KEY_EVENTS = frozenset(
    {"acknowledged", "unacknowledged", "resolved", "comment", "severity_raised", "snoozed", "assigned"}
)


@dataclass(frozen=True, slots=True)
class ContextItem:
    id: str  # the citable id: alert:<uuid>, log:<id>, trace:<trace_id>, anomaly:<uuid>, event:<id>, incident:<uuid>
    kind: str  # alert, log, trace, anomaly, similar, event
    data: dict[str, Any]  # redacted
    rank: tuple[int, int, int] = (0, 0, 0)

    def render(self, nonce: str) -> str:
        body = json.dumps(self.data, ensure_ascii=True, sort_keys=False, default=str)
        return f'<data nonce="{nonce}" id="{self.id}" kind="{self.kind}">\n{body}\n</data nonce="{nonce}">\n'


@dataclass
class IncidentContext:
    incident_id: UUID
    org_id: UUID
    project_id: UUID
    incident_updated_at: datetime
    window_start: datetime
    window_end: datetime
    services: list[str]
    header: ContextItem
    items: list[ContextItem]  # kept, most informative first
    omitted: int  # items left out for the budget
    omitted_by_kind: dict[str, int]
    budget_tokens: int
    nonce: str = field(default_factory=lambda: secrets.token_hex(6))
    last_event_id: int = 0  # the newest timeline event the summary saw (a newer one makes it stale)

    @property
    def ids(self) -> frozenset[str]:
        """Every id the answer may cite."""
        return frozenset([self.header.id, *(item.id for item in self.items)])

    def render(self) -> str:
        """The delimited, quoted data blocks: the incident first, then the items in rank order."""
        parts = [self.header.render(self.nonce), *(item.render(self.nonce) for item in self.items)]
        if self.omitted:
            left = ", ".join(f"{n} {kind}" for kind, n in sorted(self.omitted_by_kind.items()))
            parts.append(f"({self.omitted} more items were left out for the size limit: {left}.)\n")
        return "".join(parts)

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.render())

    def summary(self) -> dict[str, Any]:
        """What is stored with a summary: the ids it could cite, its size and what was left out."""
        return {
            "ids": sorted(self.ids),
            "tokens": self.tokens,
            "budget_tokens": self.budget_tokens,
            "omitted": self.omitted,
            "omitted_by_kind": self.omitted_by_kind,
            "window": [self.window_start.isoformat(), self.window_end.isoformat()],
            "services": self.services,
        }


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _text(value: Any, limit: int = TEXT_MAX) -> Any:
    """A value as it may leave: strings redacted and cut, containers walked."""
    if isinstance(value, str):
        cut = value if len(value) <= limit else value[:limit] + "…"
        return redact_for_model(cut)
    if isinstance(value, Mapping):
        return {redact_for_model(str(k))[:100]: _text(v, limit) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_text(v, limit) for v in list(value)[:50]]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


# --- reads ---------------------------------------------------------------------------------------------------


def _incident(cur: Cursor, incident_id: UUID) -> dict[str, Any]:
    cur.execute(
        "select id, org_id, project_id, number, title, status, severity, service, labels, triggered_at,"
        " acknowledged_at, resolved_at, resolution_note, updated_at from public.incidents where id = %s",
        (incident_id,),
    )
    row = cur.fetchone()
    if row is None:
        raise NotFound("Incident not found", details={"incident_id": str(incident_id)})
    return dict(row)


def _alerts(cur: Cursor, incident: Mapping[str, Any], start: datetime, end: datetime) -> list[ContextItem]:
    cur.execute(
        "select a.instance_id, a.labels, a.first_fired_at, a.resolved_at, i.state, i.value, i.annotations"
        " from public.incident_alerts a left join public.alert_instances i"
        " on i.id = a.instance_id and i.project_id = a.project_id"
        " where a.incident_id = %s and a.project_id = %s order by a.first_fired_at, a.instance_id limit %s",
        (incident["id"], incident["project_id"], MAX_ALERTS),
    )
    alerts = [dict(r) for r in cur.fetchall()]
    if not alerts:
        return []
    cur.execute(
        "select instance_id, from_state, to_state, value, at from ("
        " select t.*, row_number() over (partition by t.instance_id order by t.id desc) as n"
        " from public.alert_transitions t where t.instance_id = any(%s) and t.project_id = %s"
        " and t.at >= %s and t.at <= %s) t where n <= %s order by instance_id, at",
        ([a["instance_id"] for a in alerts], incident["project_id"], start, end, TRANSITIONS_PER_ALERT),
    )
    transitions: dict[UUID, list[dict[str, Any]]] = {}
    for t in cur.fetchall():
        transitions.setdefault(t["instance_id"], []).append(
            {"at": _iso(t["at"]), "from": t["from_state"], "to": t["to_state"], "value": t["value"]}
        )
    items = []
    for rank, alert in enumerate(alerts):
        labels = dict(alert["labels"] or {})
        annotations = dict(alert["annotations"] or {})
        items.append(
            ContextItem(
                id=f"alert:{alert['instance_id']}",
                kind="alert",
                data=_text(
                    {
                        "rule": labels.get("alertname"),
                        "labels": labels,
                        "summary": annotations.get("summary"),
                        "description": annotations.get("description"),
                        "state": alert["state"],
                        "value": alert["value"],
                        "first_fired_at": _iso(alert["first_fired_at"]),
                        "resolved_at": _iso(alert["resolved_at"]),
                        "transitions": transitions.get(alert["instance_id"], []),
                    }
                ),
                rank=(0, 0, rank),
            )
        )
    return items


def _services(cur: Cursor, incident: Mapping[str, Any]) -> list[str]:
    services = {incident["service"]} if incident["service"] else set()
    cur.execute(
        "select distinct coalesce(labels->>'service', labels->>'service.name') as service"
        " from public.incident_alerts where incident_id = %s and project_id = %s",
        (incident["id"], incident["project_id"]),
    )
    services.update(r["service"] for r in cur.fetchall() if r["service"])
    return sorted(services)[:20]


def _error_logs(
    cur: Cursor, project_id: UUID, services: list[str], start: datetime, end: datetime
) -> list[ContextItem]:
    service_filter = "and service = any(%(services)s)" if services else ""
    cur.execute(
        "with lines as (select id, time, service, severity_text, severity_number, body, trace_id from public.logs"
        " where project_id = %(project)s and time >= %(start)s and time <= %(end)s"
        f" and severity_number >= %(severity)s {service_filter} order by time limit %(scan)s),"
        " grouped as (select regexp_replace(left(body, 300), '[0-9]+', 'N', 'g') as message, count(*) as count,"
        " max(id) as last_id, min(time) as first_at, max(time) as last_at,"
        " array_agg(distinct service) filter (where service is not null) as services,"
        " max(severity_number) as severity_number from lines group by 1)"
        " select g.*, l.body, l.severity_text, l.trace_id from grouped g join lines l on l.id = g.last_id"
        " order by g.count desc, g.last_at desc limit %(groups)s",
        {
            "project": project_id,
            "start": start,
            "end": end,
            "severity": ERROR_SEVERITY,
            "services": services,
            "scan": LOG_SCAN,
            "groups": MAX_LOG_GROUPS,
        },
    )
    items = []
    for rank, row in enumerate(cur.fetchall()):
        items.append(
            ContextItem(
                id=f"log:{row['last_id']}",
                kind="log",
                data=_text(
                    {
                        "message": row["body"],
                        "count": row["count"],
                        "severity": row["severity_text"] or _severity_name(row["severity_number"]),
                        "services": row["services"] or [],
                        "first_at": _iso(row["first_at"]),
                        "last_at": _iso(row["last_at"]),
                    }
                ),
                rank=(0, 1, rank),
            )
        )
    return items


def _severity_name(number: int | None) -> str:
    if number is None:
        return "UNKNOWN"
    return "FATAL" if number >= 21 else "ERROR" if number >= 17 else "WARN" if number >= 13 else "INFO"


def _traces(cur: Cursor, project_id: UUID, services: list[str], start: datetime, end: datetime) -> list[ContextItem]:
    service_filter = "and service = any(%(services)s)" if services else ""
    cur.execute(
        "with spans as (select trace_id, span_id, name, service, kind, duration_ns, status_code, status_message,"
        " start_time from public.spans where project_id = %(project)s and start_time >= %(start)s"
        f" and start_time <= %(end)s {service_filter} order by start_time limit %(scan)s),"
        " worst as (select distinct on (trace_id) *, count(*) over (partition by trace_id) as spans,"
        " count(*) filter (where status_code = 'error') over (partition by trace_id) as errors from spans"
        " order by trace_id, (status_code = 'error') desc, duration_ns desc)"
        " select * from worst order by (errors > 0) desc, duration_ns desc limit %(limit)s",
        {
            "project": project_id,
            "start": start,
            "end": end,
            "services": services,
            "scan": SPAN_SCAN,
            "limit": MAX_TRACES,
        },
    )
    items = []
    for rank, row in enumerate(cur.fetchall()):
        items.append(
            ContextItem(
                id=f"trace:{row['trace_id']}",
                kind="trace",
                data=_text(
                    {
                        "span": row["name"],
                        "service": row["service"],
                        "kind": row["kind"],
                        "duration_ms": round(int(row["duration_ns"]) / 1e6, 3),
                        "status": row["status_code"],
                        "status_message": row["status_message"],
                        "error_spans": row["errors"],
                        "start": _iso(row["start_time"]),
                    }
                ),
                rank=(0, 2, rank),
            )
        )
    return items


def _anomalies(cur: Cursor, project_id: UUID, services: list[str], start: datetime, end: datetime) -> list[ContextItem]:
    service_filter = (
        "and coalesce(e.labels->>'service', e.labels->>'service.name') = any(%(services)s)" if services else ""
    )
    cur.execute(
        "select e.id, e.started_at, e.ended_at, e.peak_score, e.peak_at, e.expected_at_peak, e.actual_at_peak,"
        " e.direction, e.labels, d.name as detector, d.query, g.reason as group_reason, g.shared_labels"
        " from public.anomaly_events e join public.anomaly_detectors d on d.id = e.detector_id"
        " left join public.anomaly_groups g on g.id = e.group_id"
        " where e.project_id = %(project)s and e.started_at <= %(end)s and e.started_at >= %(since)s"
        " and coalesce(e.ended_at, %(end)s) >= %(start)s"
        f" {service_filter} order by e.peak_score desc, e.started_at limit %(limit)s",
        {
            "project": project_id,
            "start": start,
            "end": end,
            "since": start - MAX_WINDOW,
            "services": services,
            "limit": MAX_ANOMALIES,
        },
    )
    items = []
    for rank, row in enumerate(cur.fetchall()):
        query = row["query"] or {}
        items.append(
            ContextItem(
                id=f"anomaly:{row['id']}",
                kind="anomaly",
                data=_text(
                    {
                        "detector": row["detector"],
                        "metric": query.get("name") if isinstance(query, Mapping) else None,
                        "labels": row["labels"] or {},
                        "direction": row["direction"],
                        "expected_at_peak": row["expected_at_peak"],
                        "actual_at_peak": row["actual_at_peak"],
                        "peak_score": row["peak_score"],
                        "peak_at": _iso(row["peak_at"]),
                        "started_at": _iso(row["started_at"]),
                        "ended_at": _iso(row["ended_at"]),
                        "correlated_group": row["group_reason"] or None,
                    }
                ),
                rank=(0, 3, rank),
            )
        )
    return items


def _events(cur: Cursor, incident: Mapping[str, Any]) -> list[ContextItem]:
    cur.execute(
        "select id, at, kind, actor_type, details from public.incident_events"
        " where incident_id = %s and project_id = %s order by id limit %s",
        (incident["id"], incident["project_id"], MAX_EVENTS),
    )
    items = []
    key_rank = other_rank = 0
    for row in cur.fetchall():
        details = dict(row["details"] or {})
        key = row["kind"] in _KEY_EVENTS
        rank = key_rank if key else other_rank
        if key:
            key_rank += 1
        else:
            other_rank += 1
        items.append(
            ContextItem(
                id=f"event:{row['id']}",
                kind="event",
                data=_text(
                    {"at": _iso(row["at"]), "kind": row["kind"], "by": row["actor_type"], "details": details}, 300
                ),
                # what people did and wrote ranks with tier 1; notifications and alert echoes last
                rank=(1 if key else 2, _KIND_ORDER["event"], rank),
            )
        )
    return items


def _similar(cur: Cursor, incident: Mapping[str, Any], settings: Settings | None, now: datetime) -> list[ContextItem]:
    """The nearest resolved incidents of the organization (never another's), with what fixed them. ``nearest`` never
    raises for the model: without an embedding and a model, the list is empty."""
    from observai.ai import similar
    from observai.config import get_settings

    # Nothing to compare with (no other incident of the organization has an embedding): no embedding call.
    cur.execute(
        "select 1 from public.incident_embeddings where org_id = %s and incident_id <> %s limit 1",
        (incident["org_id"], incident["id"]),
    )
    if cur.fetchone() is None:
        return []
    settings = settings or get_settings()
    # An incident without an embedding yet is embedded on the fly, inside this transaction: it may stay idle for
    # as long as that call may take (the database's idle-in-transaction timeout is shorter).
    idle_ms = int((settings.ai_total_timeout_s + 5) * 1000)
    idle_ms = max(idle_ms, settings.db_idle_in_transaction_timeout_ms)
    cur.execute(f"set local idle_in_transaction_session_timeout = {idle_ms}")
    found = similar.nearest(cur, incident["org_id"], incident["id"], limit=MAX_SIMILAR, settings=settings, now=now)
    items = []
    for rank, past in enumerate(p for p in found if p.similarity >= MIN_SIMILARITY):
        items.append(
            ContextItem(
                id=f"incident:{past.incident_id}",
                kind="similar",
                data=_text(
                    {
                        "number": past.number,
                        "title": past.title,
                        "resolved_at": _iso(past.resolved_at),
                        "resolution_note": past.resolution_note,
                        "similarity": past.similarity,
                    },
                    1000,
                ),
                rank=(0, _KIND_ORDER["similar"], rank),
            )
        )
    return items


# --- ranking and the budget ----------------------------------------------------------------------------------


def _tiered(items: Iterable[ContextItem]) -> list[ContextItem]:
    ranked = []
    for item in items:
        tier, _, position = item.rank
        if item.kind != "event":
            tier = 0 if position < _TIER0[item.kind] else 1 if position < _TIER1[item.kind] else 2
        ranked.append(ContextItem(item.id, item.kind, item.data, (tier, _KIND_ORDER[item.kind], position)))
    return sorted(ranked, key=lambda i: i.rank)


def _header(incident: Mapping[str, Any], start: datetime, end: datetime, services: list[str]) -> ContextItem:
    return ContextItem(
        id=f"incident:{incident['id']}",
        kind="incident",
        data=_text(
            {
                "number": incident["number"],
                "title": incident["title"],
                "severity": incident["severity"],
                "status": incident["status"],
                "service": incident["service"],
                "services": services,
                "labels": incident["labels"] or {},
                "triggered_at": _iso(incident["triggered_at"]),
                "acknowledged_at": _iso(incident["acknowledged_at"]),
                "resolved_at": _iso(incident["resolved_at"]),
                "resolution_note": incident["resolution_note"],
                "window": [start.isoformat(), end.isoformat()],
            },
            2000,
        ),
    )


# The note on what was left out takes a line: room is kept for it.
OMITTED_NOTE_TOKENS = 60


def fit(context: IncidentContext, ranked: Iterable[ContextItem]) -> None:
    """Keep ``ranked`` items (most informative first) in ``context`` while they fit its budget, in that order; an
    item that does not fit is left out (counted by kind) and smaller ones after it may still fit. The header (the
    incident) is always kept. Duplicated ids are kept once."""
    used = estimate_tokens(context.header.render(context.nonce)) + OMITTED_NOTE_TOKENS
    seen: set[str] = {context.header.id, *(item.id for item in context.items)}
    for item in ranked:
        if item.id in seen:
            continue
        cost = estimate_tokens(item.render(context.nonce))
        if used + cost <= context.budget_tokens:
            context.items.append(item)
            seen.add(item.id)
            used += cost
        else:
            context.omitted += 1
            context.omitted_by_kind[item.kind] = context.omitted_by_kind.get(item.kind, 0) + 1


def build_context(
    cur: Cursor, incident_id: UUID, *, budget_tokens: int, now: datetime, settings: Settings | None = None
) -> IncidentContext:
    """The incident's context within ``budget_tokens`` (see the module's notes). ``cur`` sees the incident (a
    tenant transaction's RLS, or the service's after its own check): every other read is bound to its project, the
    similar incidents to its organization. ``settings``: the embedding model's (default: the current settings)."""
    incident = _incident(cur, incident_id)
    start = incident["triggered_at"] - WINDOW_BEFORE
    end = min(incident["resolved_at"] or now, now) + WINDOW_AFTER
    end = min(max(end, start + WINDOW_BEFORE), start + MAX_WINDOW)
    services = _services(cur, incident)
    project_id = incident["project_id"]
    candidates = [
        *_alerts(cur, incident, start, end),
        *_error_logs(cur, project_id, services, start, end),
        *_traces(cur, project_id, services, start, end),
        *_anomalies(cur, project_id, services, start, end),
        *_similar(cur, incident, settings, now),
        *_events(cur, incident),
    ]
    context = IncidentContext(
        incident_id=incident["id"],
        org_id=incident["org_id"],
        project_id=project_id,
        incident_updated_at=incident["updated_at"],
        window_start=start,
        window_end=end,
        services=services,
        header=_header(incident, start, end, services),
        items=[],
        omitted=0,
        omitted_by_kind={},
        budget_tokens=budget_tokens,
    )
    fit(context, _tiered(candidates))
    return context
