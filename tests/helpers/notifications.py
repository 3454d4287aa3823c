"""Notification test helpers: a project with an incident (opened by a real group flush), delivery records written
through ``deliveries_enqueue.enqueue`` as the paging parts do, and reads of the rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush
from tests.helpers.ingest import IngestProject, make_project


@dataclass
class Paged:
    project: IngestProject
    incident: dict[str, Any]
    group_id: UUID


def project_with_incident(db: psycopg.Connection[Any], at: datetime, *, label: str = "Paging") -> Paged:
    project = make_project(("read",), label=label)
    rule = arrange_rule(db, project.org_id, project.project_id, severity="critical")
    alert = arrange_alert(db, rule, at=at, summary="p95 latency over 500 ms", n=uuid.uuid4().hex[:6])
    group_id = arrange_group(db, project.org_id, project.project_id)
    result = flush(group_id, firing=[alert], now=at)
    incident = db.execute("select * from public.incidents where id = %s", (result["id"],)).fetchone()
    assert incident is not None
    return Paged(project, dict(incident), group_id)


def enqueue_email(
    paged: Paged, at: datetime, *, to: str = "oncall@example.test", key: str | None = None
) -> UUID | None:
    """A person's e-mail delivery about the incident (as an escalation step records it)."""
    from observai.db.connection import transaction
    from observai.notify.deliveries_enqueue import DeliveryRequest, enqueue

    with transaction() as cur:
        return enqueue(
            cur,
            DeliveryRequest(
                org_id=paged.project.org_id,
                project_id=paged.project.project_id,
                channel="email",
                event="trigger",
                source="escalation",
                key=key or f"test:{uuid.uuid4().hex}",
                incident_id=paged.incident["id"],
                user_id=uuid.uuid4(),
                escalation_step=0,
                payload={"to": to},
            ),
            at,
        )


def delivery(db: psycopg.Connection[Any], delivery_id: UUID) -> dict[str, Any]:
    row = db.execute("select * from public.notification_deliveries where id = %s", (delivery_id,)).fetchone()
    assert row is not None
    return dict(row)


def timeline_kinds(db: psycopg.Connection[Any], incident_id: UUID) -> list[tuple[str, dict[str, Any]]]:
    rows = db.execute(
        "select kind, details from public.incident_events where incident_id = %s order by id", (incident_id,)
    ).fetchall()
    return [(r["kind"], r["details"]) for r in rows]


def insert_contact_point(
    db: psycopg.Connection[Any],
    org_id: UUID,
    project_id: UUID,
    kind: str,
    *,
    name: str | None = None,
    secret: str | None = None,
    settings: dict[str, Any] | None = None,
) -> UUID:
    """A contact point row as the contact points API leaves it: its secret sealed (observai.notify.secrets, with the
    KMS key of the settings in force, or the development key of the test stage) and its hint."""
    from observai.config import get_settings
    from observai.notify.contact_points import secret_context
    from observai.notify.secrets import hint, seal
    from psycopg.types.json import Jsonb

    point_id = uuid.uuid4()
    sealed = seal(secret, secret_context(org_id, point_id), get_settings()) if secret is not None else None
    db.execute(
        "insert into public.contact_points (id, org_id, project_id, name, kind, settings, secret_sealed, secret_hint)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            point_id,
            org_id,
            project_id,
            name or f"{kind}-{uuid.uuid4().hex[:8]}",
            kind,
            Jsonb(settings or {}),
            sealed,
            hint(secret) if secret is not None else None,
        ),
    )
    return point_id


def enqueue_to(
    paged: Paged, contact_point_id: UUID, channel: str, at: datetime, *, event: str = "trigger", key: str | None = None
) -> UUID | None:
    """A delivery to a contact point about the incident (as an escalation step records it)."""
    from observai.db.connection import transaction
    from observai.notify.deliveries_enqueue import DeliveryRequest, enqueue

    with transaction() as cur:
        return enqueue(
            cur,
            DeliveryRequest(
                org_id=paged.project.org_id,
                project_id=paged.project.project_id,
                channel=channel,  # type: ignore[arg-type]
                event=event,  # type: ignore[arg-type]
                source="escalation",
                key=key or f"test:{uuid.uuid4().hex}",
                incident_id=paged.incident["id"],
                contact_point_id=contact_point_id,
                escalation_step=0,
            ),
            at,
        )
