"""May this organization's telemetry go to the model now? Its opt-in, and a configured key.

Off by default: nothing leaves for the model until an owner or admin turns the AI features on
(``PUT /v1/orgs/{org_id}/ai``). A deployment without a Gemini API key has them off whatever the organizations chose.
"""

from __future__ import annotations

from uuid import UUID

from observai.ai.model import AiUnavailable
from observai.ai.provider import is_configured
from observai.config import Settings
from observai.db.connection import Cursor
from observai.errors import Conflict, Unavailable

NOT_CONFIGURED_RETRY_AFTER_S = 3600


class AiNotConfigured(Unavailable):
    """503 ``ai_not_configured``: this deployment has no Gemini API key (``GEMINI_API_KEY``, or ``gemini_api_key`` in
    the app secret)."""

    code = "ai_not_configured"

    def __init__(self) -> None:
        super().__init__(
            "AI features are not configured on this deployment (no Gemini API key)",
            retry_after_s=NOT_CONFIGURED_RETRY_AFTER_S,
            details={"reason": "not_configured"},
        )


class AiModelUnavailable(Unavailable):
    """503 ``ai_unavailable``: the model could not answer now (``details.reason``: timeout, circuit_open, ...)."""

    code = "ai_unavailable"


def is_enabled(cur: Cursor, org_id: UUID) -> bool:
    """Whether the organization opted in (no row: never asked, off). Readable by its members, its API keys and the
    service."""
    cur.execute("select enabled from public.org_ai_settings where org_id = %s", (org_id,))
    row = cur.fetchone()
    return bool(row and row["enabled"])


def require_configured(settings: Settings) -> None:
    """Raise ``AiNotConfigured`` (503) without a key on this deployment."""
    if not is_configured(settings):
        raise AiNotConfigured()


def require_enabled(cur: Cursor, org_id: UUID, settings: Settings) -> None:
    """Raise ``AiNotConfigured`` (503) without a key on this deployment, ``Conflict`` ``ai_disabled`` (409) when the
    organization has not opted in. Call it after the caller's authorization (never reveal another org's choice)."""
    require_configured(settings)
    if not is_enabled(cur, org_id):
        raise Conflict(
            "AI features are off for this organization; an owner or admin can turn them on with "
            'PUT /v1/orgs/{org_id}/ai {"enabled": true}',
            code="ai_disabled",
            details={"org_id": str(org_id)},
        )


def unavailable_error(exc: AiUnavailable) -> Unavailable:
    """The HTTP error of a model that could not answer (for routes that have nothing to fall back on, as the ask
    routes): 503 ``ai_not_configured`` or ``ai_unavailable`` with the reason, Retry-After by the reason."""
    if exc.reason == "not_configured":
        return AiNotConfigured()
    retry_after = {"circuit_open": 30, "rate_limited": 30, "timeout": 10}.get(exc.reason, 5)
    return AiModelUnavailable(
        f"the AI model is unavailable ({exc.reason}); try again later",
        retry_after_s=retry_after,
        details={"reason": exc.reason},
    )
