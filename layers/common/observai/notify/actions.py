"""Acknowledge and resolve from a notification (issue 14, section 5): the signed links' pages, and who acts.

* ``preview`` (GET of a link) verifies the token and shows the incident with a confirm button; it never changes
  anything (mail scanners and link previews fetch links).
* ``perform`` (POST of a link) acts through observai.incidents.service: as the member the link was sent to when it
  names one (who must still be a member, with a role that may act), else as the actor ``link`` (bound to the
  token's project and incident). Already acknowledged or resolved is said kindly, never an error.

The token is the capability: no cookie, no session. Every answer is a page (``action_pages.Page``), never an
exception: an expired link 410, a bad or unknown one 404, links not configured 503.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from observai.auth.permissions import Action as Permission
from observai.auth.permissions import can
from observai.auth.principal import Principal
from observai.config import Settings
from observai.db.connection import transaction
from observai.errors import Conflict, Forbidden, NotFound
from observai.incidents import service
from observai.incidents import store as incident_store
from observai.notify.action_pages import Page
from observai.notify.links import ActionToken, LinkError, LinkExpired, LinksUnavailable, verify_token
from observai.observability import logger
from observai.tenancy import store as tenancy_store

_DONE = {"acknowledge": "acknowledged", "resolve": "resolved"}
_VERB = {"acknowledge": "Acknowledge", "resolve": "Resolve"}


@dataclass(frozen=True)
class RequestMeta:
    """Where the request came from, for the audit record."""

    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


def summary(incident: dict[str, Any]) -> dict[str, Any]:
    """What a page or a Slack answer shows of an incident."""
    return {k: incident.get(k) for k in ("number", "title", "status", "severity")}


def _link_error_page(error: LinkError) -> Page:
    if isinstance(error, LinksUnavailable):
        return Page(503, "Links unavailable", error.reason)
    if isinstance(error, LinkExpired):
        return Page(
            410,
            "Link expired",
            "This link has expired. Open the incident in ObservAI to acknowledge or resolve it.",
        )
    return Page(404, "Link not valid", "This link is not valid. Check that it was copied whole.")


_NOT_FOUND = Page(404, "Incident not found", "This incident no longer exists.")


def _verified(token: str, now: datetime, settings: Settings) -> ActionToken | Page:
    try:
        return verify_token(token, now, settings)
    except LinkError as error:
        return _link_error_page(error)


def _refusal(claims: ActionToken, incident: dict[str, Any], role: str | None) -> Page | None:
    """A refusal page when the link names a person who may not act (any more); None when it may act."""
    if claims.user_id is None:
        return None
    if role is None:
        return Page(
            403,
            "Not allowed",
            "This link was sent to someone who is no longer a member of the organization: it cannot act.",
            summary(incident),
        )
    if not can(role, Permission.TELEMETRY_WRITE):
        return Page(
            403,
            "Not allowed",
            f"Your role ({role}) may not {claims.action} incidents. Ask a member or an admin.",
            summary(incident),
        )
    return None


def _settled(claims: ActionToken, incident: dict[str, Any]) -> Page | None:
    """The page for an incident the action has nothing left to do on; None when it can still act."""
    if incident["status"] == "resolved":
        return Page(200, "Already resolved", f"Incident #{incident['number']} is already resolved.", summary(incident))
    if claims.action == "acknowledge" and incident["status"] == "acknowledged":
        return Page(
            200,
            "Already acknowledged",
            f"Incident #{incident['number']} is already acknowledged.",
            summary(incident),
        )
    return None


def _load(claims: ActionToken) -> tuple[dict[str, Any] | None, str | None]:
    """The incident (service role: the token was verified) and the role of the person the link names, if any."""
    with transaction() as cur:
        incident = incident_store.get(cur, claims.project_id, claims.incident_id)
        if incident is None:
            return None, None
        role = tenancy_store.role_in_org(cur, incident["org_id"], claims.user_id) if claims.user_id else None
    return incident, role


def preview(token: str, now: datetime, settings: Settings) -> Page:
    """The page a link opens: the incident and a confirm button. Reads only."""
    claims = _verified(token, now, settings)
    if isinstance(claims, Page):
        return claims
    incident, role = _load(claims)
    if incident is None:
        return _NOT_FOUND
    refused = _refusal(claims, incident, role)
    if refused is not None:
        return refused
    settled = _settled(claims, incident)
    if settled is not None:
        return settled
    return Page(
        200,
        f"{_VERB[claims.action]} incident #{incident['number']}?",
        f"Press the button to {claims.action} this incident.",
        summary(incident),
        action=claims.action,
        confirm=True,
    )


def perform(token: str, now: datetime, settings: Settings, meta: RequestMeta | None = None) -> Page:
    """Act as the link says (the confirm button's POST); the page saying what came of it."""
    meta = meta or RequestMeta()
    claims = _verified(token, now, settings)
    if isinstance(claims, Page):
        return claims
    incident, role = _load(claims)
    if incident is None:
        return _NOT_FOUND
    refused = _refusal(claims, incident, role)
    if refused is not None:
        return refused
    settled = _settled(claims, incident)
    if settled is not None:
        return settled
    if claims.user_id is not None:
        principal = Principal(
            kind="user",
            user_id=claims.user_id,
            source_ip=meta.source_ip,
            user_agent=meta.user_agent,
            request_id=meta.request_id,
        )
    else:
        principal = Principal(
            kind="link",
            org_id=incident["org_id"],
            project_id=claims.project_id,
            source_ip=meta.source_ip,
            user_agent=meta.user_agent,
            request_id=meta.request_id,
        )
    outcome = act(principal, claims.action, claims.project_id, claims.incident_id, now, via="link")
    if outcome.page is not None:
        return outcome.page
    assert outcome.incident is not None
    number = outcome.incident["number"]
    if not outcome.changed:
        return Page(
            200,
            f"Already {_DONE[claims.action]}",
            f"Incident #{number} is already {_DONE[claims.action]}.",
            outcome.incident,
        )
    return Page(
        200, f"Incident {_DONE[claims.action]}", f"Incident #{number} is now {_DONE[claims.action]}.", outcome.incident
    )


@dataclass(frozen=True)
class Outcome:
    """What an action came to: ``changed`` (it did it), or not (already so), with the incident's summary; or a
    ``page`` when it could not act (gone, resolved meanwhile, refused)."""

    changed: bool = False
    incident: dict[str, Any] | None = None
    page: Page | None = None


def act(principal: Principal, action: str, project_id: UUID, incident_id: UUID, now: datetime, *, via: str) -> Outcome:
    """Acknowledge or resolve through the incidents service (permission check, row lock, timeline, audit)."""
    try:
        if action == "acknowledge":
            updated = service.acknowledge(principal, project_id, incident_id, now, via=via)
            changed = updated.acknowledged_at == now
        else:
            updated = service.resolve(principal, project_id, incident_id, None, now, via=via)
            changed = True
    except Conflict as exc:
        if exc.code == "incident_resolved":
            return Outcome(page=Page(200, "Already resolved", "This incident is already resolved."))
        raise
    except NotFound:
        return Outcome(page=_NOT_FOUND)
    except Forbidden:
        return Outcome(page=Page(403, "Not allowed", "You may not act on this incident."))
    logger.info(
        "incident action taken",
        extra={"action": action, "via": via, "incident_id": str(incident_id), "changed": changed},
    )
    return Outcome(changed=changed, incident=summary(updated.model_dump()))
