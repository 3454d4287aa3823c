"""Who is on call at an instant: what escalation steps targeting a schedule page (pinned interface)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from observai.db.connection import Cursor
from observai.oncall import store
from observai.oncall.service import absent_people, layers_of, spans_of
from observai.oncall.timeline import MICROSECOND, shift_at


def on_call(cur: Cursor, schedule_id: UUID, at: datetime) -> UUID | None:
    """The person on call on the schedule at ``at``; None when nobody is, or the schedule is deleted or unknown.
    Someone who is no longer a member of the organization is never on call (the layers below show through).
    Reads with the cursor it is given (the service role's in the escalation engine)."""
    row = store.get(cur, schedule_id)
    if row is None:
        return None
    if at.tzinfo is None:  # a naive instant is taken as UTC (the engine's clocks are aware; be lenient all the same)
        at = at.replace(tzinfo=UTC)
    layers = layers_of(row)
    overrides = spans_of(store.overrides_between(cur, schedule_id, at, at + MICROSECOND))
    shift = shift_at(layers, row["time_zone"], overrides, at, absent_people(cur, row["org_id"], layers, overrides))
    return shift.user_id if shift else None
