"""Rate limiting through the real handlers, in-process: token buckets per user and per API key, in Postgres."""

from __future__ import annotations

import time

import pytest

from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, make_user

pytestmark = pytest.mark.integration


def whoami(headers: dict[str, str]) -> Result:
    return invoke("orgs", "GET", "/v1/whoami", headers=headers)


def limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_BURST", "3")
    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "1")


def assert_rate_limited(result: Result) -> int:
    assert result.status == 429, result.text
    body = result.json()
    assert body["data"] is None
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"] == {"limit_per_second": 1.0, "burst": 3}
    retry_after = result.header("Retry-After")
    assert retry_after is not None and retry_after.isdigit()
    assert 1 <= int(retry_after) <= 2  # at most one token in debt at 1 token/s
    return int(retry_after)


def test_burst_then_429_then_recovers_after_retry_after(monkeypatch: pytest.MonkeyPatch, db) -> None:
    # Given a burst of 3 and a refill of 1 token per second, and a user
    limited(monkeypatch)
    user = make_user(db)
    # When the user makes four requests at once
    results = [whoami(user.headers) for _ in range(4)]
    # Then the first three pass and the fourth is a 429 with Retry-After, in the envelope
    assert [r.status for r in results[:3]] == [200, 200, 200]
    wait = assert_rate_limited(results[3])
    # When the user waits as long as Retry-After says
    time.sleep(wait)
    # Then the next request passes again
    assert whoami(user.headers).status == 200


def test_hammering_does_not_dig_a_deeper_hole(monkeypatch: pytest.MonkeyPatch, db) -> None:
    # Given a user who has used the whole burst
    limited(monkeypatch)
    user = make_user(db)
    for _ in range(3):
        assert whoami(user.headers).status == 200
    # When they keep sending while refused
    waits = [assert_rate_limited(whoami(user.headers)) for _ in range(10)]
    # Then the wait stays bounded (a refused request costs at most one token of debt) and a short pause is enough
    assert max(waits) <= 2
    time.sleep(max(waits))
    assert whoami(user.headers).status == 200


def test_buckets_are_per_user(monkeypatch: pytest.MonkeyPatch, db) -> None:
    # Given a user who is rate limited
    limited(monkeypatch)
    noisy, quiet = make_user(db), make_user(db)
    for _ in range(3):
        assert whoami(noisy.headers).status == 200
    assert_rate_limited(whoami(noisy.headers))
    # When another user makes requests
    # Then they are unaffected: a full burst of their own
    assert [whoami(quiet.headers).status for _ in range(3)] == [200, 200, 200]
    # And the noisy user is still limited
    assert_rate_limited(whoami(noisy.headers))


def _org_project_key(owner: User) -> str:
    org = invoke("orgs", "POST", "/v1/orgs", headers=owner.headers, json_body={"name": "rate limited org"})
    assert org.status == 201, org.text
    project = invoke(
        "orgs", "POST", f"/v1/orgs/{org.data['id']}/projects", headers=owner.headers, json_body={"name": "p"}
    )
    assert project.status == 201, project.text
    key = invoke(
        "api_keys",
        "POST",
        f"/v1/projects/{project.data['id']}/api-keys",
        headers=owner.headers,
        json_body={"name": "k", "scopes": ["read"]},
    )
    assert key.status == 201, key.text
    return key.data["key"]


def test_buckets_are_per_api_key_apart_from_the_user(monkeypatch: pytest.MonkeyPatch, db) -> None:
    # Given a user who made an API key (with the default limits), then tight limits
    owner = make_user(db)
    key = _org_project_key(owner)
    other_key = _org_project_key(make_user(db))
    limited(monkeypatch)
    # When the key uses its whole burst
    assert [whoami({"x-api-key": key}).status for _ in range(3)] == [200, 200, 200]
    # Then the key's fourth request is a 429, whichever header carries it
    assert_rate_limited(whoami({"Authorization": f"Bearer {key}"}))
    # And the user who owns it, and another key, still have their own buckets
    assert whoami(owner.headers).status == 200
    assert whoami({"x-api-key": other_key}).status == 200


def test_refused_requests_do_nothing(monkeypatch: pytest.MonkeyPatch, db) -> None:
    # Given a rate-limited user
    limited(monkeypatch)
    user = make_user(db)
    for _ in range(3):
        assert whoami(user.headers).status == 200
    # When they try to create an organization
    result = invoke("orgs", "POST", "/v1/orgs", headers=user.headers, json_body={"name": "should not exist"})
    # Then it is refused before anything is written
    assert_rate_limited(result)
    assert (
        db.execute("select count(*) as n from public.memberships where user_id = %s", (user.id,)).fetchone()["n"] == 0
    )


def test_a_429_emits_a_cloudwatch_metric(monkeypatch: pytest.MonkeyPatch, db, capsys: pytest.CaptureFixture) -> None:
    # Given metrics are on (CloudWatch Embedded Metric Format on stdout, as in Lambda) and a user over the limit
    import json

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    limited(monkeypatch)
    user = make_user(db)
    for _ in range(3):
        assert whoami(user.headers).status == 200
    capsys.readouterr()
    # When the next request is refused
    assert_rate_limited(whoami(user.headers))
    # Then one RateLimited count is published, in the ObservAI namespace
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(emf) == 1
    assert emf[0]["RateLimited"] == [1.0] or emf[0]["RateLimited"] == 1.0
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ObservAI"
    # And a request that passes publishes nothing
    time.sleep(2)
    assert whoami(user.headers).status == 200
    assert '"_aws"' not in capsys.readouterr().out
