"""Webhook endpoints over the API: subscribe, list, read, change, delete, rotate the secret, send a test event.

Who may do what:

* write (create, patch, delete, rotate-secret, test): admins and owners, or an API key bound to the project with
  the ``admin`` scope (``tenancy.access.authorize_webhooks_manage``). An endpoint ships the project's events to
  any URL on the internet, so it is an admin's decision, like an API key;
* read (list, get): viewers and up, or a ``read`` (or ``admin``) key of the project. Never the secret.

Another organization's project, or another project's key, gets 404 (existence is not revealed).

The secret (``whsec_`` + base64 of 32 random bytes) is stored encrypted and returned only by create and
rotate-secret; reads show ``secret_hint``. Rotation keeps the replaced secret signing for ``SECRET_OVERLAP``
(24 h): a message is signed with both (space-separated signatures), so receivers switch secrets without losing
one. Rotating again within those 24 hours replaces the previous secret with the one being rotated out: only the
two newest secrets ever sign.

Targets are checked twice: the syntax (https outside local stages, allowed ports) on every request, and, at
creation and at every URL change, the SSRF guard's ``check_url`` (the host must resolve to public addresses only).
The delivery engine checks again at every delivery (DNS may change).

The test route sends a ``webhook.test`` event right now, signed as a real delivery, and returns what the receiver
answered. It records no message and no attempt (a test is not an event of the project: it must not appear among
the deliveries, count towards the endpoint's failures, or be retried); only the audit trail records it.

Deleting is a soft delete: the endpoint disappears from every read, a secret in rotation is dropped, and its
messages still waiting for delivery fail at once (``failure_reason``), so none is sent or retried to it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from observai import audit
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, NotFound, Unprocessable
from observai.observability import logger
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_webhooks_manage, authorize_webhooks_read
from observai.webhooks import endpoints_store as store
from observai.webhooks.endpoint_models import (
    TEST_EVENT_TYPE,
    WebhookEndpoint,
    WebhookEndpointDeleted,
    WebhookEndpointIn,
    WebhookEndpointPatch,
    WebhookEndpointWithSecret,
    WebhookTestResult,
)

MAX_ENDPOINTS_PER_PROJECT = 20
SECRET_OVERLAP = timedelta(hours=24)
DELETED_REASON = "the endpoint was deleted before this message was delivered"
TEST_MESSAGE = "This is a test event from ObservAI Hub: your endpoint is receiving webhooks."


# --- rows ---------------------------------------------------------------------------------------------------------


def to_endpoint(row: dict[str, Any], now: datetime | None = None) -> WebhookEndpoint:
    now = now or datetime.now(UTC)
    previous_until = row["previous_secret_expires_at"]
    return WebhookEndpoint(
        id=row["id"],
        project_id=row["project_id"],
        url=row["url"],
        description=row["description"],
        event_types=row["event_types"],
        enabled=row["enabled"],
        rate_limit_per_s=row["rate_limit_per_s"],
        secret_hint=row["secret_hint"],
        # Past its expiry the previous secret no longer signs: say so, whatever the row still holds.
        previous_secret_expires_at=previous_until if previous_until is not None and previous_until > now else None,
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        failing_since=row["failing_since"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _with_secret(row: dict[str, Any], secret: str, now: datetime) -> WebhookEndpointWithSecret:
    return WebhookEndpointWithSecret(**to_endpoint(row, now).model_dump(), secret=secret)


def signing_secrets(row: dict[str, Any], now: datetime) -> list[str]:
    """The secrets a message to the endpoint is signed with at ``now``: the current one, then the previous one
    while its rotation overlap lasts. ``row`` holds the ciphertext columns (``store.SECRET_COLUMNS``)."""
    from observai.webhooks.signing import decrypt_secret

    secrets = [decrypt_secret(bytes(row["secret_ciphertext"]))]
    previous, until = row["previous_secret_ciphertext"], row["previous_secret_expires_at"]
    if previous is not None and until is not None and until > now:
        secrets.append(decrypt_secret(bytes(previous)))
    return secrets


def _not_found(endpoint_id: UUID) -> NotFound:
    return NotFound("Webhook endpoint not found", details={"endpoint_id": str(endpoint_id)})


def _new_secret() -> tuple[str, bytes, str]:
    """A new secret, its ciphertext and its hint."""
    from observai.webhooks.signing import encrypt_secret, new_secret, secret_hint

    secret = new_secret()
    return secret, encrypt_secret(secret), secret_hint(secret)


def check_target(url: str) -> None:
    """Refuse a URL whose host does not resolve, or resolves to an address deliveries must never reach (loopback,
    private, link-local, metadata...): 422 ``unsafe_url`` at ``["body", "url"]`` with the guard's reason."""
    from observai.webhooks.ssrf import UnsafeTarget, check_url

    try:
        check_url(url)
    except UnsafeTarget as exc:
        raise Unprocessable(
            f"The URL is not a safe webhook target: {exc.reason}",
            code="unsafe_url",
            details=[{"loc": ["body", "url"], "type": "unsafe_url", "message": exc.reason}],
        ) from None


