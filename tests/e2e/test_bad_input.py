"""Bad input and bad credentials over HTTP: always the right 4xx in the envelope, never a 500, nothing half-written."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from observai.auth.api_key_format import generate_key
from observai.auth.jwt import issue_dev_token

from tests.helpers.http import client, error_of, ok_data
from tests.helpers.users import User, make_user

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _no_api_key_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY_CACHE_TTL_S", "0")


@pytest.fixture
def owner(db) -> User:
    return make_user(db)


@pytest.fixture
def http(runner_url: str, owner: User) -> httpx.Client:
    with client(runner_url, user=owner) as c:
        yield c


@pytest.fixture
def org(http: httpx.Client) -> dict[str, Any]:
    return ok_data(http.post("/v1/orgs", json={"name": f"Bad Input {uuid.uuid4().hex[:6]}"}), 201)


@pytest.fixture
def project(http: httpx.Client, org: dict[str, Any]) -> dict[str, Any]:
    return ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "bad input project"}), 201)


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def audit_count(db, org_id: str) -> int:
    return db.execute("select count(*) as n from public.audit_log where org_id = %s", (org_id,)).fetchone()["n"]


# --- bodies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ['{"name": "x",', "{'name': 'x'}", "name=x", "[1, 2", '"unterminated'])
def test_malformed_json_is_400(http: httpx.Client, raw: str) -> None:
    # Given a body that is not JSON, sent as JSON
    # When creating an organization with it
    response = http.post("/v1/orgs", content=raw, headers={"content-type": "application/json"})
    # Then 400 malformed_json
    assert error_of(response, 400)["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", '{"name": "x"}'),
        ("application/x-www-form-urlencoded", "name=x"),
        (
            "multipart/form-data; boundary=abc",
            '--abc\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--abc--',
        ),
        ("application/xml", "<name>x</name>"),
    ],
)
def test_wrong_content_type_is_415(http: httpx.Client, content_type: str, content: str) -> None:
    # Given a body with a content type other than JSON
    # When posting it
    response = http.post("/v1/orgs", content=content, headers={"content-type": content_type})
    # Then 415
    assert error_of(response, 415)["code"] == "unsupported_media_type"


def test_missing_content_type_with_a_body_is_415(runner_url: str, owner: User) -> None:
    # Given a JSON body sent without any content type
    raw = httpx.Request("POST", f"{runner_url}/v1/orgs", content=b'{"name": "x"}', headers=owner.headers)
    assert "content-type" not in raw.headers
    # When sent
    with httpx.Client() as c:
        response = c.send(raw)
    # Then 415
    assert error_of(response, 415)["code"] == "unsupported_media_type"


def test_oversized_body_is_413(http: httpx.Client, db) -> None:
    # Given a JSON body just over 1 MiB
    name = f"big-{uuid.uuid4().hex}"
    body = json.dumps({"name": name, "slug": "x" * (1024 * 1024)})
    assert len(body) > 1024 * 1024
    # When posting it
    response = http.post("/v1/orgs", content=body, headers={"content-type": "application/json"})
    # Then 413 with the limit, and nothing was created
    error = error_of(response, 413)
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"limit_bytes": 1_048_576}
    assert db.execute("select count(*) as n from public.organizations where name = %s", (name,)).fetchone()["n"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "owner_id": "someone"},
        {"name": "x", "plan": "enterprise"},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "x", "slug": "Bad Slug!"},
        {"name": 5},
        {},
        [],
        None,
    ],
    ids=[
        "unknown-field",
        "plan-on-create",
        "empty-name",
        "blank-name",
        "long-name",
        "bad-slug",
        "name-not-string",
        "empty-object",
        "array",
        "null",
    ],
)
def test_invalid_bodies_are_422_with_locations(http: httpx.Client, body: Any) -> None:
    # Given a body that is JSON but not a valid OrgCreate
    # When creating an organization with it
    response = http.post("/v1/orgs", content=json.dumps(body), headers={"content-type": "application/json"})
    # Then 422 validation_error with field locations
    error = error_of(response, 422)
    assert error["code"] == "validation_error"
    assert all(d["loc"] and d["loc"][0] == "body" for d in error["details"])


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": ["root"]},
        {"name": "k", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "k", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00"},
        {"name": "k", "scopes": ["read"], "key": "oai_chosen_by_me"},
    ],
    ids=["no-scopes", "unknown-scope", "expires-in-past", "expires-without-zone", "client-chosen-key"],
)
def test_invalid_api_key_requests_are_422_and_create_nothing(
    http: httpx.Client, project: dict[str, Any], db, body: dict[str, Any]
) -> None:
    # Given an API key request that is invalid
    # When posting it
    response = http.post(f"/v1/projects/{project['id']}/api-keys", json=body)
    # Then 422, and no key exists for the project
    assert error_of(response, 422)["code"] == "validation_error"
    assert (
        db.execute("select count(*) as n from public.api_keys where project_id = %s", (project["id"],)).fetchone()["n"]
        == 0
    )


def test_rotate_with_out_of_range_grace_is_422(http: httpx.Client, project: dict[str, Any]) -> None:
    # Given a key
    key = ok_data(http.post(f"/v1/projects/{project['id']}/api-keys", json={"name": "k", "scopes": ["read"]}), 201)
    url = f"/v1/projects/{project['id']}/api-keys/{key['id']}/rotate"
    # When rotating with a negative or too-long grace period
    # Then 422
    for grace in (-1, 7 * 86_400 + 1, "soon"):
        assert error_of(http.post(url, json={"grace_period_seconds": grace}), 422)["code"] == "validation_error"


# --- paths and queries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/orgs/not-a-uuid"),
        ("PATCH", "/v1/orgs/123"),
        ("GET", "/v1/projects/zzzz"),
        ("DELETE", "/v1/orgs/{org}/members/not-a-user"),
        ("DELETE", "/v1/projects/{project}/api-keys/nope"),
    ],
)
def test_invalid_uuid_in_path_is_422(
    http: httpx.Client, org: dict[str, Any], project: dict[str, Any], method: str, path: str
) -> None:
    # Given a path whose id is not a UUID
    path = path.format(org=org["id"], project=project["id"])
    # When calling it
    response = http.request(method, path, json={"name": "x"} if method == "PATCH" else None)
    # Then 422 pointing at the path parameter
    error = error_of(response, 422)
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"][0] == "path"


@pytest.mark.parametrize("limit", ["0", "-1", "201", "1000", "abc", "1.5"])
@pytest.mark.parametrize("path", ["/v1/orgs", "/v1/orgs/{org}/projects", "/v1/orgs/{org}/audit-log"])
def test_out_of_range_limit_is_422(http: httpx.Client, org: dict[str, Any], path: str, limit: str) -> None:
    # Given a list route and a limit outside 1..200
    # When listing with it
    response = http.get(path.format(org=org["id"]), params={"limit": limit})
    # Then 422 pointing at the limit
    error = error_of(response, 422)
    assert error["details"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize("value", ["0", "0.5", "1700000000"])
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/orgs/{org}/usage", "to"),
        ("/v1/projects/{project}/logs", "to"),
        ("/v1/projects/{project}/logs/histogram", "from"),
        ("/v1/projects/{project}/traces", "to"),
        ("/v1/projects/{project}/services", "from"),
    ],
)
def test_a_number_for_a_date_is_422(
    http: httpx.Client, org: dict[str, Any], project: dict[str, Any], path: str, name: str, value: str
) -> None:
    # Given a route taking RFC 3339 dates, and a number (pydantic alone would read it as Unix time: 1970)
    # When passing the number as the date (found by Schemathesis: ?to=0.5 answered 200 with an empty 1970 window)
    response = http.get(path.format(org=org["id"], project=project["id"]), params={name: value})
    # Then 422 pointing at the parameter
    error = error_of(response, 422)
    assert error["details"][0]["loc"] == ["query", name]
    assert "RFC 3339" in error["details"][0]["message"]


def test_a_number_for_a_date_in_a_body_is_422(http: httpx.Client, project: dict[str, Any]) -> None:
    response = http.post(
        f"/v1/projects/{project['id']}/metrics/query",
        json={"queries": [{"metric": "m", "from": 0, "to": 1_700_000_000}]},
    )
    error = error_of(response, 422)
    assert {tuple(d["loc"][-1:]) for d in error["details"]} >= {("from",), ("to",)}


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("!!!", id="not-base64"),
        pytest.param("abc", id="base64-not-json"),
        pytest.param(b64([1, 2]), id="json-array"),
        pytest.param(b64("text"), id="json-string"),
        pytest.param("x" * 513, id="too-long"),
        pytest.param(
            b64({"ts": "yesterday", "id": "x"}),
            id="bad-timestamp",
        ),
        pytest.param(
            b64({"ts": "2024-01-01T00:00:00+00:00", "id": "not-a-uuid"}),
            id="bad-id",
        ),
        pytest.param(b64({"before": 10}), id="another-lists-cursor"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/orgs", "/v1/orgs/{org}/projects", "/v1/projects/{project}/api-keys"])
def test_bad_cursor_is_4xx(
    http: httpx.Client, org: dict[str, Any], project: dict[str, Any], path: str, cursor: str
) -> None:
    # Given a cursor that no previous page returned
    # When listing with it
    response = http.get(path.format(org=org["id"], project=project["id"]), params={"cursor": cursor})
    # Then a 400 invalid cursor (422 when over the length limit), never a 500
    error = error_of(response, (400, 422))
    if response.status_code == 400:
        assert error["code"] == "invalid_input" and error["details"]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(b64({"before": "x"}), id="before-not-int"),
        pytest.param(
            b64({"before": 10**30}),
            id="before-too-big",
        ),
    ],
)
def test_bad_audit_cursor_is_400(http: httpx.Client, org: dict[str, Any], cursor: str) -> None:
    # Given a tampered audit-log cursor
    response = http.get(f"/v1/orgs/{org['id']}/audit-log", params={"cursor": cursor})
    # Then 400, never a 500
    assert error_of(response, 400)["code"] == "invalid_input"


# --- credentials --------------------------------------------------------------------------------------


def _jwt(user: User, **claims: Any) -> str:
    return issue_dev_token(user.id, user.email, **claims)


@pytest.mark.parametrize(
    ("case", "expected_code"),
    [
        ("missing", "credentials_missing"),
        ("basic-scheme", "credentials_malformed"),
        ("bearer-without-token", "credentials_malformed"),
        ("token-scheme", "credentials_malformed"),
        ("not-a-jwt", "token_malformed"),
        ("expired-jwt", "token_expired"),
        ("other-secret", "token_invalid_signature"),
        ("wrong-audience", "token_invalid_audience"),
        ("no-audience", "token_invalid_audience"),
        ("subject-not-uuid", "token_invalid_subject"),
        ("alg-none", "token_unsupported_algorithm"),
        ("garbage-key", "api_key_malformed"),
        ("bad-checksum-key", "api_key_malformed"),
        ("unknown-key", "api_key_invalid"),
        ("garbage-key-as-bearer", "api_key_malformed"),
    ],
)
def test_bad_credentials_are_401(runner_url: str, owner: User, case: str, expected_code: str) -> None:
    # Given a credential that must not be accepted
    now = int(time.time())
    good_key = generate_key().key
    flipped = good_key[:-1] + ("A" if good_key[-1] != "A" else "B")
    claims = {"sub": str(owner.id), "aud": "authenticated", "exp": now + 600, "iat": now, "role": "authenticated"}
    headers = {
        "missing": {},
        "basic-scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "bearer-without-token": {"Authorization": "Bearer"},
        "token-scheme": {"Authorization": f"Token {owner.jwt}"},
        "not-a-jwt": {"Authorization": "Bearer not.a.jwt"},
        "expired-jwt": {"Authorization": f"Bearer {_jwt(owner, exp=now - 3600, iat=now - 7200)}"},
        "other-secret": {
            "Authorization": f"Bearer {pyjwt.encode(claims, 'another-secret-that-is-at-least-32-chars!', 'HS256')}"
        },
        "wrong-audience": {"Authorization": f"Bearer {_jwt(owner, aud='anon')}"},
        "no-audience": {
            "Authorization": "Bearer "
            + pyjwt.encode({k: v for k, v in claims.items() if k != "aud"}, _secret(), "HS256")
        },
        "subject-not-uuid": {"Authorization": f"Bearer {pyjwt.encode({**claims, 'sub': 'admin'}, _secret(), 'HS256')}"},
        "alg-none": {"Authorization": f"Bearer {pyjwt.encode(claims, None, algorithm='none')}"},
        "garbage-key": {"x-api-key": "oai_garbage"},
        "bad-checksum-key": {"x-api-key": flipped},
        "unknown-key": {"x-api-key": good_key},
        "garbage-key-as-bearer": {"Authorization": "Bearer oai_123"},
    }[case]
    # When calling a route that needs a caller
    response = httpx.get(f"{runner_url}/v1/whoami", headers=headers)
    # Then 401 with the precise code, the envelope and a WWW-Authenticate challenge
    assert error_of(response, 401)["code"] == expected_code
    assert response.headers["www-authenticate"].lower().startswith("bearer")


def _secret() -> str:
    from observai.config import get_settings

    secret = get_settings().jwt_secret
    assert secret
    return secret


def test_valid_jwt_of_a_non_member_gets_404_on_the_org(runner_url: str, org: dict[str, Any], db) -> None:
    # Given a valid token of a user who is not a member of the organization
    stranger = make_user(db)
    with client(runner_url, user=stranger) as http:
        # When they read it
        # Then it is not found (its existence is not revealed), though the token itself is fine
        assert error_of(http.get(f"/v1/orgs/{org['id']}"), 404)["code"] == "not_found"
        assert ok_data(http.get("/v1/whoami"))["user_id"] == str(stranger.id)


def test_revoked_and_expired_keys_are_401(runner_url: str, http: httpx.Client, project: dict[str, Any], db) -> None:
    # Given two working keys
    url = f"/v1/projects/{project['id']}/api-keys"
    revoked = ok_data(http.post(url, json={"name": "revoked", "scopes": ["read"]}), 201)
    expired = ok_data(http.post(url, json={"name": "expired", "scopes": ["read"]}), 201)
    for key in (revoked, expired):
        ok_data(httpx.get(f"{runner_url}/v1/whoami", headers={"x-api-key": key["key"]}))
    # When one is revoked through the API and the other reaches its expiry
    ok_data(http.delete(f"{url}/{revoked['id']}"))
    db.execute("update public.api_keys set expires_at = now() - interval '1 second' where id = %s", (expired["id"],))
    # Then both are refused with a precise code
    for key, code in ((revoked, "api_key_revoked"), (expired, "api_key_expired")):
        for headers in ({"x-api-key": key["key"]}, {"Authorization": f"Bearer {key['key']}"}):
            response = httpx.get(f"{runner_url}/v1/whoami", headers=headers)
            assert error_of(response, 401)["code"] == code


def test_key_created_with_a_near_expiry_stops_working(
    runner_url: str, http: httpx.Client, project: dict[str, Any]
) -> None:
    # Given a key created to expire in two seconds
    expires_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    key = ok_data(
        http.post(
            f"/v1/projects/{project['id']}/api-keys",
            json={"name": "short", "scopes": ["read"], "expires_at": expires_at},
        ),
        201,
    )
    assert key["expires_at"] is not None
    # When that time has passed
    time.sleep(3.1)
    # Then it is refused as expired
    response = httpx.get(f"{runner_url}/v1/whoami", headers={"x-api-key": key["key"]})
    assert error_of(response, 401)["code"] == "api_key_expired"


# --- nothing half-written -----------------------------------------------------------------------------


def test_duplicate_org_slug_is_409_and_leaves_nothing(http: httpx.Client, org: dict[str, Any], owner: User, db) -> None:
    # Given an organization with a chosen slug
    before_orgs = db.execute("select count(*) as n from public.organizations").fetchone()["n"]
    before_audit = db.execute(
        "select count(*) as n from public.audit_log where actor_id = %s", (str(owner.id),)
    ).fetchone()["n"]
    name = f"Copycat {uuid.uuid4().hex[:6]}"
    # When another organization is created with the same slug
    response = http.post("/v1/orgs", json={"name": name, "slug": org["slug"]})
    # Then 409, and no organization, membership or audit entry was written
    assert error_of(response, 409)["code"] == "conflict"
    assert db.execute("select count(*) as n from public.organizations where name = %s", (name,)).fetchone()["n"] == 0
    assert db.execute("select count(*) as n from public.organizations").fetchone()["n"] == before_orgs
    assert (
        db.execute("select count(*) as n from public.memberships where user_id = %s", (owner.id,)).fetchone()["n"] == 1
    )
    assert (
        db.execute("select count(*) as n from public.audit_log where actor_id = %s", (str(owner.id),)).fetchone()["n"]
        == before_audit
    )


def test_duplicate_project_slug_is_409_and_leaves_nothing(
    http: httpx.Client, org: dict[str, Any], project: dict[str, Any], db
) -> None:
    # Given a project with a slug
    before = audit_count(db, org["id"])
    # When another project of the organization is created, or renamed, to that slug
    clash = http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "clash", "slug": project["slug"]})
    other = ok_data(http.post(f"/v1/orgs/{org['id']}/projects", json={"name": "other"}), 201)
    rename = http.patch(f"/v1/projects/{other['id']}", json={"slug": project["slug"]})
    # Then both are 409, the clash left no row, the rename changed nothing, and only the one success is audited
    assert error_of(clash, 409)
    assert error_of(rename, 409)
    names = [r["name"] for r in db.execute("select name from public.projects where org_id = %s", (org["id"],))]
    assert sorted(names) == sorted([project["name"], "other"])
    assert ok_data(http.get(f"/v1/projects/{other['id']}"))["slug"] == other["slug"]
    assert audit_count(db, org["id"]) == before + 1


def test_failed_org_rename_changes_nothing(http: httpx.Client, org: dict[str, Any], db) -> None:
    # Given two organizations
    other = ok_data(http.post("/v1/orgs", json={"name": f"Other {uuid.uuid4().hex[:6]}"}), 201)
    before = audit_count(db, org["id"])
    # When the first is renamed to the second's slug, together with a new name
    response = http.patch(f"/v1/orgs/{org['id']}", json={"name": "Renamed", "slug": other["slug"]})
    # Then 409, neither the name nor the slug changed, and no audit entry
    assert error_of(response, 409)
    assert ok_data(http.get(f"/v1/orgs/{org['id']}")) == org
    assert audit_count(db, org["id"]) == before


def test_adding_an_unknown_user_is_404_and_leaves_nothing(http: httpx.Client, org: dict[str, Any], db) -> None:
    # Given an organization
    before = audit_count(db, org["id"])
    ghost = uuid.uuid4()
    # When a user id nobody has is added
    response = http.post(f"/v1/orgs/{org['id']}/members", json={"user_id": str(ghost), "role": "admin"})
    # Then 404, no membership and no audit entry
    assert error_of(response, 404)
    assert db.execute("select count(*) as n from public.memberships where user_id = %s", (ghost,)).fetchone()["n"] == 0
    assert audit_count(db, org["id"]) == before


# --- text Postgres cannot hold, numbers past its columns, documents nested too deep ---------------------


def _raw_post(http: httpx.Client, path: str, raw: str | bytes, method: str = "POST") -> httpx.Response:
    return http.request(method, path, content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"name": "a\\u0000b"}', "NUL"),
        ('{"name": "a\\udc00b"}', None),  # a lone surrogate: not JSON orjson accepts (400) or unstorable (422)
        ('{"name": "x", "plan\\u0000": "free"}', "NUL"),
    ],
    ids=["nul", "lone-surrogate", "nul-in-key"],
)
def test_unstorable_text_in_a_body_is_refused_never_a_500(
    http: httpx.Client, org: dict[str, Any], project: dict[str, Any], db, raw: str, reason: str | None
) -> None:
    # Given a name Postgres text cannot hold
    before = audit_count(db, org["id"])
    for method, path in (
        ("POST", "/v1/orgs"),
        ("POST", f"/v1/orgs/{org['id']}/projects"),
        ("PATCH", f"/v1/projects/{project['id']}"),
        ("PATCH", f"/v1/orgs/{org['id']}"),
    ):
        # When it is sent to a route that stores names
        response = _raw_post(http, path, raw, method)
        # Then a 4xx with the field's location, never a 500
        error = error_of(response, (400, 422))
        if response.status_code == 422:
            assert error["code"] == "validation_error"
            assert any(d["loc"][0] == "body" and d["loc"][1].startswith(("name", "plan")) for d in error["details"])
            if reason:
                assert any(reason in d["message"] for d in error["details"])
        else:
            assert error["code"] == "malformed_json" and "surrogate" in error["message"]
    # And nothing was written
    assert audit_count(db, org["id"]) == before


def test_a_nul_in_a_query_parameter_is_422(http: httpx.Client, project: dict[str, Any]) -> None:
    # Given a NUL (%00) in the service filter of the traces search and in a path parameter
    for path in (
        f"/v1/projects/{project['id']}/traces?service=a%00b",
        f"/v1/projects/{project['id']}/logs?q=a&service=%00",
        f"/v1/projects/{project['id']}/metrics/cpu%00load/series",
    ):
        # When it is requested
        response = http.get(path)
        # Then 422 naming the parameter
        error = error_of(response, 422)
        assert error["code"] == "validation_error", path
        assert error["details"][0]["loc"][0] in ("query", "path") and "NUL" in error["details"][0]["message"]


@pytest.mark.parametrize("depth", [33, 1_000, 10_000])
def test_deeply_nested_json_is_400_everywhere(http: httpx.Client, project: dict[str, Any], depth: int) -> None:
    # Given documents nested far deeper than any route takes
    nested = '{"name": "x", "extra": ' + "[" * depth + "]" * depth + "}"
    for path in ("/v1/orgs", f"/v1/projects/{project['id']}/metrics/query"):
        # When sent
        response = _raw_post(http, path, nested)
        # Then 400 too_deep, never a RecursionError's 500
        assert error_of(response, 400)["code"] == "too_deep", path


def test_reasonable_nesting_still_reaches_validation(http: httpx.Client) -> None:
    # Given a document 10 levels deep (allowed), with an unknown field
    nested = '{"name": "x", "extra": ' + "[" * 10 + "]" * 10 + "}"
    # Then the model decides (422 for the unknown field, or accepted), not the depth guard
    response = _raw_post(http, "/v1/orgs", nested)
    assert response.status_code in (201, 422), response.text


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"name": "caf\xe9"}', "invalid_utf8"),
        (b'{"name": "x", "n": NaN}', "malformed_json"),
        (b'{"name": "x", "n": 1e400}', "malformed_json"),
    ],
    ids=["latin-1", "nan", "overflow"],
)
def test_bodies_that_are_not_strict_json_are_400(http: httpx.Client, raw: bytes, code: str) -> None:
    # When a body is not UTF-8, or holds a number JSON cannot carry
    response = _raw_post(http, "/v1/orgs", raw)
    # Then 400 with the reason (never stored with U+FFFD in place of the byte)
    assert error_of(response, 400)["code"] == code


def test_integers_past_bigint_are_422_with_the_field(http: httpx.Client, project: dict[str, Any]) -> None:
    # Given a limit of 2^64 in a query body and in a query parameter
    body = '{"queries": [{"metric": "cpu", "aggregation": "avg"}], "limit": 18446744073709551616}'
    response = _raw_post(http, f"/v1/projects/{project['id']}/metrics/query", body)
    # Then 422 naming the field, never a 500
    error = error_of(response, 422)
    assert any(d["loc"] == ["body", "limit"] for d in error["details"]), error
    response = http.get(f"/v1/projects/{project['id']}/traces?limit=18446744073709551616")
    assert error_of(response, (400, 422))
