"""Contact points over the API: create, list, read, change, delete, and send a test message.

Who may do what: admins and owners write (or an API key of the project with the ``admin`` scope): a contact point
sends the project's incidents somewhere outside, like a webhook endpoint (``authorize_webhooks_manage``); viewers and
up read (or a ``read`` key), never a secret. Another organization's project gets 404. Every write is audited.

At most ``MAX_PER_PROJECT`` live contact points a project, names unique among them (409). Secrets (the Slack URL,
the PagerDuty routing key) are sealed (observai.notify.secrets: KMS envelope encryption bound to the organization
and the contact point) before they are stored, and shown back only as ``secret_hint`` (the last 4 characters).

A ``webhook`` contact point owns a hidden webhook endpoint (``contact_point_owned``) created with it: the webhook
delivery engine signs, retries and records its messages. Its signing secret is in the creation's response only.
PATCH url changes the endpoint's URL; DELETE deletes it too (and fails its messages still waiting).

The test route sends a ``test`` message through the channel now (no transaction open while the receiver answers)
and returns what it answered; it is recorded as a ``notification_deliveries`` row (source and event ``test``), and
an answer that disables the contact point (Slack 404/410) disables it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import ValidationError

from observai import audit
from observai.auth.principal import Principal
from observai.config import Settings, get_settings
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, NotFound, invalid_field
from observai.notify import contact_points
from observai.notify import contact_points_store as store
from observai.notify.contact_point_models import (
    SETTINGS_PATCH,
    ContactPoint,
    ContactPointCreated,
    ContactPointDeleted,
    ContactPointIn,
    ContactPointPatch,
    ContactPointTestResult,
)
from observai.notify.message import Message, SendResult
from observai.notify.secrets import hint, seal
from observai.observability import logger
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_webhooks_manage, authorize_webhooks_read

MAX_PER_PROJECT = 50
DELETED_REASON = "the contact point was deleted before this message was delivered"
TEST_TITLE = "Test notification from ObservAI Hub"
TEST_TEXT = "This is a test message from ObservAI Hub: this contact point receives notifications."
_ERROR_MAX = 1000


def to_contact_point(row: dict[str, Any]) -> ContactPoint:
    return ContactPoint(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        kind=row["kind"],
        settings=dict(row["settings"] or {}),
        secret_hint=row["secret_hint"],
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _not_found(contact_point_id: UUID) -> NotFound:
    return NotFound("Contact point not found", details={"contact_point_id": str(contact_point_id)})


def _authorized_to_manage(principal: Principal, project_id: UUID) -> UUID:
    """The permission check alone, before work done outside the write's transaction (DNS, KMS)."""
    with transaction() as cur:
        return authorize_webhooks_manage(cur, principal, project_id)


def _actor_user(principal: Principal) -> UUID | None:
    return principal.user_id if principal.kind == "user" else None


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A contact point named {name!r} exists in this project already",
        code="contact_point_name_taken",
        details={"name": name},
    )


