"""AI operations under the local runner (`make dev`), over real HTTP: without a Gemini key the features are off and
the routes say so; with GEMINI_API_KEY in the shell (here pointed at the local stand-in) they are available, and an
owner opts the organization in. The key never appears in an answer or in the banner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from observai.ai import provider
from observai_local.dev import DevInfo, ai_status, describe
from observai_local.functions import local_overrides
from observai_local.server import start_server

from tests.helpers.gemini_standin import GeminiStandIn
from tests.helpers.http import client, ok_data
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.e2e

API_KEY = "AIzaLocal-runner-key-0123456789abcdef"


def runner(database_url: str) -> Any:
    return start_server("127.0.0.1", 0, overrides=local_overrides("test", database_url), quiet=True)


@pytest.fixture
def org_and_owner(db: psycopg.Connection[Any]) -> tuple[uuid.UUID, User]:
    org = uuid.uuid4()
    db.execute(
        "insert into public.organizations (id, name, slug) values (%s, 'Local AI', %s)", (org, f"lai-{org.hex[:10]}")
    )
    owner = make_user(db)
    add_membership(db, org, owner.id, "owner")
    return org, owner


@pytest.fixture(autouse=True)
def fresh_models() -> Iterator[None]:
    provider.reset_models()
    yield
    provider.reset_models()


def test_without_a_key_the_features_are_off_and_say_so(
    monkeypatch: pytest.MonkeyPatch, database_url: str, org_and_owner: tuple[uuid.UUID, User]
) -> None:
    # Given `make dev` started from a shell without GEMINI_API_KEY
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    org, owner = org_and_owner
    server, base_url = runner(database_url)
    try:
        with client(base_url, user=owner) as http:
            # When the owner reads the AI settings / Then not available, off
            data = ok_data(http.get(f"/v1/orgs/{org}/ai"))
            assert (data["available"], data["enabled"]) == (False, False)
            # And the opt-in can still be recorded (it takes effect once a key is configured)
            assert ok_data(http.put(f"/v1/orgs/{org}/ai", json={"enabled": True}))["enabled"] is True
            assert ok_data(http.get(f"/v1/orgs/{org}/usage"))["ai"]["total_tokens"] == 0
    finally:
        server.shutdown()
        server.server_close()
    # And the banner says why
    assert ai_status(local_overrides("local")).startswith("off: no GEMINI_API_KEY")


def test_with_a_key_in_the_shell_the_features_are_available(
    monkeypatch: pytest.MonkeyPatch, database_url: str, org_and_owner: tuple[uuid.UUID, User]
) -> None:
    # Given `make dev` started with GEMINI_API_KEY (and the API's URL pointed at the stand-in)
    org, owner = org_and_owner
    with GeminiStandIn(api_key=API_KEY) as gemini:
        monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
        monkeypatch.setenv("GEMINI_BASE_URL", gemini.base_url)
        overrides = local_overrides("test", database_url)
        assert overrides["GEMINI_API_KEY"] == API_KEY  # passed through to the functions
        server, base_url = runner(database_url)
        try:
            with client(base_url, user=owner) as http:
                # When the owner reads and turns on the AI features
                before = http.get(f"/v1/orgs/{org}/ai")
                after = http.put(f"/v1/orgs/{org}/ai", json={"enabled": True})
                # Then available, then enabled; the key is in neither answer
                assert ok_data(before)["available"] is True and ok_data(before)["enabled"] is False
                assert ok_data(after)["enabled"] is True
                assert API_KEY not in before.text and API_KEY not in after.text
        finally:
            server.shutdown()
            server.server_close()
        # And the banner says it is on, with the model, never the key
        line = ai_status(overrides)
        assert line.startswith("on: Gemini gemini-2.5-flash at http://127.0.0.1:") and API_KEY not in line
        info = DevInfo(base_url="http://x", jwt="j", api_key="k", org_id="o", project_id="p", user_id="u")
        banner = describe(info, routes=1, functions=1, schedules=1, database="embedded", ai=line)
        assert f"  AI          {line}" in banner and API_KEY not in banner
