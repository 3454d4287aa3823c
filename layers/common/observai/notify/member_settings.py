"""Each person's notification settings in an organization (``member_notification_settings``): whether they are
paged by e-mail, their Slack member id, and the Slack contact point that mentions them.

The member themself reads and changes theirs; admins and owners those of every member. API keys (bound to a
project) have no say. Someone else, or a user who is not a member, gets 404. A change is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from observai import audit
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import Cursor, transaction
from observai.errors import Conflict, NotFound, invalid_field
from observai.notify.contact_point_models import NotificationSettings, NotificationSettingsIn
from observai.tenancy import store as tenancy_store
from observai.tenancy.access import authorize_org


def _authorize(cur: Cursor, principal: Principal, org_id: UUID, user_id: UUID) -> None:
    if principal.kind != "user" or principal.user_id is None:
        raise NotFound("Organization not found", details={"org_id": str(org_id)})
    if principal.user_id == user_id:
        authorize_org(cur, principal, org_id, Action.ORG_READ)
        return
    authorize_org(cur, principal, org_id, Action.MEMBER_MANAGE)
    if tenancy_store.role_in_org(cur, org_id, user_id) is None:
        raise NotFound("Member not found", details={"user_id": str(user_id)})


def _read(cur: Cursor, org_id: UUID, user_id: UUID) -> NotificationSettings:
    cur.execute(
        "select email_enabled, slack_user_id, slack_team_id, slack_contact_point_id, updated_at"
        " from public.member_notification_settings where org_id = %s and user_id = %s",
        (org_id, user_id),
    )
    row: dict[str, Any] = dict(cur.fetchone() or {})
    return NotificationSettings(
        org_id=org_id,
        user_id=user_id,
        email_enabled=row.get("email_enabled", True),
        slack_user_id=row.get("slack_user_id"),
        slack_team_id=row.get("slack_team_id"),
        slack_contact_point_id=row.get("slack_contact_point_id"),
        updated_at=row.get("updated_at"),
    )


def get_settings(principal: Principal, org_id: UUID, user_id: UUID) -> NotificationSettings:
    """The member's settings (the defaults, e-mail on and no Slack, when they never set any)."""
    with transaction() as cur:
        _authorize(cur, principal, org_id, user_id)
        return _read(cur, org_id, user_id)


def put_settings(
    principal: Principal, org_id: UUID, user_id: UUID, body: NotificationSettingsIn, now: datetime | None = None
) -> NotificationSettings:
    """Replace the member's settings. The Slack contact point must be a live ``slack`` contact point of one of the
    organization's projects (422 otherwise); a Slack member id is one member's per organization (409)."""
    now = now or datetime.now(UTC)
    with transaction() as cur:
        _authorize(cur, principal, org_id, user_id)
        if body.slack_contact_point_id is not None:
            cur.execute(
                "select 1 from public.contact_points where id = %s and org_id = %s and kind = 'slack'"
                " and deleted_at is null",
                (body.slack_contact_point_id, org_id),
            )
            if cur.fetchone() is None:
                raise invalid_field(
                    ["body", "slack_contact_point_id"],
                    "not_found",
                    "not a slack contact point of this organization's projects",
                )
        before = _read(cur, org_id, user_id)
        try:
            with cur.connection.transaction():
                cur.execute(
                    "insert into public.member_notification_settings (org_id, user_id, email_enabled, slack_user_id,"
                    " slack_team_id, slack_contact_point_id, updated_at) values (%s, %s, %s, %s, %s, %s, %s)"
                    " on conflict (org_id, user_id) do update set email_enabled = excluded.email_enabled,"
                    " slack_user_id = excluded.slack_user_id, slack_team_id = excluded.slack_team_id,"
                    " slack_contact_point_id = excluded.slack_contact_point_id, updated_at = excluded.updated_at",
                    (
                        org_id,
                        user_id,
                        body.email_enabled,
                        body.slack_user_id,
                        body.slack_team_id,
                        body.slack_contact_point_id,
                        now,
                    ),
                )
        except psycopg.errors.UniqueViolation:
            raise Conflict(
                "Another member of this organization uses this Slack member id",
                code="slack_user_id_taken",
                details={"slack_user_id": body.slack_user_id},
            ) from None
        audit.record(
            cur,
            principal,
            "member.notification_settings.update",
            org_id=org_id,
            target_type="user",
            target_id=user_id,
            details={
                "before": before.model_dump(
                    mode="json", include={"email_enabled", "slack_user_id", "slack_team_id", "slack_contact_point_id"}
                ),
                "after": body.model_dump(mode="json"),
            },
        )
        return _read(cur, org_id, user_id)
