"""Slack: an incoming webhook POST of a Block Kit message.

The message: a header (``[CRITICAL] #12 Title``), the paged person's mention (``<@U…>``) when there is one, the
text (cut on a boundary with an ellipsis), the incident's status, service and reason, the alerts (at most 10, then
"and N more"), and the actions: Acknowledge and Resolve buttons (``action_id`` ``incident_acknowledge`` /
``incident_resolve``, ``value`` ``"<project_id>/<incident_id>"``, handled by POST /v1/integrations/slack/actions) and
link buttons to the incident page and the signed acknowledge/resolve links. Fewer than 50 blocks, and all its text
(the fallback ``text`` included) within 12,000 characters.

Slack's answers: 200 ``ok``; 429 (retry after its Retry-After); 404/410 (``no_service``, ``channel_is_archived``:
the webhook was removed, the contact point is disabled); 400/403 (a bad payload, a forbidden post: not retried);
5xx retried. Outside local and test stages only ``https://hooks.slack.com/…`` URLs are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from observai.config import Settings
from observai.notify.channels._common import (
    alert_name,
    alert_summary,
    classify,
    cut,
    heading_event,
    incident_heading,
    is_resolution,
    one_line,
    post_json,
)
from observai.notify.message import Message, SendResult

SLACK_HOST = "hooks.slack.com"
MAX_BLOCKS = 49  # Slack takes at most 50
TEXT_CAP = 12_000  # all the text of one message, blocks and fallback
SECTION_MAX = 3000  # Slack's limit for a section's text
HEADER_MAX = 150  # Slack's limit for a header's plain text
FALLBACK_MAX = 500
BODY_MAX = 6000
MAX_ALERTS = 10
ALERT_MAX = 500
BUTTON_TEXT_MAX = 75
ACKNOWLEDGE_ACTION = "incident_acknowledge"
RESOLVE_ACTION = "incident_resolve"


def validate_url(url: str, settings: Settings) -> None:
    """ValueError unless ``url`` is a Slack incoming webhook (``https://hooks.slack.com/…``); any http(s) URL in the
    local and test stages (a stand-in receiver on localhost)."""
    parts = urlsplit(url)
    if settings.stage in ("local", "test") and parts.scheme in ("http", "https") and parts.hostname:
        return
    if parts.scheme != "https" or parts.hostname != SLACK_HOST or parts.port not in (None, 443) or parts.username:
        raise ValueError(f"a Slack incoming webhook URL starts with https://{SLACK_HOST}/")
    if not parts.path.startswith("/services/"):
        raise ValueError(f"a Slack incoming webhook URL starts with https://{SLACK_HOST}/services/")


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: ``&``, ``<`` and ``>`` (so that text never becomes a link or a mention)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _chunks(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, each cut on a line break or space when one is near."""
    pieces: list[str] = []
    rest = text
    while rest:
        if len(rest) <= size:
            pieces.append(rest)
            break
        window = rest[:size]
        boundary = max(window.rfind("\n"), window.rfind(" "))
        end = boundary if boundary >= size // 2 else size
        while end > 1 and rest[:end].rfind("&") > rest[:end].rfind(";") and rest[:end].rfind("&") > end - 6:
            end -= 1  # not inside an entity
        pieces.append(rest[:end])
        rest = rest[end:].lstrip(" ")
    return pieces


def _alert_text(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    state = alert.get("state") or ""
    head = f"*{escape(alert_name(alert))}*" + (f" — {escape(str(state))}" if state else "")
    value = alert.get("value")
    if value is not None:
        head += f" (value {escape(str(value))})"
    label_text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    lines = [head]
    if label_text:
        lines.append(f"`{escape(one_line(label_text, 300))}`")
    summary = alert_summary(alert)
    if summary:
        lines.append(escape(one_line(summary, 300)))
    return cut("\n".join(lines), ALERT_MAX)


def _mention_text(message: Message) -> str:
    what = {
        "trigger": "you are paged",
        "acknowledge": "acknowledged",
        "resolve": "resolved",
        "test": "a test message",
    }.get(heading_event(message.event, message.reason), "for your attention")
    return f"<@{message.mention}> {what}"


def _actions(message: Message) -> dict[str, Any] | None:
    elements: list[dict[str, Any]] = []
    incident = message.incident or {}
    resolved = is_resolution(message.event, message.reason) or incident.get("status") == "resolved"
    if incident.get("id") and incident.get("project_id") and not resolved:
        value = f"{incident['project_id']}/{incident['id']}"
        elements.append(
            {
                "type": "button",
                "action_id": ACKNOWLEDGE_ACTION,
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "value": value,
                "style": "primary",
            }
        )
        elements.append(
            {
                "type": "button",
                "action_id": RESOLVE_ACTION,
                "text": {"type": "plain_text", "text": "Resolve"},
                "value": value,
                "style": "danger",
            }
        )
    labels = {"incident": "Open incident", "acknowledge": "Acknowledge (web)", "resolve": "Resolve (web)"}
    for name, label in labels.items():
        url = message.links.get(name)
        if url and len(url) <= 3000 and not (resolved and name != "incident"):
            elements.append(
                {
                    "type": "button",
                    "action_id": f"link_{name}",
                    "text": {"type": "plain_text", "text": label[:BUTTON_TEXT_MAX]},
                    "url": url,
                }
            )
    return {"type": "actions", "block_id": "incident_actions", "elements": elements} if elements else None


def render(message: Message) -> dict[str, Any]:
    """The webhook body: ``{"text": fallback, "blocks": [...]}`` (see the module's text)."""
    heading = incident_heading(
        message.title, message.severity, message.incident, heading_event(message.event, message.reason)
    )
    fallback = one_line(heading, FALLBACK_MAX)
    if message.mention:
        fallback = f"<@{message.mention}> " + fallback
    budget = TEXT_CAP - len(fallback)
    blocks: list[dict[str, Any]] = []

    def add(block: dict[str, Any], size: int) -> None:
        nonlocal budget
        blocks.append(block)
        budget -= size

    header = one_line(heading, HEADER_MAX)
    add({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}, len(header))
    if message.mention:
        mention = _mention_text(message)
        add({"type": "section", "text": {"type": "mrkdwn", "text": mention}}, len(mention))
    incident = message.incident or {}
    facts = [f"*Severity:* {escape(message.severity)}"]
    if incident.get("status"):
        facts.append(f"*Status:* {escape(str(incident['status']))}")
    if incident.get("service"):
        facts.append(f"*Service:* {escape(one_line(str(incident['service']), 200))}")
    if message.reason:
        facts.append(f"*Reason:* {escape(message.reason)}")
    facts_text = "   ".join(facts)
    add({"type": "context", "elements": [{"type": "mrkdwn", "text": facts_text}]}, len(facts_text))

    alerts = list(message.alerts)
    shown = alerts[:MAX_ALERTS]
    # The alerts' share is kept aside first: the text takes what is left, up to BODY_MAX.
    alert_texts = [_alert_text(a) for a in shown]
    more = len(alerts) - len(shown)
    more_text = f"and {more} more alert{'s' if more != 1 else ''}" if more > 0 else ""
    reserved = sum(len(t) for t in alert_texts) + len(more_text)
    body = escape(message.text.strip())
    if body:
        body = cut(body, max(0, min(BODY_MAX, budget - reserved)))
        for piece in _chunks(body, SECTION_MAX):
            add({"type": "section", "text": {"type": "mrkdwn", "text": piece}}, len(piece))
    if alert_texts:
        blocks.append({"type": "divider"})
    for index, text in enumerate(alert_texts):
        if len(text) > budget or len(blocks) >= MAX_BLOCKS - 2:
            more += len(alert_texts) - index
            more_text = f"and {more} more alert{'s' if more != 1 else ''}"
            break
        add({"type": "section", "text": {"type": "mrkdwn", "text": text}}, len(text))
    if more_text:
        add({"type": "context", "elements": [{"type": "mrkdwn", "text": more_text}]}, len(more_text))
    actions = _actions(message)
    if actions is not None:
        blocks.append(actions)
    return {"text": fallback, "blocks": blocks[:MAX_BLOCKS]}


def send(config: Mapping[str, Any], message: Message, *, settings: Settings) -> SendResult:
    url = str(config.get("url") or "")
    try:
        validate_url(url, settings)
    except ValueError as exc:
        return SendResult(ok=False, error=f"not sent: {exc}")
    attempt = post_json(url, render(message), settings)
    return classify(
        attempt,
        success=(200,),
        retryable=frozenset({429}),
        disable={
            404: "Slack answered 404: the webhook was removed",
            410: "Slack answered 410: the webhook was removed",
        },
    )
