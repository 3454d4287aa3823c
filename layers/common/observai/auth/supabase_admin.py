"""Supabase Auth admin API (invite, create users) through the ``supabase`` package.

``supabase`` pulls in postgrest, realtime, storage and httpx: it is imported only inside the functions
that need it, and one client per (URL, service key) is kept per container.

Error mapping (supabase_auth raises ``AuthApiError`` with ``.status`` and ``.code``; ``.code`` is read
from GoTrue's JSON ``code`` when the response carries ``X-Supabase-Api-Version >= 2024-01-01``, else
from the legacy ``error_code``; network errors and 502/503/504/52x are ``AuthRetryableError``;
unparseable error bodies are ``AuthUnknownError``):

- email already registered (422 ``email_exists``/``user_already_exists``) -> Conflict(code="user_exists")
- 401/403 (our service key was rejected), 404 (wrong SUPABASE_URL) -> Unavailable, logged as an error:
  it is our misconfiguration, not the caller's mistake
- 429 -> RateLimited
- other 4xx -> InvalidInput with GoTrue's message
- network errors, 5xx, unparseable answers -> Unavailable
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from observai.config import Settings
from observai.errors import Conflict, InvalidInput, RateLimited, Unavailable
from observai.observability import logger

if TYPE_CHECKING:
    from supabase import Client

NOT_CONFIGURED_MESSAGE = (
    "Supabase Auth admin calls (invitations, user creation) are not available: invitations need "
    "SUPABASE_URL and the service role key (SUPABASE_SERVICE_ROLE_KEY)"
)
_DUPLICATE_CODES = frozenset({"email_exists", "user_already_exists"})
_DUPLICATE_TEXT = "already been registered"

_clients: dict[tuple[str, str], Client] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class AuthUser:
    id: UUID
    email: str


def _client(settings: Settings) -> Client:
    url = settings.supabase_url
    key = settings.supabase_service_role_key.get_secret_value() if settings.supabase_service_role_key else ""
    if not url or not key:
        raise Unavailable(NOT_CONFIGURED_MESSAGE, retry_after_s=60)
    cache_key = (url, key)
    client = _clients.get(cache_key)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            # Heavy import (postgrest, realtime, storage, httpx/h2): only this code path pays for it.
            from supabase import ClientOptions, SupabaseException, create_client

            options = ClientOptions(auto_refresh_token=False, persist_session=False)
            try:
                client = create_client(url, key, options=options)
            except SupabaseException as exc:
                logger.error("Supabase client misconfigured", extra={"reason": exc.message})
                raise Unavailable(f"Supabase Auth is misconfigured: {exc.message}", retry_after_s=60) from exc
            _clients[cache_key] = client
    return client


def reset_clients() -> None:
    """Forget the cached Supabase clients (tests; a container never needs it)."""
    with _clients_lock:
        for client in _clients.values():
            with contextlib.suppress(Exception):  # best effort while discarding
                client.auth.close()
        _clients.clear()


def _call(operation: str, fn: Callable[[], Any], *, conflict_message: str) -> Any:
    """Run one admin call and translate supabase_auth's errors into ours."""
    from pydantic import ValidationError
    from supabase_auth.errors import AuthError, AuthRetryableError, AuthUnknownError

    try:
        return fn()
    except AuthRetryableError as exc:
        logger.warning("Supabase Auth unreachable", extra={"operation": operation, "status": exc.status})
        raise Unavailable("Supabase Auth is unreachable; retry shortly") from exc
    except AuthUnknownError as exc:
        logger.error(
            "Supabase Auth answered something unexpected",
            extra={"operation": operation, "error_type": type(exc.original_error).__name__},
        )
        raise Unavailable("Supabase Auth answered unexpectedly; retry shortly") from exc
    except AuthError as exc:
        status = getattr(exc, "status", None) or 500
        code = exc.code
        message = exc.message or "Supabase Auth rejected the request"
        if code in _DUPLICATE_CODES or (status == 422 and _DUPLICATE_TEXT in message):
            raise Conflict(conflict_message, code="user_exists") from exc
        if status in (401, 403):
            logger.error(
                "Supabase Auth rejected our service role key: check SUPABASE_SERVICE_ROLE_KEY",
                extra={"operation": operation, "status": status, "gotrue_code": code},
            )
            raise Unavailable("Supabase Auth rejected the server's credentials", retry_after_s=60) from exc
        if status == 404:
            logger.error(
                "Supabase Auth endpoint not found: check SUPABASE_URL",
                extra={"operation": operation, "gotrue_code": code},
            )
            raise Unavailable("Supabase Auth is misconfigured (endpoint not found)", retry_after_s=60) from exc
        if status == 429:
            raise RateLimited(f"Supabase Auth rate limit reached: {message}", retry_after_s=60) from exc
        if 400 <= status < 500:
            details: dict[str, Any] = {"gotrue_code": code}
            reasons = getattr(exc, "reasons", None)
            if reasons:
                details["reasons"] = reasons
            raise InvalidInput(message, details=details) from exc
        logger.warning("Supabase Auth failed", extra={"operation": operation, "status": status, "gotrue_code": code})
        raise Unavailable("Supabase Auth failed; retry shortly") from exc
    except ValidationError as exc:
        logger.error("Supabase Auth response did not parse", extra={"operation": operation})
        raise Unavailable("Supabase Auth answered unexpectedly; retry shortly") from exc


def _auth_user(response: Any, fallback_email: str) -> AuthUser:
    user = response.user
    return AuthUser(id=UUID(str(user.id)), email=user.email or fallback_email)


def invite_user_by_email(
    email: str,
    *,
    settings: Settings,
    redirect_to: str | None = None,
    data: dict | None = None,
) -> AuthUser:
    """Invite someone to sign up (Supabase sends the email); returns the Supabase Auth user created.

    ``redirect_to`` defaults to ``settings.invite_redirect_url``.
    """
    client = _client(settings)
    options: dict[str, Any] = {}
    target = redirect_to or settings.invite_redirect_url
    if target:
        options["redirect_to"] = target
    if data:
        options["data"] = data
    response = _call(
        "invite_user_by_email",
        lambda: client.auth.admin.invite_user_by_email(email, options),  # type: ignore[arg-type]
        conflict_message=(
            "This email is already registered in Supabase Auth: add the user by user_id with "
            "POST /v1/orgs/{org_id}/members instead of inviting them"
        ),
    )
    user = _auth_user(response, email)
    logger.info("Supabase Auth invitation sent", extra={"auth_user_id": str(user.id)})
    return user


def create_user(
    email: str,
    *,
    settings: Settings,
    password: str | None = None,
    email_confirm: bool = True,
) -> AuthUser:
    """Create a Supabase Auth user directly (bootstrap); no email is sent."""
    client = _client(settings)
    attributes: dict[str, Any] = {"email": email, "email_confirm": email_confirm}
    if password is not None:
        attributes["password"] = password
    response = _call(
        "create_user",
        lambda: client.auth.admin.create_user(attributes),  # type: ignore[arg-type]
        conflict_message="A user with this email already exists in Supabase Auth",
    )
    user = _auth_user(response, email)
    logger.info("Supabase Auth user created", extra={"auth_user_id": str(user.id)})
    return user
