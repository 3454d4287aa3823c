"""Slack's interactive buttons (issue 14, section 5): ``POST /v1/integrations/slack/actions``.

Slack posts ``application/x-www-form-urlencoded`` with one field, ``payload``: a JSON ``block_actions`` document
(``user.id``, ``team.id``, ``actions[].action_id`` and ``.value``, ``response_url``). Our messages carry two buttons
(observai.notify.channels renders them): ``action_id`` ``incident_acknowledge`` / ``incident_resolve`` with
``value`` ``"<project_id>/<incident_id>"``.

1. The request is authenticated first, before anything is parsed: ``X-Slack-Signature`` must be ``v0=`` + the hex
   HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw body}`` under ``settings.slack_signing_secret``, compared
   in constant time, with a timestamp within 5 minutes of now (a replayed request is refused). Else 401.
2. The Slack user is mapped to a member of the incident's organization (observai.notify.people, from the member's
   notification settings). A member whose role may act acknowledges or resolves as themself (the timeline and the
   audit log name them, ``via: slack``); anyone else gets a polite refusal that does not say whether the incident
   exists.
3. The answer is a 200 JSON message Slack shows only to the clicker (ephemeral); when the action changed the
   incident, the channel is told through ``response_url`` (only ``https://hooks.slack.com`` outside the local
   stages, SSRF-checked; a failure is logged, never raised).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from observai.auth.permissions import Action as Permission
from observai.auth.permissions import can
from observai.auth.principal import Principal
from observai.config import Settings
from observai.db.connection import transaction
from observai.errors import InvalidInput, Unauthenticated, Unavailable
from observai.incidents import store as incident_store
from observai.notify.actions import RequestMeta, act
from observai.notify.people import member_for_slack_user
from observai.observability import logger
from observai.tenancy import store as tenancy_store

MAX_BODY_BYTES = 256 * 1024  # a payload carries the whole message (≤ 50 blocks, ≈ 12,000 characters of text)
MAX_SKEW_S = 300  # Slack: "more than five minutes" from local time is a possible replay
ACTIONS = {"incident_acknowledge": "acknowledge", "incident_resolve": "resolve"}
_DONE = {"acknowledge": "acknowledged", "resolve": "resolved"}
_SLACK_ID = re.compile(r"^[A-Z0-9]{1,32}$")
_SLACK_TEAM = re.compile(r"^[TE][A-Z0-9]{2,20}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")
SLACK_HOOKS_HOST = "hooks.slack.com"
RESPONSE_URL_TIMEOUT_S = 2.0  # Slack wants the answer within 3 s

Poster = Callable[[str, dict[str, Any], Settings], None]


def _secrets(settings: Settings) -> list[bytes]:
    if settings.slack_signing_secret is None:
        return []
    return [s.encode() for s in settings.slack_signing_secret.get_secret_value().split() if s]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Slack-Signature`` of a request: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    basestring = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode(), basestring, hashlib.sha256).hexdigest()


def verify_request(headers: Mapping[str, str], body: bytes, now: datetime, settings: Settings) -> None:
    """Raise Unauthenticated (401) unless Slack signed this very body within 5 minutes of ``now``; Unavailable
    (503) when no signing secret is configured."""
    secrets = _secrets(settings)
    if not secrets:
        raise Unavailable("Slack actions are not configured on this service", retry_after_s=300)
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp", "").strip()
    given = lowered.get("x-slack-signature", "").strip()
    if not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(given):
        raise Unauthenticated("Missing or malformed Slack signature", code="invalid_signature")
    if abs(int(now.timestamp()) - int(timestamp)) > MAX_SKEW_S:
        raise Unauthenticated("The Slack request timestamp is too old or too new", code="invalid_signature")
    basestring = b"v0:" + timestamp.encode("ascii") + b":" + body
    good = False
    for secret in secrets:
        expected = "v0=" + hmac.new(secret, basestring, hashlib.sha256).hexdigest()
        good |= hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))
    if not good:
        raise Unauthenticated("The Slack signature does not match", code="invalid_signature")


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters in message text (&, <, >), so a title cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parse_payload(body: bytes) -> dict[str, Any]:
    """The ``payload`` JSON of a form body; InvalidInput (400) for anything else."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidInput("The request body is too large", code="body_too_large")
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("Expected a form body with a payload field", code="malformed_form") from None
    values = fields.get("payload") or []
    if len(values) != 1:
        raise InvalidInput("Expected exactly one payload field", code="malformed_form")
    try:
        payload = json.loads(values[0])
    except (ValueError, RecursionError):
        raise InvalidInput("The payload is not valid JSON", code="malformed_json") from None
    if not isinstance(payload, dict):
        raise InvalidInput("The payload is not a JSON object", code="malformed_json")
    return payload


def _our_action(payload: Mapping[str, Any]) -> tuple[str, str] | dict[str, Any] | None:
    """(action, value) of our first button in the payload; an answer when there is none; None: say nothing (a
    link button's click, which Slack reports too, needs no answer)."""
    actions = payload.get("actions")
    if payload.get("type") != "block_actions" or not isinstance(actions, list) or not actions:
        return _ephemeral("Sorry, ObservAI only understands its incident buttons here.")
    for item in actions[:10]:
        if isinstance(item, dict) and item.get("action_id") in ACTIONS and isinstance(item.get("value"), str):
            return ACTIONS[str(item["action_id"])], str(item["value"])
    if all(isinstance(item, dict) and "url" in item for item in actions[:10]):
        return None
    return _ephemeral("Sorry, ObservAI does not know this button.")


