"""From request headers to a Principal: API key (``x-api-key`` or ``Authorization: Bearer oai_...``) or
Supabase JWT (``Authorization: Bearer <jwt>``); then the caller's rate limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from observai import ratelimit
from observai.auth.api_key_format import looks_like_api_key
from observai.auth.api_keys import note_key_used, verify_api_key
from observai.auth.principal import Principal
from observai.config import Settings
from observai.db.breaker import BreakerState, database_breaker
from observai.errors import Unauthenticated, Unavailable
from observai.observability import logger


def credential_from_headers(headers: Mapping[str, str]) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    api_key = lowered.get("x-api-key", "").strip()
    if api_key:
        return api_key
    authorization = lowered.get("authorization", "").strip()
    if not authorization:
        raise Unauthenticated(
            "Missing credentials: send Authorization: Bearer <token> or x-api-key",
            code="credentials_missing",
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token>'", code="credentials_malformed")
    return token.strip()


def authenticate(headers: Mapping[str, str], request_context: Mapping[str, Any], settings: Settings) -> Principal:
    """Identify the caller, charge their rate limit, and return who they are."""
    credential = credential_from_headers(headers)
    http = request_context.get("http") or {}
    source_ip, user_agent, request_id = http.get("sourceIp"), http.get("userAgent"), request_context.get("requestId")
    if looks_like_api_key(credential):
        record = verify_api_key(credential, settings)
        principal = Principal(
            kind="api_key",
            key_id=record.id,
            org_id=record.org_id,
            project_id=record.project_id,
            scopes=record.scopes,
            source_ip=source_ip,
            user_agent=user_agent,
            request_id=request_id,
        )
    else:
        from observai.auth.jwt import verify_supabase_jwt

        claims = verify_supabase_jwt(credential, settings)
        principal = Principal(
            kind="user",
            user_id=UUID(claims["sub"]),
            email=claims.get("email"),
            source_ip=source_ip,
            user_agent=user_agent,
            request_id=request_id,
        )
    charge(principal, settings)
    return principal


def charge(principal: Principal, settings: Settings) -> None:
    """The caller's rate limit and the key's last use: bookkeeping that must not take the service down with it.

    While the database is unreachable (breaker open) both are skipped, and a failure here lets the request
    through: ingestion can still spool, and a rate limit that cannot be read is not a reason to refuse.
    """
    if database_breaker.state is BreakerState.OPEN:
        return
    try:
        # Autocommit statements, each atomic on its own: no transaction round trips on the hot path.
        ratelimit.consume(
            principal.rate_limit_key, rate_per_s=settings.rate_limit_per_second, burst=settings.rate_limit_burst
        )
        if principal.key_id is not None:
            note_key_used(principal.key_id)
    except Unavailable as exc:
        logger.warning("rate limit skipped: database unavailable", extra={"reason": exc.message})