def _split_settings(kind: str, given: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(what is stored in clear, the secret) of a kind's settings."""
    if kind == "slack":
        return {}, given["url"]
    if kind == "pagerduty":
        stored = {"severity_map": given["severity_map"]} if given.get("severity_map") else {}
        return stored, given.get("routing_key")
    if kind == "email":
        return {"addresses": list(given["addresses"])}, None
    return {"url": given["url"]}, None


# --- writes -------------------------------------------------------------------------------------------------------


def create_contact_point(
    principal: Principal,
    project_id: UUID,
    body: ContactPointIn,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ContactPointCreated:
    now = now or datetime.now(UTC)
    settings = settings or get_settings()
    org_id = _authorized_to_manage(principal, project_id)
    given = body.settings.model_dump()
    stored, secret = _split_settings(body.kind, given)
    contact_point_id = uuid.uuid4()
    sealed = seal(secret, contact_points.secret_context(org_id, contact_point_id), settings) if secret else None
    signing_secret: str | None = None
    endpoint_id: UUID | None = None
    secret_hint = hint(secret) if secret else None
    if body.kind == "webhook":
        from observai.webhooks.endpoints import check_target
        from observai.webhooks.signing import encrypt_secret, new_secret
        from observai.webhooks.signing import secret_hint as whsec_hint

        check_target(stored["url"])
        signing_secret = new_secret()
        secret_hint = whsec_hint(signing_secret)
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        store.lock_project(cur, project_id)
        count = store.count_live(cur, project_id)
        if count >= MAX_PER_PROJECT:
            raise Conflict(
                f"This project has {count} contact points, the most it may have; delete one first",
                code="contact_point_limit_reached",
                details={"contact_points": count, "limit": MAX_PER_PROJECT},
            )
        if store.name_taken(cur, project_id, body.name):
            raise _name_taken(body.name)
        if signing_secret is not None:
            endpoint_id = store.insert_owned_endpoint(
                cur,
                org_id=org_id,
                project_id=project_id,
                url=stored["url"],
                description=f"contact point {body.name}",
                secret_ciphertext=encrypt_secret(signing_secret, settings),
                secret_hint=secret_hint or "",
                created_by=_actor_user(principal),
                now=now,
            )
        row = store.insert(
            cur,
            contact_point_id=contact_point_id,
            org_id=org_id,
            project_id=project_id,
            name=body.name,
            kind=body.kind,
            settings=stored,
            secret_sealed=sealed,
            secret_hint=secret_hint,
            webhook_endpoint_id=endpoint_id,
            enabled=body.enabled,
            created_by=_actor_user(principal),
            now=now,
        )
        audit.record(
            cur,
            principal,
            "contact_point.create",
            org_id=org_id,
            target_type="contact_point",
            target_id=contact_point_id,
            details={
                "project_id": str(project_id),
                "name": body.name,
                "kind": body.kind,
                "enabled": body.enabled,
                "settings": stored,
                "secret_hint": secret_hint,
            },
        )
    logger.info(
        "contact point created",
        extra={"contact_point_id": str(contact_point_id), "project_id": str(project_id), "kind": body.kind},
    )
    return ContactPointCreated(**to_contact_point(row).model_dump(), signing_secret=signing_secret)


def _validated_patch(kind: str, raw: dict[str, Any]) -> dict[str, Any]:
    try:
        model = SETTINGS_PATCH[kind].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise invalid_field(["body", "settings", *first["loc"]], str(first["type"]), str(first["msg"])) from None
    return model.model_dump(exclude_unset=True)


def update_contact_point(
    principal: Principal,
    project_id: UUID,
    contact_point_id: UUID,
    body: ContactPointPatch,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ContactPoint:
    """PATCH: the fields given replace theirs; ``settings`` merged (a secret given is sealed anew)."""
    now = now or datetime.now(UTC)
    settings = settings or get_settings()
    given = body.model_dump(exclude_unset=True)
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        current = store.get_with_secret(cur, project_id, contact_point_id)
    if current is None:
        raise _not_found(contact_point_id)
    kind = current["kind"]
    new_settings: dict[str, Any] | None = None
    sealed: bytes | None = None
    new_hint: str | None = None
    if "settings" in given:
        patch = _validated_patch(kind, given["settings"])
        stored, secret = _split_settings(kind, {**dict(current["settings"] or {}), **patch})
        if kind == "pagerduty" and "severity_map" in patch and not patch["severity_map"]:
            stored.pop("severity_map", None)
        if kind == "webhook":
            from observai.webhooks.endpoints import check_target

            check_target(stored["url"])
        new_settings = stored
        if secret is not None and (kind == "slack" or "routing_key" in patch):
            sealed = seal(secret, contact_points.secret_context(org_id, contact_point_id), settings)
            new_hint = hint(secret)
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        if "name" in given:
            store.lock_project(cur, project_id)
        row = store.get_for_update(cur, project_id, contact_point_id)
        if row is None:
            raise _not_found(contact_point_id)
        fields: dict[str, Any] = {}
        if "name" in given and given["name"] != row["name"]:
            if store.name_taken(cur, project_id, given["name"], other_than=contact_point_id):
                raise _name_taken(given["name"])
            fields["name"] = given["name"]
        if "enabled" in given and given["enabled"] != row["enabled"]:
            fields["enabled"] = given["enabled"]
            if given["enabled"]:
                fields.update(disabled_reason=None, disabled_at=None)
        reenable_endpoint = kind == "webhook" and given.get("enabled") is True
        if new_settings is not None and new_settings != dict(row["settings"] or {}):
            fields["settings"] = new_settings
        if sealed is not None:
            fields.update(secret_sealed=sealed, secret_hint=new_hint)
        if kind == "webhook" and row["webhook_endpoint_id"] is not None:
            # enabled=true also re-enables the endpoint the engine may have disabled (even if the contact point was
            # still enabled).
            store.update_owned_endpoint(
                cur,
                row["webhook_endpoint_id"],
                url=fields["settings"]["url"] if "settings" in fields else None,
                enabled=True if reenable_endpoint else None,
                now=now,
            )
        if not fields:
            return to_contact_point(row)
        updated = store.update(cur, contact_point_id, fields, now)
        changed = sorted(
            "secret" if k in ("secret_sealed", "secret_hint") else k
            for k in fields
            if k not in ("disabled_reason", "disabled_at")
        )
        details: dict[str, Any] = {"project_id": str(project_id), "changed": sorted(set(changed))}
        for key in ("name", "enabled", "settings"):
            if key in fields:
                details[key] = fields[key]
        if sealed is not None:
            details["secret_hint"] = new_hint
        if fields.get("enabled") is True and row["disabled_reason"] is not None:
            details["cleared_disabled_reason"] = row["disabled_reason"]
        audit.record(
            cur,
            principal,
            "contact_point.update",
            org_id=org_id,
            target_type="contact_point",
            target_id=contact_point_id,
            details=details,
        )
    logger.info(
        "contact point updated", extra={"contact_point_id": str(contact_point_id), "changed": details["changed"]}
    )
    return to_contact_point(updated)


def delete_contact_point(
    principal: Principal, project_id: UUID, contact_point_id: UUID, now: datetime | None = None
) -> ContactPointDeleted:
    """Soft delete: gone from every read and route, its secret dropped; a webhook contact point's endpoint is
    deleted too (its messages still waiting fail); people whose Slack contact point it was lose it."""
    from observai.webhooks import endpoints_store as webhooks_store

    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        row = store.get_for_update(cur, project_id, contact_point_id)
        if row is None:
            raise _not_found(contact_point_id)
        store.soft_delete(cur, contact_point_id, now)
        stopped = 0
        if row["webhook_endpoint_id"] is not None:
            stopped = webhooks_store.stop_pending_messages(cur, row["webhook_endpoint_id"], DELETED_REASON)
            webhooks_store.soft_delete(cur, row["webhook_endpoint_id"], now)
        cleared = store.clear_member_slack(cur, contact_point_id, now)
        audit.record(
            cur,
            principal,
            "contact_point.delete",
            org_id=org_id,
            target_type="contact_point",
            target_id=contact_point_id,
            details={
                "project_id": str(project_id),
                "name": row["name"],
                "kind": row["kind"],
                "stopped_messages": stopped,
                "members_unset": cleared,
            },
        )
    logger.info("contact point deleted", extra={"contact_point_id": str(contact_point_id)})
    return ContactPointDeleted(id=contact_point_id)


def make_test_message(delivery_id: UUID, project_id: UUID) -> Message:
    return Message(
        event="test",
        title=TEST_TITLE,
        text=TEST_TEXT,
        severity="info",
        incident=None,
        dedup_key=f"test-{delivery_id}",
        delivery_id=str(delivery_id),
    )


def send_test(
    principal: Principal,
    project_id: UUID,
    contact_point_id: UUID,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> ContactPointTestResult:
    """Send a test message now (also to a disabled contact point: a check before re-enabling it)."""
    from observai.notify import channels

    now = now or datetime.now(UTC)
    settings = settings or get_settings()
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        row = store.get_with_secret(cur, project_id, contact_point_id)
        if row is None:
            raise _not_found(contact_point_id)
        config = contact_points.channel_config(cur, row, settings)
    delivery_id = uuid.uuid4()
    result = channels.send(row["kind"], config, make_test_message(delivery_id, project_id), settings=settings)
    del config
    with transaction() as cur:
        _record_test(cur, org_id, project_id, row, delivery_id, result, now)
        disabled = False
        if result.disable_reason:
            disabled = contact_points.disable(cur, contact_point_id, result.disable_reason, now)
        audit.record(
            cur,
            principal,
            "contact_point.test",
            org_id=org_id,
            target_type="contact_point",
            target_id=contact_point_id,
            details={
                "project_id": str(project_id),
                "delivery_id": str(delivery_id),
                "ok": result.ok,
                "status_code": result.status_code,
                "duration_ms": result.duration_ms,
                "error": result.error,
                "disabled": disabled,
            },
        )
    logger.info(
        "contact point test sent",
        extra={
            "contact_point_id": str(contact_point_id),
            "kind": row["kind"],
            "ok": result.ok,
            "status_code": result.status_code,
            "duration_ms": result.duration_ms,
        },
    )
    return ContactPointTestResult(
        delivery_id=delivery_id,
        ok=result.ok,
        status_code=result.status_code,
        duration_ms=result.duration_ms,
        response_excerpt=result.response_excerpt,
        error=result.error,
        retryable=result.retryable,
        disabled_reason=result.disable_reason,
    )


def _record_test(
    cur: Cursor,
    org_id: UUID,
    project_id: UUID,
    row: dict[str, Any],
    delivery_id: UUID,
    result: SendResult,
    now: datetime,
) -> None:
    cur.execute(
        "insert into public.notification_deliveries (id, org_id, project_id, contact_point_id, channel, event, source,"
        " idempotency_key, payload, status, attempts, response_code, error, created_at, updated_at, sent_at)"
        " values (%s, %s, %s, %s, %s, 'test', 'test', %s, %s, %s, 1, %s, %s, %s, %s, %s)",
        (
            delivery_id,
            org_id,
            project_id,
            row["id"],
            row["kind"],
            f"test:{delivery_id}",
            Jsonb({"title": TEST_TITLE}),
            "sent" if result.ok else "failed",
            result.status_code,
            (result.error or None) and str(result.error)[:_ERROR_MAX],
            now,
            now,
            now if result.ok else None,
        ),
    )


# --- reads --------------------------------------------------------------------------------------------------------


def get_contact_point(principal: Principal, project_id: UUID, contact_point_id: UUID) -> ContactPoint:
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_webhooks_read(cur, principal, project_id)
        row = store.get(cur, project_id, contact_point_id)
    if row is None:
        raise _not_found(contact_point_id)
    return to_contact_point(row)


def list_contact_points(
    principal: Principal, project_id: UUID, kind: str | None, cursor: str | None, limit: int
) -> tuple[list[ContactPoint], str | None]:
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_webhooks_read(cur, principal, project_id)
        rows = store.list_page(cur, project_id, kind, position["after_ts"], position["after_id"], limit + 1)
    rows, next_cursor = page(rows, limit, time_position())
    return [to_contact_point(row) for row in rows], next_cursor