def _ids(value: str) -> tuple[UUID, UUID] | None:
    project, sep, incident = value.partition("/")
    if not sep or len(value) > 80:
        return None
    try:
        return UUID(project), UUID(incident)
    except ValueError:
        return None


def handle(
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    settings: Settings,
    meta: RequestMeta | None = None,
    *,
    post: Poster | None = None,
) -> dict[str, Any]:
    """Verify, parse and act; the JSON answer for Slack (200). Raises Unauthenticated (401), Unavailable (503),
    InvalidInput (400: not a form with a JSON payload)."""
    verify_request(headers, body, now, settings)
    payload = parse_payload(body)
    found = _our_action(payload)
    if found is None:
        return {}
    if isinstance(found, dict):
        return found
    action, value = found
    ids = _ids(value)
    user = payload.get("user")
    slack_user_id = user.get("id") if isinstance(user, dict) else None
    team = payload.get("team")
    team_id = team.get("id") if isinstance(team, dict) else None
    if ids is None:
        return _ephemeral("Sorry, this button does not name an incident ObservAI knows.")
    if not isinstance(slack_user_id, str) or not _SLACK_ID.match(slack_user_id):
        return _ephemeral("Sorry, Slack did not say who pressed the button.")
    project_id, incident_id = ids
    refusal = _ephemeral(
        f"Sorry, you cannot {action} this incident from Slack: your Slack account is not linked to a member of the"
        " organization that owns it (set your Slack member ID in your ObservAI notification settings)."
    )
    with transaction() as cur:
        incident = incident_store.get(cur, project_id, incident_id)
        team = team_id if isinstance(team_id, str) and _SLACK_TEAM.match(team_id) else None
        user_id = member_for_slack_user(cur, incident["org_id"], slack_user_id, team) if incident else None
        role = tenancy_store.role_in_org(cur, incident["org_id"], user_id) if incident and user_id else None
    logger.info(
        "slack action",
        extra={
            "action": action,
            "incident_id": str(incident_id),
            "slack_team_id": str(team_id)[:32] if team_id else None,
            "mapped": user_id is not None,
        },
    )
    if incident is None or user_id is None or role is None:
        return refusal
    if not can(role, Permission.TELEMETRY_WRITE):
        return _ephemeral(f"Sorry, your role ({role}) may not {action} incidents. Ask a member or an admin.")
    meta = meta or RequestMeta()
    principal = Principal(
        kind="user", user_id=user_id, source_ip=meta.source_ip, user_agent=meta.user_agent, request_id=meta.request_id
    )
    outcome = act(principal, action, project_id, incident_id, now, via="slack")
    if outcome.page is not None:
        return _ephemeral(f"{outcome.page.heading}: {outcome.page.message}")
    assert outcome.incident is not None
    number, title = outcome.incident["number"], mrkdwn_escape(str(outcome.incident["title"]))
    if not outcome.changed:
        return _ephemeral(f"Incident #{number} ({title}) is already {_DONE[action]}.")
    response_url = payload.get("response_url")
    if isinstance(response_url, str) and response_url:
        update = {
            "response_type": "in_channel",
            "replace_original": False,
            "text": f"Incident #{number} ({title}) {_DONE[action]} by <@{slack_user_id}>.",
        }
        (post or post_response_url)(response_url, update, settings)
    return _ephemeral(f"You {_DONE[action]} incident #{number} ({title}).")


def response_url_allowed(url: str, settings: Settings) -> bool:
    """Outside the local stages only ``https://hooks.slack.com/...``; locally any URL the SSRF guard allows."""
    if settings.stage in ("local", "test"):
        return True
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.hostname == SLACK_HOOKS_HOST
        and port in (None, 443)
        and not parts.username
        and not parts.password
    )


def post_response_url(url: str, message: dict[str, Any], settings: Settings) -> None:
    """POST ``message`` to a Slack ``response_url`` (host-checked, SSRF-checked, 2 s). Never raises; the URL is a
    short-lived capability and is never logged (its host only)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    try:
        if not response_url_allowed(url, settings):
            logger.warning("slack response_url refused", extra={"host": host})
            return
        status = _post_json(url, message, settings)
        if status is None or not 200 <= status < 300:
            logger.warning("slack response_url failed", extra={"host": host, "status": status})
    except Exception as exc:  # a failure to tell the channel never fails the action
        logger.warning("slack response_url failed", extra={"host": host, "error": type(exc).__name__})


def _post_json(url: str, message: dict[str, Any], settings: Settings) -> int | None:
    # The channels' POST (observai.notify.channels._common.post_json: the SSRF guard, the checked address, no
    # redirects), within Slack's answer time; loopback where the paging or the webhook settings allow it (the guard
    # itself refuses it in dev and prod whatever).
    from observai.notify.channels._common import post_json

    quick = settings.model_copy(
        update={
            "notify_timeout_s": min(RESPONSE_URL_TIMEOUT_S, settings.notify_timeout_s),
            "notify_allow_loopback": settings.notify_allow_loopback or settings.webhook_allow_loopback,
        }
    )
    attempt = post_json(url, message, quick)
    if attempt.status_code is None and (attempt.error or "").startswith("refused:"):
        logger.warning("slack response_url refused", extra={"host": urlsplit(url).hostname, "reason": attempt.error})
    return attempt.status_code