def _authorized_to_manage(principal: Principal, project_id: UUID) -> None:
    """The permission check alone, before work done outside a transaction (a DNS lookup): a caller who may not
    manage the project's webhooks learns nothing of how our resolver sees a host."""
    with transaction() as cur:
        authorize_webhooks_manage(cur, principal, project_id)


def _actor_user(principal: Principal) -> UUID | None:
    return principal.user_id if principal.kind == "user" else None


# --- writes -------------------------------------------------------------------------------------------------------


def create_endpoint(
    principal: Principal, project_id: UUID, body: WebhookEndpointIn, now: datetime | None = None
) -> WebhookEndpointWithSecret:
    """Save the endpoint with a new secret; the secret is in this response only."""
    now = now or datetime.now(UTC)
    _authorized_to_manage(principal, project_id)
    check_target(body.url)
    secret, ciphertext, hint = _new_secret()
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        store.lock_project(cur, project_id)
        count = store.count_live(cur, project_id)
        if count >= MAX_ENDPOINTS_PER_PROJECT:
            raise Conflict(
                f"This project has {count} webhook endpoints, the most it may have; delete one first",
                code="webhook_limit_reached",
                details={"endpoints": count, "limit": MAX_ENDPOINTS_PER_PROJECT},
            )
        row = store.insert(
            cur,
            org_id=org_id,
            project_id=project_id,
            url=body.url,
            description=body.description,
            event_types=body.event_types,
            enabled=body.enabled,
            rate_limit_per_s=body.rate_limit_per_s,
            secret_ciphertext=ciphertext,
            secret_hint=hint,
            created_by=_actor_user(principal),
            now=now,
        )
        audit.record(
            cur,
            principal,
            "webhook.create",
            org_id=org_id,
            target_type="webhook_endpoint",
            target_id=row["id"],
            details={
                "project_id": str(project_id),
                "url": body.url,
                "event_types": body.event_types,
                "enabled": body.enabled,
                "secret_hint": hint,
            },
        )
    logger.info("webhook endpoint created", extra={"endpoint_id": str(row["id"]), "project_id": str(project_id)})
    return _with_secret(row, secret, now)


def update_endpoint(
    principal: Principal,
    project_id: UUID,
    endpoint_id: UUID,
    body: WebhookEndpointPatch,
    now: datetime | None = None,
) -> WebhookEndpoint:
    """PATCH: the fields given replace theirs. Re-enabling clears what the delivery engine left (disabled_reason,
    disabled_at, failing_since); a new URL starts a new run (failing_since cleared) after passing the SSRF guard."""
    now = now or datetime.now(UTC)
    given = body.model_dump(exclude_unset=True)
    if "url" in given:
        _authorized_to_manage(principal, project_id)
        check_target(given["url"])
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        row = store.get_for_update(cur, project_id, endpoint_id)
        if row is None:
            raise _not_found(endpoint_id)
        changes = {key: value for key, value in given.items() if row[key] != value}
        if not changes:
            return to_endpoint(row, now)
        fields = dict(changes)
        if "url" in changes:
            fields["failing_since"] = None
        if changes.get("enabled") is True:
            fields.update(disabled_reason=None, disabled_at=None, failing_since=None)
        updated = store.update(cur, endpoint_id, fields, now)
        details: dict[str, Any] = {"project_id": str(project_id), "changed": sorted(changes)}
        for key in ("url", "enabled", "event_types"):
            if key in changes:
                details[key] = changes[key]
        if changes.get("enabled") is True and row["disabled_reason"] is not None:
            details["cleared_disabled_reason"] = row["disabled_reason"]
        audit.record(
            cur,
            principal,
            "webhook.update",
            org_id=org_id,
            target_type="webhook_endpoint",
            target_id=endpoint_id,
            details=details,
        )
    logger.info("webhook endpoint updated", extra={"endpoint_id": str(endpoint_id), "changed": sorted(changes)})
    return to_endpoint(updated, now)


def delete_endpoint(
    principal: Principal, project_id: UUID, endpoint_id: UUID, now: datetime | None = None
) -> WebhookEndpointDeleted:
    """Soft-delete the endpoint and fail its messages still waiting for delivery (see the module)."""
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        row = store.get_for_update(cur, project_id, endpoint_id)
        if row is None:
            raise _not_found(endpoint_id)
        stopped = store.stop_pending_messages(cur, endpoint_id, DELETED_REASON)
        store.soft_delete(cur, endpoint_id, now)
        audit.record(
            cur,
            principal,
            "webhook.delete",
            org_id=org_id,
            target_type="webhook_endpoint",
            target_id=endpoint_id,
            details={"project_id": str(project_id), "url": row["url"], "stopped_messages": stopped},
        )
    logger.info("webhook endpoint deleted", extra={"endpoint_id": str(endpoint_id), "stopped_messages": stopped})
    return WebhookEndpointDeleted(id=endpoint_id, stopped_messages=stopped)


