"""The append-only audit trail of every sensitive action: who, what, on what, when, from where."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.auth.principal import Principal
from observai.db.connection import Cursor

_INSERT = """
insert into public.audit_log
    (org_id, actor_type, actor_id, action, target_type, target_id, details, source_ip, user_agent, request_id)
values (%s, %s, %s, %s, %s, %s, %s, %s::inet, %s, %s)
"""


def record(
    cur: Cursor,
    actor: Principal | None,
    action: str,
    *,
    org_id: UUID | None,
    target_type: str | None = None,
    target_id: Any = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit row inside the caller's transaction, so the action and its record commit together."""
    cur.execute(
        _INSERT,
        (
            org_id,
            actor.actor_type if actor else "system",
            actor.actor_id if actor else None,
            action,
            target_type,
            str(target_id) if target_id is not None else None,
            Jsonb(details or {}),
            _valid_ip(actor.source_ip) if actor else None,
            (actor.user_agent or "")[:512] or None if actor else None,
            actor.request_id if actor else None,
        ),
    )


def _valid_ip(value: str | None) -> str | None:
    if not value:
        return None
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
