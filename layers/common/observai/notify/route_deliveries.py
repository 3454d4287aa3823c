"""A route's notification to its contact points: when the dispatcher writes a notification_log entry for a route
(first, changed, repeat or resolved), each live contact point the route names gets one delivery record, in the
dispatcher's transaction (observai.notify.hooks), woken on the notification queue after its commit.

The idempotency key ``route:{log_id}:{contact_point_id}`` makes it once-only: the log entry is written once per
group flush (its unique group and seq), and a retried flush writes the same keys. A name that does not resolve to a
live contact point of the project (deleted, renamed, disabled) is skipped with a warning and a note on the
incident's timeline, so the gap is visible where people look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from observai.db.connection import Cursor
from observai.notify.deliveries_enqueue import DeliveryRequest, enqueue
from observai.observability import logger

# The payload keeps at most this many alert entries of each kind (the log has them all).
MAX_ENTRIES = 50


def _names(receivers: Mapping[str, Any]) -> list[str]:
    names = receivers.get("contact_points") or []
    return list(dict.fromkeys(str(n) for n in names if isinstance(n, str) and n))


def on_route_notification(
    cur: Cursor,
    log: Mapping[str, Any],
    receivers: Mapping[str, Any],
    incident: Mapping[str, Any] | None,
    firing: Sequence[Mapping[str, Any]],
    resolved: Sequence[Mapping[str, Any]],
    now: datetime,
) -> list[UUID]:
    """One ``notify`` delivery per live contact point of the route; the ids recorded now (a repeat records none)."""
    from observai.incidents import timeline
    from observai.notify import contact_points

    names = _names(receivers)
    if not names:
        return []
    project_id = log["project_id"]
    points = contact_points.by_names(cur, project_id, names)
    found = {p["name"] for p in points}
    missing = [n for n in names if n not in found]
    if missing:
        logger.warning(
            "route names contact points that do not exist or are disabled",
            extra={"project_id": str(project_id), "route_id": receivers.get("route_id"), "names": missing},
        )
        if incident is not None:
            timeline.record(
                cur,
                incident,
                kind="notification_skipped",
                at=now,
                details={
                    "contact_points": missing,
                    "why": "no enabled contact point of this name in the project",
                    "route_id": receivers.get("route_id"),
                    "notification_id": log["id"],
                },
            )
    payload = {
        "reason": log.get("reason"),
        "firing": [dict(e) for e in firing[:MAX_ENTRIES]],
        "resolved": [dict(e) for e in resolved[:MAX_ENTRIES]],
        "firing_count": len(firing),
        "resolved_count": len(resolved),
        "group": {"id": str(log["group_id"]), "seq": log.get("seq"), "route_id": receivers.get("route_id")},
    }
    ids: list[UUID] = []
    for point in points:
        delivery_id = enqueue(
            cur,
            DeliveryRequest(
                org_id=log["org_id"],
                project_id=project_id,
                channel=point["kind"],
                event="notify",
                source="route",
                key=f"route:{log['id']}:{point['id']}",
                incident_id=incident["id"] if incident is not None else None,
                contact_point_id=point["id"],
                notification_log_id=int(log["id"]),
                payload=payload,
            ),
            now,
        )
        if delivery_id is not None:
            ids.append(delivery_id)
    return ids