def rotate_secret(
    principal: Principal, project_id: UUID, endpoint_id: UUID, now: datetime | None = None
) -> WebhookEndpointWithSecret:
    """A new secret, in this response only; the one it replaces keeps signing for SECRET_OVERLAP."""
    now = now or datetime.now(UTC)
    secret, ciphertext, hint = _new_secret()
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        row = store.get_for_update(cur, project_id, endpoint_id)
        if row is None:
            raise _not_found(endpoint_id)
        previous_until = now + SECRET_OVERLAP
        updated = store.rotate_secret(
            cur,
            endpoint_id,
            secret_ciphertext=ciphertext,
            secret_hint=hint,
            previous_secret_ciphertext=bytes(row["secret_ciphertext"]),
            previous_expires_at=previous_until,
            now=now,
        )
        audit.record(
            cur,
            principal,
            "webhook.rotate_secret",
            org_id=org_id,
            target_type="webhook_endpoint",
            target_id=endpoint_id,
            details={
                "project_id": str(project_id),
                "secret_hint": hint,
                "previous_secret_hint": row["secret_hint"],
                "previous_secret_expires_at": previous_until.isoformat(),
            },
        )
    logger.info("webhook secret rotated", extra={"endpoint_id": str(endpoint_id)})
    return _with_secret(updated, secret, now)


def webhook_test_event(endpoint_id: UUID, project_id: UUID, now: datetime) -> dict[str, Any]:
    """The ``webhook.test`` event, in the envelope of every event (``observai.outbox``)."""
    return {
        "type": TEST_EVENT_TYPE,
        "timestamp": now.isoformat(),
        "data": {"endpoint_id": str(endpoint_id), "project_id": str(project_id), "message": TEST_MESSAGE},
    }


def send_test(
    principal: Principal, project_id: UUID, endpoint_id: UUID, now: datetime | None = None
) -> WebhookTestResult:
    """Send a ``webhook.test`` event to the endpoint now (also when disabled: a check before re-enabling it), signed
    with its current secrets, through the delivery engine's sender (the SSRF guard, the timeout, no redirects).
    Nothing is recorded but the audit row; no transaction is open while the receiver answers."""
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_webhooks_manage(cur, principal, project_id)
        row = store.get_with_secrets(cur, project_id, endpoint_id)
        if row is None:
            raise _not_found(endpoint_id)
    secrets = signing_secrets(row, now)
    webhook_id = str(uuid.uuid4())
    body = json.dumps(webhook_test_event(endpoint_id, project_id, now), separators=(",", ":")).encode()

    from observai.webhooks.sender import deliver

    attempt = deliver(row["url"], msg_id=webhook_id, body=body, secrets=secrets, now=now)
    result = WebhookTestResult(
        webhook_id=webhook_id,
        succeeded=bool(attempt.succeeded),
        status_code=attempt.status_code,
        duration_ms=attempt.duration_ms,
        response_excerpt=attempt.response_excerpt,
        error=attempt.error,
    )
    with transaction() as cur:
        _record_test(cur, principal, org_id, project_id, endpoint_id, result)
    logger.info(
        "webhook test sent",
        extra={
            "endpoint_id": str(endpoint_id),
            "status_code": result.status_code,
            "duration_ms": result.duration_ms,
            "succeeded": result.succeeded,
        },
    )
    return result


def _record_test(
    cur: Cursor, principal: Principal, org_id: UUID, project_id: UUID, endpoint_id: UUID, result: WebhookTestResult
) -> None:
    audit.record(
        cur,
        principal,
        "webhook.test",
        org_id=org_id,
        target_type="webhook_endpoint",
        target_id=endpoint_id,
        details={
            "project_id": str(project_id),
            "webhook_id": result.webhook_id,
            "succeeded": result.succeeded,
            "status_code": result.status_code,
            "duration_ms": result.duration_ms,
            "error": result.error,
        },
    )


# --- reads --------------------------------------------------------------------------------------------------------


def get_endpoint(principal: Principal, project_id: UUID, endpoint_id: UUID) -> WebhookEndpoint:
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_webhooks_read(cur, principal, project_id)
        row = store.get(cur, project_id, endpoint_id)
    if row is None:
        raise _not_found(endpoint_id)
    return to_endpoint(row)


def list_endpoints(
    principal: Principal, project_id: UUID, cursor: str | None, limit: int
) -> tuple[list[WebhookEndpoint], str | None]:
    """The project's endpoints, newest first."""
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_webhooks_read(cur, principal, project_id)
        rows = store.list_page(cur, project_id, position["after_ts"], position["after_id"], limit + 1)
    rows, next_cursor = page(rows, limit, time_position())
    now = datetime.now(UTC)
    return [to_endpoint(row, now) for row in rows], next_cursor
