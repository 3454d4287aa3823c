"""Signed acknowledge and resolve links, put in e-mail and Slack messages (issue 14, section 5).

A link's token is a capability: whoever holds it may acknowledge (or resolve) ONE incident of ONE project until it
expires, as the member it was sent to when it names one (else as the system actor "link"). It is compact and
URL-safe::

    base64url(JSON payload) "." base64url(HMAC-SHA256(secret, "observai.action-link.v1." + encoded payload))

with the payload ``{"v": 1, "a": action, "i": incident_id, "p": project_id, "e": expiry (unix seconds),
"u": user_id (optional)}``. The signature is checked in constant time before anything in the payload is believed.

The key is ``settings.action_link_secret`` (from the app secret in AWS). It may hold several secrets separated by
spaces: the first signs, any of them verifies (a key rotation: put the new one first, drop the old one once its
links have expired, ``action_link_ttl_s`` later). Unset, the local and test stages use a fixed development secret
(``DEVELOPMENT_SECRET``: links signed with it protect nothing) and the other stages make no links at all (and the
action routes answer 503).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from observai.config import Settings

Action = Literal["acknowledge", "resolve"]
ACTIONS: tuple[Action, ...] = ("acknowledge", "resolve")

# Only for the local and test stages (never used in dev or prod).
DEVELOPMENT_SECRET = "observai-local-action-link-secret-do-not-use-in-aws"

TOKEN_VERSION = 1
# A token is about 250 characters; anything much longer is refused before any decoding.
MAX_TOKEN_CHARS = 512
_SIGNING_CONTEXT = b"observai.action-link.v1."
_SIGNATURE_BYTES = 32  # HMAC-SHA256


class LinkError(Exception):
    """A token that cannot be honoured. ``reason`` is safe to show."""

    reason = "This link is not valid."


class LinkInvalid(LinkError):
    """Malformed, tampered with, or signed with another key."""


class LinkExpired(LinkError):
    reason = "This link has expired."


class LinksUnavailable(LinkError):
    """No signing secret is configured (outside the local and test stages)."""

    reason = "Action links are not configured on this service."


@dataclass(frozen=True)
class ActionToken:
    action: Action
    incident_id: UUID
    project_id: UUID
    expires_at: int  # unix seconds
    user_id: UUID | None = None


def link_secrets(settings: Settings) -> list[bytes]:
    """The secrets, the signing one first; empty when links are off (no secret outside local and test stages)."""
    if settings.action_link_secret is not None:
        secrets = [s.encode() for s in settings.action_link_secret.get_secret_value().split() if s]
        if secrets:
            return secrets
    if settings.stage in ("local", "test"):
        return [DEVELOPMENT_SECRET.encode()]
    return []


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text) or len(text) % 4 == 1:
        raise LinkInvalid
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise LinkInvalid from None


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _signature(secret: bytes, encoded_payload: str) -> bytes:
    return hmac.new(secret, _SIGNING_CONTEXT + encoded_payload.encode("ascii"), hashlib.sha256).digest()


def make_token(
    action: Action,
    incident_id: UUID,
    project_id: UUID,
    now: datetime,
    settings: Settings,
    user_id: UUID | None = None,
) -> str:
    """A token for one action on one incident, valid ``settings.action_link_ttl_s`` from ``now``.

    Raises LinksUnavailable when no secret is configured (outside the local and test stages)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    secrets = link_secrets(settings)
    if not secrets:
        raise LinksUnavailable
    payload: dict[str, object] = {
        "v": TOKEN_VERSION,
        "a": action,
        "i": str(incident_id),
        "p": str(project_id),
        "e": int(now.timestamp()) + settings.action_link_ttl_s,
    }
    if user_id is not None:
        payload["u"] = str(user_id)
    encoded = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return encoded + "." + _b64encode(_signature(secrets[0], encoded))


def verify_token(token: str, now: datetime, settings: Settings) -> ActionToken:
    """The token's claims, once its signature is good and it has not expired.

    Raises LinksUnavailable (no secret configured), LinkInvalid (malformed, tampered, another key) or LinkExpired
    (checked only after the signature: a tampered expiry is invalid, not expired)."""
    secrets = link_secrets(settings)
    if not secrets:
        raise LinksUnavailable
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise LinkInvalid
    encoded, _, encoded_signature = token.partition(".")
    signature = _b64decode(encoded_signature)
    if len(signature) != _SIGNATURE_BYTES or _b64encode(signature) != encoded_signature:
        raise LinkInvalid  # only the canonical encoding: one token, one spelling
    _b64decode(encoded)  # the alphabet, before any HMAC work
    good = False
    for secret in secrets:  # every secret is tried: the time taken does not tell which one matched
        good |= hmac.compare_digest(_signature(secret, encoded), signature)
    if not good:
        raise LinkInvalid
    claims = _claims(_b64decode(encoded))
    if int(now.timestamp()) >= claims.expires_at:
        raise LinkExpired
    return claims


def _claims(raw: bytes) -> ActionToken:
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise LinkInvalid from None
    if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
        raise LinkInvalid
    if not set(payload) <= {"v", "a", "i", "p", "e", "u"}:
        raise LinkInvalid
    action, expires_at = payload.get("a"), payload.get("e")
    if action not in ACTIONS or type(expires_at) is not int:
        raise LinkInvalid
    try:
        incident_id = UUID(payload["i"])
        project_id = UUID(payload["p"])
        user_id = UUID(payload["u"]) if "u" in payload else None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise LinkInvalid from None
    return ActionToken(
        action=action, incident_id=incident_id, project_id=project_id, expires_at=expires_at, user_id=user_id
    )


def action_url(settings: Settings, token: str) -> str:
    base = (settings.public_base_url or "").rstrip("/")
    return f"{base}/v1/actions/incidents/{token}"


def incident_url(settings: Settings, project_id: UUID, incident_id: UUID) -> str:
    base = (settings.public_base_url or "").rstrip("/")
    return f"{base}/v1/projects/{project_id}/incidents/{incident_id}"


def action_links(
    incident_id: UUID,
    project_id: UUID,
    now: datetime,
    settings: Settings,
    user_id: UUID | None = None,
) -> dict[str, str]:
    """``{"acknowledge": url, "resolve": url, "incident": url}`` for a message about this incident (sent to
    ``user_id`` when it goes to one person); an empty dict when ``public_base_url`` or the link secret is not set."""
    if not settings.public_base_url or not link_secrets(settings):
        return {}
    links: dict[str, str] = {
        action: action_url(settings, make_token(action, incident_id, project_id, now, settings, user_id))
        for action in ACTIONS
    }
    links["incident"] = incident_url(settings, project_id, incident_id)
    return links
