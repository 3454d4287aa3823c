"""An incident's timeline: every alert transition, notification, acknowledgment, comment and assignment, with its
actor and time, appended in the transaction of the change it records."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from observai.auth.principal import Principal
from observai.db.connection import Cursor


def record(
    cur: Cursor,
    incident: Mapping[str, Any],
    *,
    kind: str,
    at: datetime,
    actor: Principal | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append one event to ``incident`` (a row with id, org_id, project_id); its id. ``actor`` None is the system
    (the evaluator, the dispatcher, a timer)."""
    if actor is None:
        actor_type, actor_id = "system", None
    elif actor.kind == "user":
        actor_type, actor_id = "user", actor.user_id
    elif actor.kind == "link":  # a signed link that names no person (observai.notify.links)
        actor_type, actor_id = "link", None
    else:
        actor_type, actor_id = "api_key", actor.key_id
    cur.execute(
        "insert into public.incident_events (org_id, project_id, incident_id, at, kind, actor_type, actor_id, details)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s) returning id",
        (
            incident["org_id"],
            incident["project_id"],
            incident["id"],
            at,
            kind,
            actor_type,
            actor_id,
            Jsonb(dict(details or {})),
        ),
    )
    row = cur.fetchone()
    assert row is not None
    return int(row["id"])
