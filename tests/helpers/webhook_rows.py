"""Arranging webhook rows directly (the endpoints API is tested on its own): endpoints with real encrypted secrets,
outbox events emitted as the product emits them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg


def insert_endpoint(
    db: psycopg.Connection[Any],
    org_id: UUID,
    project_id: UUID,
    url: str,
    *,
    event_types: list[str] | None = None,
    enabled: bool = True,
    rate_limit_per_s: int | None = None,
    secret: str | None = None,
    deleted: bool = False,
) -> tuple[UUID, str]:
    """A webhook endpoint; (its id, its clear secret)."""
    from observai.webhooks import signing

    secret = secret or signing.new_secret()
    row = db.execute(
        "insert into public.webhook_endpoints (org_id, project_id, url, event_types, enabled, rate_limit_per_s,"
        " secret_ciphertext, secret_hint, deleted_at) values (%s, %s, %s, %s, %s, %s, %s, %s,"
        " case when %s then now() end) returning id",
        (
            org_id,
            project_id,
            url,
            event_types,
            enabled,
            rate_limit_per_s,
            signing.encrypt_secret(secret),
            secret[:10],
            deleted,
        ),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"])), secret


def emit_event(org_id: UUID, project_id: UUID | None, type: str, data: dict[str, Any], at: datetime) -> UUID:
    """An outbox event, committed, as alerting and incidents write them."""
    from observai import outbox
    from observai.db.connection import transaction

    with transaction() as cur:
        return outbox.emit(cur, org_id=org_id, project_id=project_id, type=type, data=data, at=at)


def messages(db: psycopg.Connection[Any], **where: Any) -> list[dict[str, Any]]:
    clause = " and ".join(f"{k} = %s" for k in where) or "true"
    return db.execute(
        f"select * from public.webhook_messages where {clause} order by created_at, id", tuple(where.values())
    ).fetchall()


def attempts(db: psycopg.Connection[Any], message_id: UUID) -> list[dict[str, Any]]:
    return db.execute(
        "select * from public.webhook_attempts where message_id = %s order by id", (message_id,)
    ).fetchall()


def fan_out_until_done(now_iso: str, limit: int) -> tuple[int, int]:
    """Run ``fan_out`` until no event is left (in a process of its own, for the overlap test); (events, messages)."""
    from observai.webhooks.fanout import fan_out

    events = created = 0
    while True:
        report = fan_out(datetime.fromisoformat(now_iso), limit)
        events += report.events
        created += report.messages
        if report.events == 0:
            return events, created


def deliver_in_process(message_ids: list[str], now_iso: str) -> dict[str, str]:
    """``deliver_many`` in a process of its own, with its own database connection (for the two-worker test): each
    message's outcome, or the name of the error it raised."""
    from uuid import UUID

    from observai.webhooks.delivery import deliver_many

    now = datetime.fromisoformat(now_iso)
    results = deliver_many([UUID(m) for m in message_ids], lambda: now)
    return {str(k): getattr(v, "outcome", type(v).__name__) for k, v in results.items()}
