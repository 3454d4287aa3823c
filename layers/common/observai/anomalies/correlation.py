"""Correlation: anomaly events of one project that overlap in time and share attributes become one anomaly group.

An event's *attributes* are its series' labels (the detector's ``group_by`` values) and the equality filters of its
detector's query (``service = checkout``): a detector over one service's latency, without group_by, still says
which service it watches.

``correlate(cur, project_id, now)`` runs at the end of each project's work in a detect-anomalies run:

1. every event of the project not yet in a group (oldest first, then by id) joins the group it fits best: a group
   whose time span, widened by ``WINDOW`` (5 minutes) on both sides, overlaps the event's (an open event or group
   lasts until ``now``), and whose shared labels have at least one ``key = value`` in common with the event's
   attributes; best = the most labels in common, then the earliest group, then the smallest id. No group fits: the
   event starts its own (a lone anomaly is a group of one, so an ``anomaly`` alert rule sees every anomaly as a
   group);
2. every group that changed or is still open is summed up again from its members: ``shared_labels`` (the
   attributes all members share), ``started_at``, ``peak_score``, ``status`` (open while any member is open) and
   ``ended_at`` (the last member's end, once all closed), and the ``reason``, e.g. "3 anomalies on service=checkout
   within 4 minutes: checkout latency p95 above, checkout errors above, checkout CPU above". A group whose members
   were all deleted (with their detector's series) is deleted.

Deterministic (events are taken by start, then by what they are, never by their random ids first: the same
anomalies group the same whatever order their rows were written in) and idempotent (a second run with nothing new
changes nothing: rows are written only when a value differs). Serialized per project by an advisory lock, so
overlapping runs cannot both group the same event. Runs with the service role (the job's connection); returns the
number of groups created or changed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

WINDOW = timedelta(minutes=5)
MAX_EVENTS_PER_RUN = 5000
MAX_REASON = 1000
MAX_LISTED = 10
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.anomaly_correlation:' || %s::text, 0))"


@dataclass
class _Event:
    id: UUID
    group_id: UUID | None
    status: str
    started_at: datetime
    ended_at: datetime | None
    peak_score: float
    direction: str | None
    detector_name: str
    attributes: dict[str, str]  # key -> canonical JSON text of the value


@dataclass
class _Group:
    id: UUID | None  # None: created by this run, not inserted yet
    status: str
    started_at: datetime
    ended_at: datetime | None
    shared: dict[str, str]
    reason: str
    peak_score: float
    members: list[_Event] = field(default_factory=list)
    first: tuple[Any, ...] | None = None  # the smallest _key of its members: the tie-break between groups


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def attributes(labels: dict[str, Any], query: dict[str, Any]) -> dict[str, str]:
    """An event's attributes: the equality filters of its detector's query, then its labels (a label wins)."""
    found = {
        str(f["attribute"]): _text(f["value"])
        for f in query.get("filters") or []
        if f.get("op") == "=" and not isinstance(f.get("value"), list)
    }
    found.update({str(key): _text(value) for key, value in labels.items()})
    return found


def _key(event: _Event) -> tuple[Any, ...]:
    """The order events are taken in: by start, then by what they are (never by their random ids first), so the
    same anomalies group the same whatever order their rows were written in."""
    return (
        event.started_at,
        event.detector_name,
        sorted(event.attributes.items()),
        event.ended_at is None,
        event.ended_at or event.started_at,
        -event.peak_score,
        event.direction or "",
        str(event.id),
    )


def _common(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in a.items() if b.get(key) == value}


def _end(at: datetime | None, now: datetime) -> datetime:
    return now if at is None else at


def _fits(group: _Group, event: _Event, now: datetime) -> bool:
    group_end = now if group.status == "open" else _end(group.ended_at, now)
    event_end = _end(event.ended_at, now) if event.status == "closed" else now
    return event.started_at <= group_end + WINDOW and group.started_at <= event_end + WINDOW


def _label_text(shared: dict[str, str]) -> str:
    parts = []
    for key, value in sorted(shared.items()):
        decoded = json.loads(value)
        parts.append(f"{key}={decoded if isinstance(decoded, str) else value}")
    return ", ".join(parts)


def reason_of(members: list[_Event], shared: dict[str, str]) -> str:
    """ "3 anomalies on service=checkout within 4 minutes: checkout latency above, ..." (members by start, id)."""
    count = len(members)
    head = f"{count} anomal{'y' if count == 1 else 'ies'}"
    if shared:
        head += f" on {_label_text(shared)}"
    if count > 1:
        starts = [m.started_at for m in members]
        minutes = max(1, math.ceil((max(starts) - min(starts)).total_seconds() / 60))
        head += f" within {minutes} minute{'' if minutes == 1 else 's'}"
    described = [f"{m.detector_name} {m.direction}" if m.direction else m.detector_name for m in members[:MAX_LISTED]]
    if count > MAX_LISTED:
        described.append(f"and {count - MAX_LISTED} more")
    reason = f"{head}: {', '.join(described)}"
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"


def _summarize(group: _Group) -> dict[str, Any]:
    members = sorted(group.members, key=_key)
    shared = dict(members[0].attributes)
    for member in members[1:]:
        shared = _common(shared, member.attributes)
    open_ = any(m.status == "open" for m in members)
    return {
        "status": "open" if open_ else "closed",
        "started_at": members[0].started_at,
        "ended_at": None if open_ else max(_end(m.ended_at, m.started_at) for m in members),
        "shared": shared,
        "peak_score": max(m.peak_score for m in members),
        "reason": reason_of(members, shared),
    }


def _load(cur: Cursor, project_id: UUID, now: datetime) -> tuple[list[_Group], list[_Event]]:
    """The groups that may change (open, or ended within WINDOW of an ungrouped event) with their members, and the
    ungrouped events (oldest first)."""
    cur.execute(
        "select e.id, e.group_id, e.status, e.started_at, e.ended_at, e.peak_score, e.direction, e.labels,"
        " d.name as detector_name, d.query"
        " from public.anomaly_events e join public.anomaly_detectors d on d.id = e.detector_id"
        " where e.project_id = %(project)s and e.group_id is null and d.deleted_at is null"
        " order by e.started_at, e.id limit %(cap)s",
        {"project": project_id, "cap": MAX_EVENTS_PER_RUN},
    )
    ungrouped = sorted((_event(row) for row in cur.fetchall()), key=_key)
    earliest = min((e.started_at for e in ungrouped), default=now) - WINDOW
    cur.execute(
        "select g.id, g.status, g.started_at, g.ended_at, g.shared_labels, g.reason, g.peak_score"
        " from public.anomaly_groups g where g.project_id = %(project)s"
        " and (g.status = 'open' or g.ended_at >= %(earliest)s)"
        " order by g.started_at, g.id",
        {"project": project_id, "earliest": earliest},
    )
    groups = [
        _Group(
            id=row["id"],
            status=row["status"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            shared={key: _text(value) for key, value in row["shared_labels"].items()},
            reason=row["reason"],
            peak_score=row["peak_score"],
        )
        for row in cur.fetchall()
    ]
    if groups:
        by_id = {g.id: g for g in groups}
        cur.execute(
            "select e.id, e.group_id, e.status, e.started_at, e.ended_at, e.peak_score, e.direction, e.labels,"
            " d.name as detector_name, d.query"
            " from public.anomaly_events e join public.anomaly_detectors d on d.id = e.detector_id"
            " where e.group_id = any(%s) order by e.started_at, e.id",
            (list(by_id),),
        )
        for row in cur.fetchall():
            by_id[row["group_id"]].members.append(_event(row))
        for group in groups:
            if group.members:
                # As its members are now (one may have closed since): what the new events are matched against.
                summary = _summarize(group)
                group.status, group.started_at, group.ended_at = (
                    summary["status"],
                    summary["started_at"],
                    summary["ended_at"],
                )
                group.shared = summary["shared"]
    return groups, ungrouped


def _event(row: dict[str, Any]) -> _Event:
    return _Event(
        id=row["id"],
        group_id=row["group_id"],
        status=row["status"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        peak_score=row["peak_score"],
        direction=row["direction"],
        detector_name=row["detector_name"],
        attributes=attributes(row["labels"], row["query"]),
    )


def _best(candidates: set[int], groups: list[_Group], event: _Event, now: datetime) -> _Group | None:
    best: tuple[Any, ...] | None = None
    chosen = None
    for index in candidates:
        group = groups[index]
        if not group.members or not _fits(group, event, now):
            continue
        common = len(_common(group.shared, event.attributes))
        if common == 0:
            continue
        key = (-common, group.started_at, group.first)
        if best is None or key < best:
            best, chosen = key, group
    return chosen


def _join(group: _Group, event: _Event) -> None:
    """Add ``event`` to ``group`` and follow its span, status and shared labels (without summing it all up)."""
    group.shared = _common(group.shared, event.attributes) if group.members else dict(event.attributes)
    group.members.append(event)
    event_key = _key(event)
    group.first = event_key if group.first is None else min(group.first, event_key)
    group.started_at = min(group.started_at, event.started_at)
    if event.status == "open":
        group.status, group.ended_at = "open", None
    elif group.status == "closed":
        ends = [t for t in (group.ended_at, event.ended_at) if t is not None]
        group.ended_at = max(ends) if ends else event.started_at


def correlate(cur: Cursor, project_id: UUID, now: datetime) -> int:
    """Group the project's ungrouped anomaly events and sum up its open groups again (see the module). Returns how
    many groups were created, changed or deleted."""
    cur.execute(_LOCK_SQL, (project_id,))
    groups, ungrouped = _load(cur, project_id, now)
    cur.execute("select org_id from public.projects where id = %s", (project_id,))
    project = cur.fetchone()
    if project is None:
        return 0
    org_id = project["org_id"]
    joins: list[tuple[UUID, _Group]] = []
    # Groups by the (key, value) pairs they share: an event is compared with the groups it shares a label with only.
    by_pair: dict[tuple[str, str], set[int]] = {}

    def index(position: int) -> None:
        for pair in groups[position].shared.items():
            by_pair.setdefault(pair, set()).add(position)

    for position, group in enumerate(groups):
        group.first = min((_key(m) for m in group.members), default=None)
        index(position)
    for event in ungrouped:
        candidates: set[int] = set()
        for pair in event.attributes.items():
            candidates |= by_pair.get(pair, set())
        found = _best(candidates, groups, event, now)
        if found is None:
            found = _Group(None, event.status, event.started_at, event.ended_at, {}, "", event.peak_score)
            groups.append(found)
            _join(found, event)
            index(len(groups) - 1)  # a group's shared labels only narrow: the pairs indexed now cover them
        else:
            _join(found, event)
        joins.append((event.id, found))
    written = 0
    for group in groups:
        if not group.members:
            if group.id is not None:  # its members were deleted (their detector's query changed)
                cur.execute("delete from public.anomaly_groups where id = %s", (group.id,))
                written += 1
            continue
        summary = _summarize(group)
        if group.id is None:
            cur.execute(
                "insert into public.anomaly_groups (org_id, project_id, status, started_at, ended_at, shared_labels,"
                " opening_labels, reason, peak_score, created_at, updated_at) values (%(org)s, %(project)s,"
                " %(status)s, %(started_at)s, %(ended_at)s, %(shared)s, %(shared)s, %(reason)s, %(peak_score)s,"
                " %(now)s, %(now)s)"
                " returning id",
                _params(org_id, project_id, summary, now),
            )
            row = cur.fetchone()
            assert row is not None
            group.id = row["id"]
            written += 1
            continue
        # Written only when a value differs: a second run with nothing new changes nothing.
        cur.execute(
            "update public.anomaly_groups set status = %(status)s, started_at = %(started_at)s,"
            " ended_at = %(ended_at)s, shared_labels = %(shared)s, reason = %(reason)s,"
            " peak_score = %(peak_score)s, updated_at = %(now)s where id = %(id)s"
            " and (status, started_at, ended_at, shared_labels, reason, peak_score) is distinct from"
            " (%(status)s::text, %(started_at)s::timestamptz, %(ended_at)s::timestamptz, %(shared)s::jsonb,"
            " %(reason)s::text, %(peak_score)s::float8)",
            {**_params(org_id, project_id, summary, now), "id": group.id},
        )
        written += cur.rowcount
    if joins:
        cur.execute(
            "update public.anomaly_events e set group_id = v.group_id"
            " from unnest(%(events)s::uuid[], %(groups)s::uuid[]) v(id, group_id) where e.id = v.id",
            {"events": [event_id for event_id, _ in joins], "groups": [group.id for _, group in joins]},
        )
    return written


def _params(org_id: UUID, project_id: UUID, summary: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "org": org_id,
        "project": project_id,
        "status": summary["status"],
        "started_at": summary["started_at"],
        "ended_at": summary["ended_at"],
        "shared": Jsonb({key: json.loads(value) for key, value in summary["shared"].items()}),
        "reason": summary["reason"],
        "peak_score": summary["peak_score"],
        "now": now,
    }
