"""A person's whole tenancy journey over HTTP against the local runner: orgs, projects, API keys, audit, members."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest

from tests.helpers.http import client, error_of, ok_data
from tests.helpers.users import User, make_user

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _no_api_key_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner is in-process and reads settings per request: no per-container key cache, so a revoked
    # or expired key is refused on the next request (deployed, the cache bounds that at 60 s).
    monkeypatch.setenv("API_KEY_CACHE_TTL_S", "0")


def new_org(http: httpx.Client, name: str | None = None) -> dict[str, Any]:
    return ok_data(http.post("/v1/orgs", json={"name": name or f"Acme {uuid.uuid4().hex[:6]}"}), 201)


def whoami(runner_url: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{runner_url}/v1/whoami", headers=headers)


def test_org_and_projects_with_cursor_pagination(runner_url: str, db) -> None:
    # Given a signed-in user with no organization
    alice = make_user(db)
    with client(runner_url, user=alice) as http:
        assert ok_data(http.get("/v1/orgs")) == []
        # When she creates an organization
        org = new_org(http, "Acme Observability")
        # Then it is 201, she is its owner, and the slug is derived from the name
        assert org["role"] == "owner"
        assert org["name"] == "Acme Observability"
        assert org["slug"].startswith("acme-observability")
        assert org["plan"] == "free"
        assert ok_data(http.get(f"/v1/orgs/{org['id']}")) == org

        # When she creates three projects and lists them two at a time
        created = [
            ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": f"Service {i}"}), 201) for i in range(3)
        ]
        assert all(p["org_id"] == org["id"] for p in created)
        first = http.get(f"/v1/orgs/{org['id']}/projects", params={"limit": 2})
        body = first.json()
        # Then the first page has two and a cursor, the second the last one and no cursor, in creation order
        assert first.status_code == 200
        assert len(body["data"]) == 2
        assert body["meta"]["limit"] == 2
        cursor = body["meta"]["next_cursor"]
        assert cursor
        second = http.get(f"/v1/orgs/{org['id']}/projects", params={"limit": 2, "cursor": cursor}).json()
        assert len(second["data"]) == 1
        assert second["meta"]["next_cursor"] is None
        listed = [p["id"] for p in body["data"] + second["data"]]
        assert len(set(listed)) == 3
        assert listed == [p["id"] for p in created]

        # When she creates a second organization and pages through her organizations one at a time
        other = new_org(http)
        page1 = http.get("/v1/orgs", params={"limit": 1}).json()
        page2 = http.get("/v1/orgs", params={"limit": 1, "cursor": page1["meta"]["next_cursor"]}).json()
        # Then she sees both, once each, and nothing else
        assert [o["id"] for o in page1["data"] + page2["data"]] == [org["id"], other["id"]]
        assert page2["meta"]["next_cursor"] is None

        # When she renames the organization and a project
        renamed = ok_data(http.patch(f"/v1/orgs/{org['id']}", json={"name": "Acme Inc"}))
        project = ok_data(http.patch(f"/v1/projects/{created[0]['id']}", json={"name": "Checkout", "slug": "checkout"}))
        # Then the changes are returned and read back
        assert renamed["name"] == "Acme Inc" and renamed["slug"] == org["slug"]
        assert renamed["updated_at"] >= org["updated_at"]
        assert project["name"] == "Checkout" and project["slug"] == "checkout"
        assert ok_data(http.get(f"/v1/projects/{created[0]['id']}"))["name"] == "Checkout"
        assert ok_data(http.get(f"/v1/orgs/{org['id']}"))["name"] == "Acme Inc"
        # And an owner may change the plan
        assert ok_data(http.patch(f"/v1/orgs/{org['id']}", json={"plan": "pro"}))["plan"] == "pro"

        # And whoami lists both memberships
        me = ok_data(http.get("/v1/whoami"))
        assert me["kind"] == "user" and me["user_id"] == str(alice.id) and me["email"] == alice.email
        assert {(m["org_id"], m["role"]) for m in me["memberships"]} == {(org["id"], "owner"), (other["id"], "owner")}


def test_api_key_lifecycle(runner_url: str, db) -> None:
    # Given an owner with an organization and a project
    alice = make_user(db)
    with client(runner_url, user=alice) as http:
        org = new_org(http)
        project = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "api"}), 201)
        keys_url = f"/v1/projects/{project['id']}/api-keys"

        # When she creates an API key
        created = ok_data(http.post(keys_url, json={"name": "ci", "scopes": ["read", "ingest"]}), 201)
        key = created["key"]
        # Then the key is shown once, in our format, and only its hash is stored
        assert key.startswith("oai_") and len(key) == 42
        assert created["prefix"] == key[:16]
        assert created["scopes"] == ["ingest", "read"]
        assert created["revoked_at"] is None and created["expires_at"] is None
        row = db.execute("select key_hash from public.api_keys where id = %s", (created["id"],)).fetchone()
        assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()

        # When she lists the keys
        listing = http.get(keys_url)
        # Then the key is there, without the secret or its hash
        items = ok_data(listing)
        assert [k["id"] for k in items] == [created["id"]]
        assert "key" not in items[0] and "key_hash" not in items[0]
        digest = hashlib.sha256(key.encode()).hexdigest()
        assert key not in listing.text and key[16:] not in listing.text and digest not in listing.text

    # When a program uses the key, as x-api-key and as a bearer token
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
        me = ok_data(whoami(runner_url, **headers))
        # Then it is identified as that key, bound to the org and project, with its scopes
        assert me["kind"] == "api_key"
        assert me["key_id"] == created["id"]
        assert me["org_id"] == org["id"] and me["project_id"] == project["id"]
        assert me["scopes"] == ["ingest", "read"]
        assert me["user_id"] is None and me["memberships"] == []
    assert db.execute("select last_used_at from public.api_keys where id = %s", (created["id"],)).fetchone()[
        "last_used_at"
    ]

    with client(runner_url, user=alice) as http:
        # When she rotates it with the default grace period
        rotated = ok_data(http.post(f"{keys_url}/{created['id']}/rotate", json={}), 201)
        # Then a new key with the same name and scopes exists, and both keys work during the grace period
        assert rotated["key"] != key and rotated["rotated_from_id"] == created["id"]
        assert rotated["name"] == "ci" and rotated["scopes"] == ["ingest", "read"]
        assert ok_data(whoami(runner_url, **{"x-api-key": rotated["key"]}))["key_id"] == rotated["id"]
        assert ok_data(whoami(runner_url, **{"x-api-key": key}))["key_id"] == created["id"]

        # When she rotates the new key with no grace period
        third = ok_data(http.post(f"{keys_url}/{rotated['id']}/rotate", json={"grace_period_seconds": 0}), 201)
        # Then the rotated key stops working at once, and the newest works
        assert error_of(whoami(runner_url, **{"x-api-key": rotated["key"]}), 401)["code"] == "api_key_expired"
        assert ok_data(whoami(runner_url, **{"x-api-key": third["key"]}))["key_id"] == third["id"]
        # And an expired key cannot be rotated again
        assert error_of(http.post(f"{keys_url}/{rotated['id']}/rotate", json={}), 409)["code"] == "api_key_expired"

        # When she revokes the newest key
        revoked = ok_data(http.delete(f"{keys_url}/{third['id']}"))
        # Then it is refused afterwards, as revoked, and shows as revoked in the listing
        assert revoked == {"id": third["id"], "deleted": True}
        response = whoami(runner_url, **{"x-api-key": third["key"]})
        assert error_of(response, 401)["code"] == "api_key_revoked"
        assert response.headers["www-authenticate"].lower().startswith("bearer")
        listed = {k["id"]: k for k in ok_data(http.get(keys_url))}
        assert set(listed) == {created["id"], rotated["id"], third["id"]}
        assert listed[third["id"]]["revoked_at"] is not None
        # And revoking again is harmless, rotating a revoked key is a conflict
        assert ok_data(http.delete(f"{keys_url}/{third['id']}")) == revoked
        assert error_of(http.post(f"{keys_url}/{third['id']}/rotate", json={}), 409)["code"] == "api_key_revoked"
        # And an API key cannot manage organizations (user token needed)
    assert (
        error_of(httpx.get(f"{runner_url}/v1/orgs", headers={"x-api-key": key}), 403)["code"] == "user_token_required"
    )


def test_audit_log_lists_actions_newest_first_with_actor_and_source(runner_url: str, db) -> None:
    # Given an owner who performs a series of sensitive actions
    alice = make_user(db)
    with client(runner_url, user=alice, headers={"User-Agent": "tenancy-e2e/1.0"}) as http:
        org = new_org(http)
        project = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "audited"}), 201)
        keys_url = f"/v1/projects/{project['id']}/api-keys"
        key = ok_data(http.post(keys_url, json={"name": "k", "scopes": ["ingest"]}), 201)
        new_key = ok_data(http.post(f"{keys_url}/{key['id']}/rotate", json={"grace_period_seconds": 60}), 201)
        ok_data(http.delete(f"{keys_url}/{new_key['id']}"))
        ok_data(http.patch(f"/v1/orgs/{org['id']}", json={"name": "Audited Org"}))
        ok_data(http.patch(f"/v1/projects/{project['id']}", json={"name": "audited 2"}))

        # When she reads the audit log
        entries = ok_data(http.get(f"/v1/orgs/{org['id']}/audit-log"))

    # Then every action is there, newest first
    assert [e["action"] for e in entries] == [
        "project.update",
        "org.update",
        "api_key.revoke",
        "api_key.rotate",
        "api_key.create",
        "project.create",
        "org.create",
    ]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    # And each names the actor, the source ip, the user agent and the request
    for entry in entries:
        assert entry["org_id"] == org["id"]
        assert entry["actor_type"] == "user" and entry["actor_id"] == str(alice.id)
        assert entry["source_ip"] == "127.0.0.1"
        assert entry["user_agent"] == "tenancy-e2e/1.0"
        assert entry["request_id"]
    assert len({e["request_id"] for e in entries}) == len(entries)
    # And targets and details are recorded without secrets
    by_action = {e["action"]: e for e in entries}
    assert by_action["api_key.rotate"]["target_id"] == key["id"]
    assert by_action["api_key.rotate"]["details"]["new_key_id"] == new_key["id"]
    assert by_action["api_key.revoke"]["target_id"] == new_key["id"]
    assert by_action["org.update"]["details"] == {"name": "Audited Org"}
    assert key["key"] not in str(entries) and new_key["key"] not in str(entries)


def test_audit_log_pages(runner_url: str, db) -> None:
    # Given an organization with four audit entries
    alice = make_user(db)
    with client(runner_url, user=alice) as http:
        org = new_org(http)
        for i in range(3):
            ok_data(http.patch(f"/v1/orgs/{org['id']}", json={"name": f"name {i}"}))
        # When reading it three at a time
        first = http.get(f"/v1/orgs/{org['id']}/audit-log", params={"limit": 3}).json()
        second = http.get(
            f"/v1/orgs/{org['id']}/audit-log", params={"limit": 3, "cursor": first["meta"]["next_cursor"]}
        ).json()
    # Then the pages continue without overlap and end with the creation
    ids = [e["id"] for e in first["data"] + second["data"]]
    assert len(first["data"]) == 3 and len(second["data"]) == 1
    assert ids == sorted(set(ids), reverse=True)
    assert second["data"][-1]["action"] == "org.create"
    assert second["meta"]["next_cursor"] is None


def test_members_add_change_remove(runner_url: str, db) -> None:
    # Given an owner and another registered user
    alice, bob = make_user(db), make_user(db)
    with client(runner_url, user=alice) as http:
        org = new_org(http)
        members_url = f"/v1/orgs/{org['id']}/members"
        # When she adds him as a member
        added = ok_data(http.post(members_url, json={"user_id": str(bob.id), "role": "member"}), 201)
        # Then he is a member with his e-mail and role, and sees the organization
        assert added["user_id"] == str(bob.id) and added["email"] == bob.email and added["role"] == "member"
        with client(runner_url, user=bob) as as_bob:
            assert ok_data(as_bob.get(f"/v1/orgs/{org['id']}"))["role"] == "member"
            assert org["id"] in [o["id"] for o in ok_data(as_bob.get("/v1/orgs"))]
        # And adding him twice is a conflict
        assert error_of(http.post(members_url, json={"user_id": str(bob.id), "role": "viewer"}), 409)
        # And a user id nobody has is a 404
        assert error_of(http.post(members_url, json={"user_id": str(uuid.uuid4()), "role": "viewer"}), 404)

        # When she makes him admin
        changed = ok_data(http.patch(f"{members_url}/{bob.id}", json={"role": "admin"}))
        # Then his role is admin
        assert changed["role"] == "admin" and changed["email"] == bob.email
        with client(runner_url, user=bob) as as_bob:
            assert ok_data(as_bob.get(f"/v1/orgs/{org['id']}"))["role"] == "admin"

        # When she removes him
        assert ok_data(http.delete(f"{members_url}/{bob.id}")) == {"id": str(bob.id), "deleted": True}
        # Then he no longer sees the organization, and only she is left
        with client(runner_url, user=bob) as as_bob:
            assert error_of(as_bob.get(f"/v1/orgs/{org['id']}"), 404)
        rows = db.execute("select user_id, role from public.memberships where org_id = %s", (org["id"],)).fetchall()
        assert [(str(r["user_id"]), r["role"]) for r in rows] == [(str(alice.id), "owner")]
        # And the audit log has the three changes, newest first
        entries = ok_data(http.get(f"/v1/orgs/{org['id']}/audit-log"))
        assert [e["action"] for e in entries[:3]] == ["member.remove", "member.update_role", "member.add"]
        assert entries[1]["details"] == {"from": "member", "to": "admin"}
        assert all(e["target_id"] == str(bob.id) for e in entries[:3])


def test_members_list_with_emails_and_pages(runner_url: str, db) -> None:
    # Given an organization with an owner and two more members
    alice, bob, carol = make_user(db), make_user(db), make_user(db)
    with client(runner_url, user=alice) as http:
        org = new_org(http)
        members_url = f"/v1/orgs/{org['id']}/members"
        ok_data(http.post(members_url, json={"user_id": str(bob.id), "role": "member"}), 201)
        ok_data(http.post(members_url, json={"user_id": str(carol.id), "role": "viewer"}), 201)
        # When she lists the members two at a time
        first = http.get(members_url, params={"limit": 2})
        page1 = ok_data(first)
        page2 = ok_data(http.get(members_url, params={"limit": 2, "cursor": first.json()["meta"]["next_cursor"]}))
    # Then all three appear once, in the order they joined, with e-mails and roles
    assert [(m["user_id"], m["email"], m["role"]) for m in page1 + page2] == [
        (str(alice.id), alice.email, "owner"),
        (str(bob.id), bob.email, "member"),
        (str(carol.id), carol.email, "viewer"),
    ]


def test_delete_project_then_org(runner_url: str, db) -> None:
    # Given an owner with an organization, two projects and an API key
    alice: User = make_user(db)
    with client(runner_url, user=alice) as http:
        org = new_org(http)
        doomed = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "doomed"}), 201)
        kept = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "kept"}), 201)
        key = ok_data(http.post(f"/v1/projects/{doomed['id']}/api-keys", json={"name": "k", "scopes": ["read"]}), 201)

        # When she deletes a project
        assert ok_data(http.delete(f"/v1/projects/{doomed['id']}")) == {"id": doomed["id"], "deleted": True}
        # Then it is gone, its keys with it, and the other project stays
        assert error_of(http.get(f"/v1/projects/{doomed['id']}"), 404)["code"] == "not_found"
        assert [p["id"] for p in ok_data(http.get(f"/v1/orgs/{org['id']}/projects"))] == [kept["id"]]
        assert error_of(whoami(runner_url, **{"x-api-key": key["key"]}), 401)["code"] == "api_key_invalid"

        # When she deletes the organization
        assert ok_data(http.delete(f"/v1/orgs/{org['id']}")) == {"id": org["id"], "deleted": True}
        # Then it, its projects and memberships are gone, and it no longer appears in her list
        assert error_of(http.get(f"/v1/orgs/{org['id']}"), 404)["code"] == "not_found"
        assert error_of(http.get(f"/v1/projects/{kept['id']}"), 404)
        assert org["id"] not in [o["id"] for o in ok_data(http.get("/v1/orgs"))]
    for table in ("projects", "memberships", "api_keys"):
        assert (
            db.execute(f"select count(*) as n from public.{table} where org_id = %s", (org["id"],)).fetchone()["n"] == 0
        )
