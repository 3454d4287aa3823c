"""Snooze expiry: a snoozed incident is acknowledged until its time, then triggered again (it pages again).

Run every minute (IncidentTimersFunction). Each call is one bounded transaction: at most ``limit`` incidents,
claimed with FOR UPDATE SKIP LOCKED, so overlapping runs never wake the same incident twice and never wait on
each other or on an action holding an incident's row lock (that incident is taken by the next run).
"""

from __future__ import annotations

from datetime import datetime

from observai.db.connection import transaction
from observai.incidents import lifecycle, store, timeline


def wake_snoozed(now: datetime, limit: int) -> int:
    """Trigger again the incidents whose snooze ended by ``now`` (at most ``limit``); how many were woken."""
    with transaction() as cur:
        due = store.claim_snoozed_due(cur, now, limit)
        for incident in due:
            updated = store.update(
                cur,
                incident["id"],
                now,
                status="triggered",
                acknowledged_at=None,
                acknowledged_by=None,
                snoozed_until=None,
            )
            timeline.record(
                cur,
                incident,
                kind="unsnoozed",
                at=now,
                details={"snoozed_until": incident["snoozed_until"].isoformat()},
            )
            lifecycle.emit_incident_event(cur, updated, "incident.triggered", now, reason="snooze ended")
    return len(due)
