"""Webhook endpoints under the local runner (`make dev`), over real HTTP: the docs' flow (subscribe, test, rotate)
against a real receiver on localhost, its signatures checked with the standardwebhooks package."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from standardwebhooks import Webhook

from tests.helpers.http import client, error_of, ok_data
from tests.helpers.ingest import add_key, make_project
from tests.helpers.users import add_membership, make_user
from tests.helpers.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """A receiver on 127.0.0.1, reachable because loopback is allowed (as `make dev` documents)."""
    monkeypatch.setenv("WEBHOOK_ALLOW_LOOPBACK", "true")
    with WebhookReceiver(reply=Reply(200, b"thanks")) as receiver:
        yield receiver


def test_subscribe_test_and_rotate_over_http(runner_url: str, database_url: str, hook: WebhookReceiver) -> None:
    # Given a project with an owner, a viewer, a read key, and the owner of another organization
    project = make_project(scopes=("ingest",), label="Hooks e2e")
    reader = add_key(project, ("read",))
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        owner, viewer, outsider = make_user(db), make_user(db), make_user(db)
        add_membership(db, project.org_id, owner.id, "owner")
        add_membership(db, project.org_id, viewer.id, "viewer")
        add_membership(db, make_project(label="Other").org_id, outsider.id, "owner")
    base = f"/v1/projects/{project.project_id}/webhooks"

    with client(runner_url, user=owner) as http:
        # When the owner subscribes the receiver and sends a test event
        created = ok_data(http.post(base, json={"url": hook.url("/hook"), "event_types": ["alert.firing"]}), 201)
        tested = ok_data(http.post(f"{base}/{created['id']}/test"))

        # Then the receiver got it, signed with the secret shown at creation
        assert tested["succeeded"] is True and tested["status_code"] == 200 and tested["response_excerpt"] == "thanks"
        (received,) = hook.requests
        payload: dict[str, Any] = Webhook(created["secret"]).verify(received.body, received.headers)
        assert payload["type"] == "webhook.test" and payload["data"]["endpoint_id"] == created["id"]
        assert received.headers["webhook-id"] == tested["webhook_id"]

        # When the owner rotates the secret and tests again
        rotated = ok_data(http.post(f"{base}/{created['id']}/rotate-secret"))
        ok_data(http.post(f"{base}/{created['id']}/test"))

        # Then either secret verifies the new message
        received = hook.requests[-1]
        for secret in (created["secret"], rotated["secret"]):
            Webhook(secret).verify(received.body, received.headers)

    # And the viewer and the read key read the endpoint without any secret
    for who in ({"user": viewer}, {"api_key": reader.key}):
        with client(runner_url, **who) as http:
            (listed,) = ok_data(http.get(base))
            assert listed["id"] == created["id"] and "secret" not in listed
            assert created["secret"] not in http.get(f"{base}/{created['id']}").text
            assert error_of(http.post(f"{base}/{created['id']}/rotate-secret"), 403)

    # And the other organization's owner finds nothing
    with client(runner_url, user=outsider) as http:
        assert error_of(http.get(f"{base}/{created['id']}"), 404)
        assert error_of(http.post(f"{base}/{created['id']}/test"), 404)
    assert len(hook.requests) == 2
