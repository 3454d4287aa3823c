"""How a person is reached within an organization: their Supabase Auth e-mail address (unless they turned e-mail
off) and their Slack contact point with their Slack member id; and who a Slack member id is."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from observai.db.connection import Cursor


@dataclass(frozen=True)
class Reach:
    user_id: UUID
    email: str | None  # None: no address, or e-mail turned off
    slack_contact_point_id: UUID | None
    slack_user_id: str | None


def reach(cur: Cursor, org_id: UUID, user_id: UUID) -> Reach | None:
    """The member's channels; None when they are not a member of the organization (any more)."""
    cur.execute(
        "select u.email::text as email, coalesce(s.email_enabled, true) as email_enabled,"
        " s.slack_user_id, c.id as slack_contact_point_id"
        " from public.memberships m join auth.users u on u.id = m.user_id"
        " left join public.member_notification_settings s on s.org_id = m.org_id and s.user_id = m.user_id"
        " left join public.contact_points c on c.id = s.slack_contact_point_id and c.org_id = m.org_id"
        "  and c.kind = 'slack' and c.deleted_at is null and c.enabled"
        " where m.org_id = %s and m.user_id = %s",
        (org_id, user_id),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return Reach(
        user_id=user_id,
        email=row["email"] if row["email_enabled"] and row["email"] else None,
        slack_contact_point_id=row["slack_contact_point_id"],
        slack_user_id=row["slack_user_id"],
    )


def member_for_slack_user(cur: Cursor, org_id: UUID, slack_user_id: str, slack_team_id: str | None) -> UUID | None:
    """The member of the organization who set this Slack member id in their settings, if any; when they pinned
    their workspace, only for a button pressed in it (``slack_team_id``, the payload's ``team.id``)."""
    cur.execute(
        "select s.user_id from public.member_notification_settings s"
        " join public.memberships m on m.org_id = s.org_id and m.user_id = s.user_id"
        " where s.org_id = %s and s.slack_user_id = %s"
        " and (s.slack_team_id is null or s.slack_team_id = %s)",
        (org_id, slack_user_id, slack_team_id),
    )
    row = cur.fetchone()
    return row["user_id"] if row else None
