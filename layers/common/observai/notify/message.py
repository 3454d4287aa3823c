"""What a channel is asked to send, and what came of it: the one interface between the delivery records
(observai.notify.deliveries) and the channels (observai.notify.channels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Event = Literal["trigger", "acknowledge", "resolve", "notify", "test"]


@dataclass(frozen=True)
class Message:
    """One message, channel-neutral; each channel renders it (Block Kit, an Events API v2 event, an e-mail).

    ``event`` is what happened: ``trigger`` (an incident pages), ``acknowledge``, ``resolve``, ``notify`` (a
    route's notification: its ``reason`` is first, changed, repeat or resolved) or ``test``. ``incident`` is the
    incident's public fields (id, number, title, status, severity, service, project_id) when there is one;
    ``alerts`` the alerts of the notification (labels, annotations, state, value, starts_at), firing first.
    ``links`` holds absolute URLs: ``incident``, and the signed ``acknowledge`` and ``resolve`` action links.
    ``mention`` is a Slack member id to mention (a person paged through their Slack contact point).
    ``dedup_key`` keys the incident at PagerDuty (our incident id), so an ack here acks there."""

    event: Event
    title: str
    text: str
    severity: str = "warning"
    reason: str | None = None
    incident: dict[str, Any] | None = None
    alerts: tuple[dict[str, Any], ...] = ()
    links: dict[str, str] = field(default_factory=dict)
    mention: str | None = None
    dedup_key: str | None = None
    # The delivery's id: the webhook channel's webhook-id, an e-mail's reference; stable across retries.
    delivery_id: str | None = None
    # Parts of this message the receiver accepted in earlier attempts (an e-mail to more than 50 addresses is several
    # SES messages): a retry sends only the parts after them.
    resume_from: int = 0


@dataclass(frozen=True)
class SendResult:
    """What one attempt came to. ``ok``: the receiver took it (Slack 200, PagerDuty 202, SES accepted...).
    Otherwise ``retryable`` says whether trying again can help (429, 5xx, timeouts, SES throttling), with the
    receiver's ``retry_after_s`` when it gave one, and ``disable_reason`` is set when the contact point must be
    disabled (Slack 404/410: the webhook was removed)."""

    ok: bool
    status_code: int | None = None
    retryable: bool = False
    retry_after_s: float | None = None
    disable_reason: str | None = None
    response_excerpt: str | None = None
    error: str | None = None
    duration_ms: int = 0
    # A channel sending in parts: how many the receiver has accepted in all, this attempt's and earlier ones'.
    progress: int | None = None
