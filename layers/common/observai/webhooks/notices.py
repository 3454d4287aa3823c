"""The e-mail telling an organization's owners and admins that the delivery engine disabled one of their webhook
endpoints (failing for 5 days in a row), sent through Amazon SES v2. The message names the project and the
endpoint (its URL without query or credentials: never a token or the secret) and says how to resume."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from observai.aws_clients import Timeouts, aws_client
from observai.config import Settings
from observai.db.connection import Cursor
from observai.observability import logger

_TIMEOUTS = Timeouts(connect_s=3, read_s=10, max_attempts=3)
# SES takes at most 50 recipients a message.
MAX_RECIPIENTS = 50


@dataclass(frozen=True)
class Notice:
    endpoint_id: UUID
    recipients: tuple[str, ...]
    subject: str
    text: str


def disabled_notice(cur: Cursor, org_id: UUID, project_id: UUID, endpoint_id: UUID, now: datetime) -> Notice:
    from observai.webhooks.delivery import display_url

    cur.execute(
        "select u.email::text as email from public.memberships m join auth.users u on u.id = m.user_id"
        " where m.org_id = %s and m.role in ('owner', 'admin') and u.email is not null order by u.email limit %s",
        (org_id, MAX_RECIPIENTS),
    )
    recipients = tuple(row["email"] for row in cur.fetchall())
    cur.execute(
        "select w.url, w.failing_since, w.disabled_reason, p.name as project_name, c.id as contact_point_id,"
        " c.name as contact_point_name from public.webhook_endpoints w"
        " join public.projects p on p.id = w.project_id"
        " left join public.contact_points c on c.webhook_endpoint_id = w.id and w.contact_point_owned"
        " where w.id = %s",
        (endpoint_id,),
    )
    row = cur.fetchone()
    assert row is not None
    url = display_url(row["url"])
    since = row["failing_since"].isoformat() if row["failing_since"] else "5 days ago"
    if row["contact_point_id"] is not None:
        # A paging contact point's own endpoint: not in the webhooks API; re-enabling the contact point resumes it.
        subject = f"Webhook contact point {row['contact_point_name']} disabled in project {row['project_name']}"
        text = (
            f"The webhook contact point {row['contact_point_name']} ({url}) of project {row['project_name']} has"
            f" failed every delivery since {since}, so it was disabled on {now.isoformat()}"
            f" ({row['disabled_reason']}).\n\nNothing more is sent to it. Once the receiver works again, re-enable it"
            f' with PATCH /v1/projects/{project_id}/contact-points/{row["contact_point_id"]} {{"enabled": true}}.\n'
        )
        return Notice(endpoint_id, recipients, subject, text)
    subject = f"Webhook endpoint disabled in project {row['project_name']}"
    text = (
        f"The webhook endpoint {url} (id {endpoint_id}) of project {row['project_name']} has failed every delivery"
        f" since {since}, so it was disabled on {now.isoformat()} ({row['disabled_reason']}).\n\n"
        "Nothing more is sent to it. Once the receiver works again, enable the endpoint and replay what it missed"
        f" with POST /v1/projects/{project_id}/webhooks/{endpoint_id}/recover?since=<time>.\n"
    )
    return Notice(endpoint_id, recipients, subject, text)


def send(notice: Notice, settings: Settings) -> bool:
    """Send the notice (one message to every recipient); False when there is no sender configured or no one to
    tell."""
    if not settings.webhook_notice_sender or not notice.recipients:
        logger.warning(
            "webhook disabled notice not sent: no sender (WEBHOOK_NOTICE_SENDER) or no owner/admin e-mail",
            extra={"endpoint_id": str(notice.endpoint_id), "recipients": len(notice.recipients)},
        )
        return False
    aws_client("sesv2", _TIMEOUTS).send_email(
        FromEmailAddress=settings.webhook_notice_sender,
        Destination={"ToAddresses": list(notice.recipients)},
        Content={
            "Simple": {
                "Subject": {"Data": notice.subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": notice.text, "Charset": "UTF-8"}},
            }
        },
    )
    logger.info(
        "webhook disabled notice sent",
        extra={"endpoint_id": str(notice.endpoint_id), "recipients": len(notice.recipients)},
    )
    return True
