"""Supabase Auth admin calls through the real ``supabase`` client against a fake GoTrue on localhost."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import jwt as pyjwt
import pytest
from observai.auth import supabase_admin
from observai.auth.supabase_admin import AuthUser, create_user, invite_user_by_email
from observai.config import SUPABASE_CLI_DEV_JWT_SECRET, Settings
from observai.errors import Conflict, InvalidInput, RateLimited, Unavailable
from pydantic import SecretStr

from tests.fakes.supabase_auth import FakeSupabaseAuth

# Shaped like the Supabase CLI's service_role key: an HS256 JWT with role service_role.
SERVICE_KEY = pyjwt.encode(
    {"iss": "supabase-demo", "role": "service_role", "exp": int(time.time()) + 86_400},
    SUPABASE_CLI_DEV_JWT_SECRET,
    algorithm="HS256",
)


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    supabase_admin.reset_clients()
    yield
    supabase_admin.reset_clients()


@pytest.fixture
def fake() -> Iterator[FakeSupabaseAuth]:
    with FakeSupabaseAuth(service_key=SERVICE_KEY) as server:
        yield server


@pytest.fixture
def settings(fake: FakeSupabaseAuth) -> Settings:
    return Settings(stage="test", supabase_url=fake.url, supabase_service_role_key=SecretStr(SERVICE_KEY))


def test_invite_returns_the_created_user_and_sends_the_service_key(fake: FakeSupabaseAuth, settings: Settings) -> None:
    # Given a new email
    # When we invite it with a redirect and metadata
    user = invite_user_by_email(
        "ada@example.com",
        settings=settings,
        redirect_to="https://app.example.com/welcome",
        data={"invited_to_org": "org-1"},
    )
    # Then we get the user Supabase created
    assert isinstance(user, AuthUser)
    assert str(user.id) in fake.users
    assert user.email == "ada@example.com"
    assert fake.users[str(user.id)]["invited_at"]
    # And the request carried the service key, the redirect and the metadata, GoTrue-style
    [req] = fake.requests_to("/auth/v1/invite")
    assert req.method == "POST"
    assert req.headers["apikey"] == SERVICE_KEY
    assert req.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert req.headers["x-supabase-api-version"] == "2024-01-01"
    assert req.query["redirect_to"] == "https://app.example.com/welcome"
    assert req.json == {"email": "ada@example.com", "data": {"invited_to_org": "org-1"}}


def test_invite_defaults_redirect_to_the_configured_url(fake: FakeSupabaseAuth) -> None:
    # Given a configured invite redirect
    settings = Settings(
        stage="test",
        supabase_url=fake.url,
        supabase_service_role_key=SecretStr(SERVICE_KEY),
        invite_redirect_url="https://dash.example.com/accept",
    )
    # When we invite without one
    invite_user_by_email("bob@example.com", settings=settings)
    # Then the configured one is sent
    assert fake.requests_to("/auth/v1/invite")[0].query["redirect_to"] == "https://dash.example.com/accept"


def test_invite_without_any_redirect_sends_none(fake: FakeSupabaseAuth, settings: Settings) -> None:
    invite_user_by_email("carol@example.com", settings=settings)
    assert "redirect_to" not in fake.requests_to("/auth/v1/invite")[0].query


def test_invite_of_a_registered_email_is_a_conflict(fake: FakeSupabaseAuth, settings: Settings) -> None:
    # Given the email already belongs to a Supabase user
    fake.add_user("ada@example.com")
    # When we invite it
    with pytest.raises(Conflict) as info:
        invite_user_by_email("ada@example.com", settings=settings)
    # Then it is a 409-style conflict telling how to add them instead
    assert info.value.code == "user_exists"
    assert "POST /v1/orgs/{org_id}/members" in info.value.message
    assert "user_id" in info.value.message


def test_wrong_service_key_is_unavailable(fake: FakeSupabaseAuth, caplog: pytest.LogCaptureFixture) -> None:
    # Given settings with a service key Supabase does not accept
    settings = Settings(stage="test", supabase_url=fake.url, supabase_service_role_key=SecretStr("wrong-key"))
    # When we invite
    with pytest.raises(Unavailable) as info:
        invite_user_by_email("ada@example.com", settings=settings)
    # Then the fake answered 401 and we report our own misconfiguration as unavailable (not the caller's fault)
    assert fake.requests_to("/auth/v1/invite")
    assert "credentials" in info.value.message
    assert fake.users == {}


def test_wrong_bearer_with_right_apikey_is_unavailable(fake: FakeSupabaseAuth, settings: Settings) -> None:
    # Given a client whose Authorization header was replaced (e.g. by a user session)
    client = supabase_admin._client(settings)
    client.auth.admin._headers["Authorization"] = "Bearer someone-elses-token"
    # When / Then GoTrue's 401 bad_jwt is also our misconfiguration
    with pytest.raises(Unavailable):
        invite_user_by_email("ada@example.com", settings=settings)


@pytest.mark.parametrize(
    "settings",
    [
        Settings(stage="test"),
        Settings(stage="test", supabase_url="http://127.0.0.1:9"),
        Settings(stage="test", supabase_service_role_key=SecretStr(SERVICE_KEY)),
        Settings(stage="test", supabase_url="http://127.0.0.1:9", supabase_service_role_key=SecretStr("")),
    ],
)
def test_not_configured_is_unavailable(settings: Settings) -> None:
    # Given no Supabase URL or no service key
    # When / Then
    with pytest.raises(Unavailable) as info:
        invite_user_by_email("ada@example.com", settings=settings)
    assert "SUPABASE_URL" in info.value.message
    assert "service role key" in info.value.message


def test_invalid_supabase_url_is_unavailable() -> None:
    # Given a URL supabase-py refuses (it only accepts http:// or https://)
    settings = Settings(
        stage="test", supabase_url="ftp://example.com", supabase_service_role_key=SecretStr(SERVICE_KEY)
    )
    # When / Then
    with pytest.raises(Unavailable, match="misconfigured"):
        invite_user_by_email("ada@example.com", settings=settings)


def test_supabase_down_is_unavailable() -> None:
    # Given a Supabase URL where nothing listens
    server = FakeSupabaseAuth(service_key=SERVICE_KEY).start()
    settings = Settings(stage="test", supabase_url=server.url, supabase_service_role_key=SecretStr(SERVICE_KEY))
    server.stop()
    # When / Then
    with pytest.raises(Unavailable, match="unreachable"):
        invite_user_by_email("ada@example.com", settings=settings)


@pytest.mark.parametrize(
    "failure",
    [
        (500, {"code": 500, "msg": "Internal server error"}),
        (503, {"message": "upstream connect error"}),
        (502, "<html>bad gateway</html>"),
        (404, "<html>not found</html>"),
        (404, {"message": "no Route matched with those values"}),
    ],
)
def test_server_side_failures_are_unavailable(
    fake: FakeSupabaseAuth, settings: Settings, failure: tuple[int, object]
) -> None:
    # Given GoTrue (or the gateway in front of it) fails
    fake.fail_with = failure
    # When / Then
    with pytest.raises(Unavailable):
        invite_user_by_email("ada@example.com", settings=settings)


def test_rate_limit_is_rate_limited(fake: FakeSupabaseAuth, settings: Settings) -> None:
    fake.fail_with = (429, {"code": "over_email_send_rate_limit", "message": "Email rate limit exceeded"})
    with pytest.raises(RateLimited) as info:
        invite_user_by_email("ada@example.com", settings=settings)
    assert info.value.retry_after_s >= 1


def test_other_client_errors_are_invalid_input_with_gotrues_message(fake: FakeSupabaseAuth, settings: Settings) -> None:
    # Given an email GoTrue rejects
    # When / Then its own message comes back as invalid input
    with pytest.raises(InvalidInput) as info:
        invite_user_by_email("not-an-email", settings=settings)
    assert info.value.message == "Unable to validate email address: invalid format"
    assert info.value.details == {"gotrue_code": "validation_failed"}


def test_client_is_cached_per_url_and_key(fake: FakeSupabaseAuth, settings: Settings) -> None:
    # Given two invitations with the same settings
    invite_user_by_email("a1@example.com", settings=settings)
    invite_user_by_email("a2@example.com", settings=settings)
    # Then one client served both
    assert len(supabase_admin._clients) == 1
    assert len(fake.users) == 2


def test_create_user_confirms_the_email_by_default(fake: FakeSupabaseAuth, settings: Settings) -> None:
    # Given a bootstrap admin
    # When we create them with a password
    user = create_user("root@example.com", settings=settings, password="correct horse battery")
    # Then GoTrue created a confirmed user and we got its id
    stored = fake.users[str(user.id)]
    assert stored["email_confirmed_at"]
    [req] = fake.requests_to("/auth/v1/admin/users")
    assert req.json == {"email": "root@example.com", "email_confirm": True, "password": "correct horse battery"}
    assert req.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert user == AuthUser(id=uuid.UUID(stored["id"]), email="root@example.com")


def test_create_user_without_password_or_confirmation(fake: FakeSupabaseAuth, settings: Settings) -> None:
    user = create_user("later@example.com", settings=settings, email_confirm=False)
    assert "email_confirmed_at" not in fake.users[str(user.id)]
    assert fake.requests_to("/auth/v1/admin/users")[0].json == {"email": "later@example.com", "email_confirm": False}


def test_create_existing_user_is_a_conflict(fake: FakeSupabaseAuth, settings: Settings) -> None:
    fake.add_user("root@example.com")
    with pytest.raises(Conflict) as info:
        create_user("root@example.com", settings=settings)
    assert info.value.code == "user_exists"


def test_create_user_with_weak_password_is_invalid_input(fake: FakeSupabaseAuth, settings: Settings) -> None:
    with pytest.raises(InvalidInput) as info:
        create_user("root@example.com", settings=settings, password="123")
    assert "at least 6 characters" in info.value.message
    assert info.value.details["reasons"] == ["length"]


def test_supabase_is_imported_lazily() -> None:
    # Given a fresh interpreter
    # When the module is imported
    code = "import sys, observai.auth.supabase_admin, observai.auth.jwt; print('supabase' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Then the heavy supabase package is not loaded yet
    assert out.stdout.strip() == "False"
