"""A real HTTP server on localhost standing in for Supabase Auth (GoTrue).

Paths and JSON shapes follow what supabase_auth 2.34 sends and parses:

- ``POST /auth/v1/invite?redirect_to=...`` body ``{"email", "data"}`` -> 200 with the user object.
- ``POST /auth/v1/admin/users`` body ``AdminUserAttributes`` -> 200 with the user object.
- ``GET /auth/v1/admin/users/{id}`` -> 200 with the user object, or 404 ``user_not_found``.
- ``GET /auth/v1/.well-known/jwks.json`` -> ``{"keys": [...]}`` (the public JWKs in ``.jwks``).

Admin endpoints need ``apikey`` and ``Authorization: Bearer <service key>``: a wrong ``apikey`` gets the
API gateway's 401 ``{"message": "Invalid API key"}``, a wrong bearer GoTrue's 401 ``bad_jwt``. Errors
use GoTrue's format for the API version the client asked for (``X-Supabase-Api-Version: 2024-01-01``
-> ``{"code": "email_exists", "message": ...}`` plus the same response header; else the legacy
``{"code": 422, "error_code": ..., "msg": ...}``).

Usage::

    with FakeSupabaseAuth(service_key=key) as fake:
        settings = Settings(stage="test", supabase_url=fake.url, supabase_service_role_key=key)
        ...
        assert fake.requests[-1].path == "/auth/v1/invite"
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_VERSION_HEADER = "X-Supabase-Api-Version"
DUPLICATE_EMAIL_MSG = "A user with this email address has already been registered"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    json: Any


@dataclass
class FakeSupabaseAuth:
    service_key: str = "service-role-key"
    jwks: list[dict[str, Any]] = field(default_factory=list)
    """Public JWKs served at /auth/v1/.well-known/jwks.json; mutate freely (rotation tests)."""
    fail_with: tuple[int, Any] | None = None
    """When set, every /auth/v1 request except the JWKS answers this (status, json body)."""
    jwks_fail_with: tuple[int, Any] | None = None
    """When set, the JWKS endpoint answers this (status, body) instead."""
    requests: list[RecordedRequest] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Users by id, in GoTrue's JSON shape."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeSupabaseAuth:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-supabase-auth", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSupabaseAuth:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/auth/v1/.well-known/jwks.json"

    # state helpers ---------------------------------------------------------------------------

    def add_user(self, email: str, *, user_id: str | None = None, confirmed: bool = True) -> dict[str, Any]:
        """Pre-register a user (as if they had signed up)."""
        with self._lock:
            return self._create_user(email, user_id=user_id, confirmed=confirmed)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def _find_by_email(self, email: str) -> dict[str, Any] | None:
        wanted = email.strip().lower()
        return next((u for u in self.users.values() if (u.get("email") or "").lower() == wanted), None)

    def _create_user(
        self,
        email: str,
        *,
        user_id: str | None = None,
        confirmed: bool = False,
        invited: bool = False,
        user_metadata: dict[str, Any] | None = None,
        app_metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        uid = user_id or str(uuid.uuid4())
        email = email.strip().lower()
        user: dict[str, Any] = {
            "id": uid,
            "aud": "authenticated",
            "role": "authenticated",
            "email": email,
            "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"], **(app_metadata or {})},
            "user_metadata": dict(user_metadata or {}),
            "identities": [
                {
                    "identity_id": str(uuid.uuid4()),
                    "id": uid,
                    "user_id": uid,
                    "identity_data": {"email": email, "email_verified": False, "sub": uid},
                    "provider": "email",
                    "last_sign_in_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "email": email,
                }
            ],
            "created_at": now,
            "updated_at": now,
            "is_anonymous": False,
        }
        if confirmed:
            user["email_confirmed_at"] = now
            user["confirmed_at"] = now
        if invited:
            user["invited_at"] = now
            user["confirmation_sent_at"] = now
        self.users[uid] = user
        return user


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSupabaseAuth
    server_version = "FakeGoTrue/2.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # plumbing ----------------------------------------------------------------------------------

    def _new_api(self) -> bool:
        return (self.headers.get(API_VERSION_HEADER) or "") >= "2024-01-01"

    def _send(self, status: int, body: Any, *, versioned: bool = True) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if versioned and self._new_api():
            self.send_header(API_VERSION_HEADER, "2024-01-01")
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, error_code: str, message: str, **extra: Any) -> None:
        if self._new_api():
            self._send(status, {"code": error_code, "message": message, **extra})
        else:
            self._send(status, {"code": status, "error_code": error_code, "msg": message, **extra})

    def _record(self) -> RecordedRequest:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        rec = RecordedRequest(
            method=self.command,
            path=parts.path,
            query={k: v[0] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            json=body,
        )
        with self.fake._lock:
            self.fake.requests.append(rec)
        return rec

    def _authorized_admin(self, rec: RecordedRequest) -> bool:
        key = self.fake.service_key
        if rec.headers.get("apikey") != key:
            # Supabase's API gateway answers before GoTrue sees the request: no error code, no version.
            self._send(
                401,
                {"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."},
                versioned=False,
            )
            return False
        auth = rec.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            self._error(401, "no_authorization", "This endpoint requires a Bearer token")
            return False
        if auth.removeprefix("Bearer ") != key:
            self._error(401, "bad_jwt", "invalid JWT: unable to parse or verify signature, signature is invalid")
            return False
        return True

    # routes ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        rec = self._record()
        if rec.path == "/auth/v1/.well-known/jwks.json":
            if self.fake.jwks_fail_with is not None:
                status, body = self.fake.jwks_fail_with
                self._send(status, body, versioned=False)
                return
            self._send(200, {"keys": list(self.fake.jwks)}, versioned=False)
            return
        if self._failing():
            return
        if rec.path.startswith("/auth/v1/admin/users/"):
            if not self._authorized_admin(rec):
                return
            uid = rec.path.removeprefix("/auth/v1/admin/users/")
            with self.fake._lock:
                user = self.fake.users.get(uid)
            if user is None:
                self._error(404, "user_not_found", "User not found")
            else:
                self._send(200, user)
            return
        self._error(404, "not_found", "Not found")

    def do_POST(self) -> None:
        rec = self._record()
        if self._failing():
            return
        if rec.path == "/auth/v1/invite":
            if not self._authorized_admin(rec):
                return
            self._invite(rec)
            return
        if rec.path == "/auth/v1/admin/users":
            if not self._authorized_admin(rec):
                return
            self._admin_create(rec)
            return
        self._error(404, "not_found", "Not found")

    def _failing(self) -> bool:
        if self.fake.fail_with is None:
            return False
        status, body = self.fake.fail_with
        self._send(status, body, versioned=False)
        return True

    def _invite(self, rec: RecordedRequest) -> None:
        body = rec.json if isinstance(rec.json, dict) else {}
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            self._error(400, "validation_failed", "Unable to validate email address: invalid format")
            return
        with self.fake._lock:
            if self.fake._find_by_email(email) is not None:
                user = None
            else:
                user = self.fake._create_user(email, invited=True, user_metadata=body.get("data") or {})
        if user is None:
            self._error(422, "email_exists", DUPLICATE_EMAIL_MSG)
        else:
            self._send(200, user)

    def _admin_create(self, rec: RecordedRequest) -> None:
        body = rec.json if isinstance(rec.json, dict) else {}
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            self._error(400, "validation_failed", "Unable to validate email address: invalid format")
            return
        password = body.get("password")
        if password is not None and len(str(password)) < 6:
            self._error(
                422,
                "weak_password",
                "Password should be at least 6 characters.",
                weak_password={"reasons": ["length"]},
            )
            return
        with self.fake._lock:
            if self.fake._find_by_email(email) is not None:
                user = None
            else:
                user = self.fake._create_user(
                    email,
                    user_id=body.get("id"),
                    confirmed=bool(body.get("email_confirm")),
                    user_metadata=body.get("user_metadata") or body.get("data"),
                    app_metadata=body.get("app_metadata"),
                )
        if user is None:
            self._error(422, "email_exists", DUPLICATE_EMAIL_MSG)
        else:
            self._send(200, user)
