"""The delivery records of an incident over the API (``GET …/incidents/{id}/notifications``): what was sent to whom,
through which channel, how many attempts it took and what the receiver answered.

Read by anyone who may read the project (viewers and up, or a ``read`` key of the project), through the read role
(RLS applies). Another organization's project, or an incident of another project, is 404. No secret is in a record:
the channel's configuration is never copied into it, and receivers' errors are scrubbed of it when recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction
from observai.errors import NotFound
from observai.incidents import store as incidents_store
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_telemetry

DeliveryStatus = Literal["pending", "sending", "sent", "failed", "skipped"]


class NotificationDelivery(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    contact_point_id: UUID | None = Field(description="The contact point sent to (null for a person's e-mail)")
    contact_point_name: str | None = Field(description="Its name (kept when it was deleted since)")
    user_id: UUID | None = Field(description="The person paged by an escalation step, if any")
    channel: Literal["email", "slack", "pagerduty", "webhook"]
    event: Literal["trigger", "acknowledge", "resolve", "notify", "test"]
    source: Literal["route", "escalation", "test"]
    escalation_step: int | None = Field(description="The escalation step that paged (0 is the first)")
    attempts: int = Field(description="Attempts made (a delivery deferred by a rate limit does not count one)")
    status: DeliveryStatus = Field(
        description="pending (due, or waiting for its retry), sending, sent, failed (not retryable, or out of"
        " attempts, or the receiver disabled the contact point), skipped (the contact point was gone or disabled)"
    )
    response_code: int | None = Field(description="The receiver's HTTP status of the last attempt")
    error: str | None = Field(description="Why the last attempt failed, or why it was skipped")
    next_attempt_at: datetime | None = Field(description="When it is tried again (pending)")
    created_at: datetime
    sent_at: datetime | None


def list_for_incident(
    principal: Principal, project_id: UUID, incident_id: UUID, cursor: str | None, limit: int
) -> tuple[list[NotificationDelivery], str | None]:
    """The incident's deliveries, oldest first."""
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        if incidents_store.get(cur, project_id, incident_id) is None:
            raise NotFound("Incident not found", details={"incident_id": str(incident_id)})
        cur.execute(
            "select d.id, d.contact_point_id, c.name as contact_point_name, d.user_id, d.channel, d.event, d.source,"
            " d.escalation_step, d.attempts, d.status, d.response_code, d.error,"
            " case when d.status = 'pending' then d.next_attempt_at end as next_attempt_at, d.created_at, d.sent_at"
            " from public.notification_deliveries d"
            " left join public.contact_points c on c.id = d.contact_point_id"
            " where d.incident_id = %(incident)s and d.project_id = %(project)s"
            " and (%(after_ts)s::timestamptz is null or (d.created_at, d.id) > (%(after_ts)s, %(after_id)s::uuid))"
            " order by d.created_at, d.id limit %(limit)s",
            {"incident": incident_id, "project": project_id, "limit": limit + 1, **position},
        )
        rows, next_cursor = page([dict(r) for r in cur.fetchall()], limit, time_position())
    return [NotificationDelivery.model_validate(row) for row in rows], next_cursor
