"""The deliveries API: what was sent to an endpoint (each message with its attempts), and replays.

Who may do what:

* read an endpoint's deliveries: anyone who may read the project (viewer and up, or a ``read`` key of the
  project), through the read role, so the policies apply too;
* replay one message, or recover every failed message of an endpoint since a time: admins and owners (the
  project-update permission) or an ``admin`` key of the project, as for the endpoints themselves. Both are
  audited.

A replay starts a new attempt sequence (pending, due now, the attempt counter back to 0): the attempts already
recorded are kept, and the new ones are numbered from 1 again. Another organization's project, endpoint or message
is 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from observai import audit
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import NotFound
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_telemetry, authorize_webhooks_manage
from observai.webhooks.queue import send_wakeups

MessageStatus = Literal["pending", "delivering", "succeeded", "failed"]
# One recover call replays at most this many messages (oldest first); the answer says whether more remain.
RECOVER_LIMIT = 1000
# The attempts listed with each message (the newest ones).
ATTEMPTS_PER_MESSAGE = 20


class AttemptInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)
    attempt: int = Field(description="Its number in its attempt sequence (a replay starts again at 1)")
    at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null without an answer")
    duration_ms: int
    response_excerpt: str | None = Field(description="At most 1 kB of the receiver's response body")
    error: str | None = Field(description="Why there was no answer (timeout, connection refused, SSRF guard)")
    succeeded: bool


class DeliveryInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID = Field(description="The message id (replay it with POST .../webhooks/deliveries/{id}/retry)")
    endpoint_id: UUID
    event_id: UUID = Field(description="The webhook-id header: the event's id, the same for every attempt")
    event_type: str
    status: MessageStatus
    attempts: int = Field(description="Attempts in the current sequence")
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    created_at: datetime
    attempt_log: list[AttemptInfo] = Field(description="The latest attempts, oldest first")


class RetryInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    status: MessageStatus
    next_attempt_at: datetime | None


class RecoverInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)
    endpoint_id: UUID
    since: AwareDatetime
    replayed: int = Field(description="Failed messages put back in the queue")
    more: bool = Field(description="True when more failed messages remain: call again")


# A contact point's hidden endpoint (observai.notify) is not the webhooks API's: its messages are not replayed here.
_VISIBLE_ENDPOINT = "endpoint_id not in (select w.id from public.webhook_endpoints w where w.contact_point_owned)"


def list_deliveries(
    principal: Principal,
    project_id: UUID,
    endpoint_id: UUID,
    status: MessageStatus | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[DeliveryInfo], str | None]:
    """The endpoint's messages, newest first, each with its attempts."""
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        _endpoint(cur, project_id, endpoint_id)
        cur.execute(
            "select id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at, last_attempt_at,"
            " created_at from public.webhook_messages where endpoint_id = %(endpoint)s and project_id = %(project)s"
            " and (%(status)s::text is null or status = %(status)s)"
            " and (%(after_ts)s::timestamptz is null or (created_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
            " order by created_at desc, id desc limit %(limit)s",
            {"endpoint": endpoint_id, "project": project_id, "status": status, "limit": limit + 1, **position},
        )
        rows, next_cursor = page([dict(r) for r in cur.fetchall()], limit, time_position())
        attempts: dict[UUID, list[AttemptInfo]] = {row["id"]: [] for row in rows}
        if rows:
            cur.execute(
                "select message_id, attempt, at, status_code, duration_ms, response_excerpt, error, succeeded"
                " from (select a.*, row_number() over (partition by message_id order by id desc) as n"
                " from public.webhook_attempts a where message_id = any(%s)) recent"
                " where n <= %s order by message_id, id",
                (list(attempts), ATTEMPTS_PER_MESSAGE),
            )
            for a in cur.fetchall():
                attempts[a["message_id"]].append(AttemptInfo.model_validate(dict(a)))
    return [DeliveryInfo(**row, attempt_log=attempts[row["id"]]) for row in rows], next_cursor


def retry_message(principal: Principal, project_id: UUID, message_id: UUID, now: datetime) -> RetryInfo:
    """Replay one message now (a new attempt sequence). A message being delivered right now is left alone (409
    would only race it): it is answered as it is."""
    with transaction() as cur:
        org_id = _authorize_replay(cur, principal, project_id)
        cur.execute(
            "update public.webhook_messages set status = 'pending', attempts = 0, next_attempt_at = %s,"
            " lease_until = null where id = %s and project_id = %s and status <> 'delivering'"
            f" and {_VISIBLE_ENDPOINT} returning id, status, next_attempt_at",
            (now, message_id, project_id),
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(
                "select id, status, next_attempt_at from public.webhook_messages where id = %s and project_id = %s"
                f" and {_VISIBLE_ENDPOINT}",
                (message_id, project_id),
            )
            row = cur.fetchone()
            if row is None:
                raise NotFound("Webhook delivery not found", details={"message_id": str(message_id)})
            return RetryInfo.model_validate(dict(row))
        audit.record(
            cur,
            principal,
            "webhook.delivery.retry",
            org_id=org_id,
            target_type="webhook_message",
            target_id=message_id,
            details={"project_id": str(project_id)},
        )
    send_wakeups([(message_id, now)], now)
    return RetryInfo.model_validate(dict(row))


def recover(principal: Principal, project_id: UUID, endpoint_id: UUID, since: datetime, now: datetime) -> RecoverInfo:
    """Replay every failed message of the endpoint created since ``since`` (at most RECOVER_LIMIT a call)."""
    with transaction() as cur:
        org_id = _authorize_replay(cur, principal, project_id)
        _endpoint(cur, project_id, endpoint_id)
        cur.execute(
            "select id from public.webhook_messages where endpoint_id = %s and status = 'failed' and created_at >= %s"
            " order by created_at limit %s for update skip locked",
            (endpoint_id, since, RECOVER_LIMIT + 1),
        )
        ids = [row["id"] for row in cur.fetchall()]
        more = len(ids) > RECOVER_LIMIT  # one more than the limit was read to learn that more remain
        ids = ids[:RECOVER_LIMIT]
        cur.execute(
            "update public.webhook_messages set status = 'pending', attempts = 0, next_attempt_at = %s,"
            " lease_until = null where id = any(%s)",
            (now, ids),
        )
        audit.record(
            cur,
            principal,
            "webhook.recover",
            org_id=org_id,
            target_type="webhook_endpoint",
            target_id=endpoint_id,
            details={"project_id": str(project_id), "since": since.isoformat(), "replayed": len(ids)},
        )
    send_wakeups([(mid, now) for mid in ids], now)
    return RecoverInfo(endpoint_id=endpoint_id, since=since, replayed=len(ids), more=more)


def _authorize_replay(cur: Cursor, principal: Principal, project_id: UUID) -> UUID:
    """Who may change the project's webhooks may replay their messages: admins and owners, or an admin key."""
    return authorize_webhooks_manage(cur, principal, project_id)


def _endpoint(cur: Cursor, project_id: UUID, endpoint_id: UUID) -> dict[str, Any]:
    cur.execute(
        "select id from public.webhook_endpoints where id = %s and project_id = %s and deleted_at is null"
        " and not contact_point_owned",
        (endpoint_id, project_id),
    )
    row = cur.fetchone()
    if row is None:
        raise NotFound("Webhook endpoint not found", details={"endpoint_id": str(endpoint_id)})
    return dict(row)
