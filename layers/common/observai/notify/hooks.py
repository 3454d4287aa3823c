"""Where alerting and incidents hand over to paging, inside the transaction of the change that causes the page (so
a rolled-back change pages nobody, and a committed one is never forgotten: the records are rows, their queue
messages leave after the commit, and a sweep sends whatever a lost message left behind).

* ``on_route_notification``: the dispatcher wrote a notification_log entry for a route. Its contact points get a
  delivery each (observai.notify.route_deliveries); its escalation policy starts paging for the incident, once
  per incident (observai.escalation.engine).
* ``on_incident_event``: an incident was triggered (opened, unacknowledged, its snooze ended), acknowledged or
  resolved. The escalation halts, resumes or stops; channels that follow an incident (PagerDuty) are told; the AI
  worker summarizes it (observai.ai.tasks, organizations that opted in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from observai.ai import tasks as ai_tasks
from observai.db.connection import Cursor
from observai.escalation import engine as escalation
from observai.notify import route_deliveries


def on_route_notification(
    cur: Cursor,
    *,
    log: Mapping[str, Any],
    receivers: Mapping[str, Any],
    incident: Mapping[str, Any] | None,
    firing: Sequence[Mapping[str, Any]],
    resolved: Sequence[Mapping[str, Any]],
    now: datetime,
) -> None:
    """``log`` is the notification_log row (id, org_id, project_id, group_id, seq, reason); ``receivers`` the
    route's ``{"route_id", "contact_points": [names], "escalation_policy": name | None}``; ``firing`` and
    ``resolved`` the alerts' entries as logged."""
    route_deliveries.on_route_notification(cur, log, receivers, incident, firing, resolved, now)
    escalation.on_route_notification(cur, log, receivers, incident, now)


def on_incident_event(cur: Cursor, incident: Mapping[str, Any], type: str, now: datetime) -> None:
    """``type`` is incident.triggered, incident.acknowledged or incident.resolved; ``incident`` the row after the
    change (its status says which)."""
    escalation.on_incident_event(cur, incident, type, now)
    ai_tasks.on_incident_event(cur, incident, type, now)
