"""Verify Supabase Auth JWTs (people), and issue development tokens shaped like Supabase's.

Supabase signs access tokens either with the project's legacy shared secret (HS256) or with an
asymmetric signing key (RS256, ES256) published at ``<SUPABASE_URL>/auth/v1/.well-known/jwks.json``.
The algorithm is read from the unverified header only to choose *where the key comes from*; the
key then pins the one algorithm it may verify, so a token cannot pick a weaker path for itself.

Every rejection is :class:`~observai.errors.Unauthenticated` with a stable ``code``; a JWKS endpoint
that cannot be reached is :class:`~observai.errors.Unavailable` (our dependency failed, retry later).
Tokens are never logged.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from uuid import UUID

import jwt
from jwt.exceptions import InvalidSubjectError

from observai.config import Settings, get_settings
from observai.errors import Unauthenticated, Unavailable
from observai.observability import logger

LEEWAY_S = 30
"""Clock skew tolerated on exp, nbf and iat."""

ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
"""Algorithms verified with a key from the JWKS (the JWK itself pins which one)."""

MAX_TOKEN_CHARS = 16_384

JWKS_LIFESPAN_S = 600
"""How long a fetched JWK Set is trusted before it is fetched again (per container)."""

JWKS_REFRESH_COOLDOWN_S = 10.0
"""Least time between two JWKS fetches forced by an unknown ``kid`` (PyJWT's default is 30 s)."""

JWKS_FETCH_TIMEOUT_S = 3.0

_jwks_clients: dict[str, jwt.PyJWKClient] = {}
_jwks_lock = threading.Lock()


def _reject(code: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, code=code)


def _jwks_client(url: str) -> jwt.PyJWKClient:
    """One PyJWKClient per JWKS URL per container: the JWK Set is cached for JWKS_LIFESPAN_S.

    Per-key caching (``cache_keys``) is deliberately off: PyJWT's key cache is an LRU with no expiry,
    so a key removed from the JWKS (revoked) would stay trusted for the life of the container. The
    JWK Set cache already avoids a network call per request.
    """
    client = _jwks_clients.get(url)
    if client is None:
        with _jwks_lock:
            client = _jwks_clients.get(url)
            if client is None:
                client = jwt.PyJWKClient(
                    url,
                    cache_keys=False,
                    cache_jwk_set=True,
                    lifespan=JWKS_LIFESPAN_S,
                    timeout=JWKS_FETCH_TIMEOUT_S,
                    cooldown_duration=JWKS_REFRESH_COOLDOWN_S,
                )
                _jwks_clients[url] = client
    return client


def reset_jwks_cache() -> None:
    """Forget every cached JWKS client (tests; a container never needs it)."""
    with _jwks_lock:
        _jwks_clients.clear()


def _jwks_unavailable(url: str, exc: Exception) -> Unavailable:
    logger.warning("JWKS fetch failed", extra={"jwks_url": url, "error_type": type(exc).__name__})
    return Unavailable("The identity provider's signing keys could not be fetched; retry shortly", retry_after_s=5)


def _signing_key(url: str, kid: Any) -> jwt.PyJWK:
    client = _jwks_client(url)
    # First make sure the JWK Set itself is usable (cached after the first call): failures here are
    # ours (endpoint down, not JSON, no usable keys), not the caller's.
    try:
        client.get_signing_keys()
    except (jwt.PyJWTError, ValueError, OSError) as exc:
        raise _jwks_unavailable(url, exc) from exc
    if not isinstance(kid, str) or not kid:
        raise _reject("token_unknown_key", "Token header has no key id (kid)")
    try:
        # An unknown kid refetches the JWKS once (at most once per cooldown) before giving up.
        return client.get_signing_key(kid)
    except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError, OSError) as exc:
        raise _jwks_unavailable(url, exc) from exc
    except jwt.PyJWKClientError as exc:
        raise _reject("token_unknown_key", "Token was signed with an unknown key") from exc


def verify_supabase_jwt(token: str, settings: Settings) -> dict[str, Any]:
    """Verify a Supabase access token and return its claims.

    Raises Unauthenticated (with a stable ``code``) for every invalid token, Unavailable when the
    JWKS endpoint cannot be reached.
    """
    if not isinstance(token, str) or not token:
        raise _reject("token_malformed", "Token is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise _reject("token_malformed", "Token is too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _reject("token_malformed", "Token is not a well-formed JWT") from exc
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _reject("token_malformed", "Token header has no algorithm")

    key: str | jwt.PyJWK
    if alg == "HS256":
        secret = settings.jwt_secret
        if secret is None:
            raise _reject("token_unsupported_algorithm", "HS256 tokens are not accepted: no JWT secret configured")
        key = secret
    elif alg in ASYMMETRIC_ALGORITHMS:
        url = settings.jwks_url
        if not url:
            raise _reject("token_unsupported_algorithm", f"{alg} tokens are not accepted: no JWKS URL configured")
        key = _signing_key(url, header.get("kid"))
    else:
        raise _reject("token_unsupported_algorithm", "Token algorithm is not accepted")

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=settings.jwt_audience,
            leeway=LEEWAY_S,
            options={"require": ["exp", "sub"], "verify_signature": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _reject("token_expired", "Token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise _reject("token_not_yet_valid", "Token is not yet valid (nbf or iat in the future)") from exc
    except jwt.InvalidAudienceError as exc:
        raise _reject("token_invalid_audience", "Token audience is not accepted") from exc
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim == "aud":
            raise _reject("token_invalid_audience", "Token has no audience (aud) claim") from exc
        raise _reject("token_missing_claim", f"Token has no {exc.claim} claim") from exc
    except jwt.InvalidSignatureError as exc:
        raise _reject("token_invalid_signature", "Token signature is invalid") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise _reject("token_unsupported_algorithm", "Token algorithm does not match its signing key") from exc
    except InvalidSubjectError as exc:
        raise _reject("token_invalid_subject", "Token subject (sub) must be a user id") from exc
    except jwt.InvalidIssuedAtError as exc:
        raise _reject("token_malformed", "Token issued-at (iat) claim is not a number") from exc
    except jwt.DecodeError as exc:
        raise _reject("token_malformed", "Token is not a well-formed JWT") from exc
    except jwt.PyJWTError as exc:
        raise _reject("token_invalid", "Token is invalid") from exc

    sub = claims.get("sub")
    try:
        UUID(sub)
    except (TypeError, ValueError, AttributeError) as exc:
        raise _reject("token_invalid_subject", "Token subject (sub) must be a user id (UUID)") from exc
    return claims


def issue_dev_token(
    user_id: UUID | str,
    email: str | None = None,
    *,
    settings: Settings | None = None,
    ttl_s: int = 86_400,
    **extra_claims: Any,
) -> str:
    """An HS256 access token shaped like Supabase's, signed with the configured JWT secret.

    For the local runner and tests only: refused when the stage is ``prod``.
    """
    settings = settings if settings is not None else get_settings()
    if settings.stage == "prod":
        raise RuntimeError("Development tokens are never issued in prod")
    secret = settings.jwt_secret
    if secret is None:
        raise RuntimeError("Cannot issue a development token: no JWT secret configured (SUPABASE_JWT_SECRET)")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    sub = str(UUID(str(user_id)))
    now = int(time.time())
    issuer = f"{settings.supabase_url.rstrip('/')}/auth/v1" if settings.supabase_url else "supabase-local"
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": settings.jwt_audience,
        "exp": now + ttl_s,
        "iat": now,
        "email": email or "",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"email": email} if email else {},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    claims.update(extra_claims)
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"})
