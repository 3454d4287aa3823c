"""Signed acknowledge/resolve links (observai.notify.links): round trip, binding, tampering, expiry, rotation."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from observai.config import Settings
from observai.notify.links import (
    DEVELOPMENT_SECRET,
    MAX_TOKEN_CHARS,
    LinkExpired,
    LinkInvalid,
    LinksUnavailable,
    action_links,
    make_token,
    verify_token,
)
from pydantic import SecretStr

NOW = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)
BASE = "https://api.example.test"
INCIDENT = UUID("11111111-1111-4111-8111-111111111111")
PROJECT = UUID("22222222-2222-4222-8222-222222222222")
USER = UUID("33333333-3333-4333-8333-333333333333")


def _settings(**kw: object) -> Settings:
    values: dict[str, object] = {
        "stage": "prod",
        "public_base_url": BASE,
        "action_link_secret": SecretStr("s3cret-for-links-0123456789abcdef"),
        "action_link_ttl_s": 3600,
    }
    values.update(kw)
    return Settings.model_validate(values)


def _token(url: str) -> str:
    prefix = BASE + "/v1/actions/incidents/"
    assert url.startswith(prefix)
    return url[len(prefix) :]


def test_links_round_trip_with_their_bindings() -> None:
    # Given the links of an incident sent to a user
    settings = _settings()
    links = action_links(INCIDENT, PROJECT, NOW, settings, user_id=USER)
    # Then there is one per action plus the incident's API URL
    assert set(links) == {"acknowledge", "resolve", "incident"}
    assert links["incident"] == f"{BASE}/v1/projects/{PROJECT}/incidents/{INCIDENT}"
    # And each token verifies to its own action, incident, project, user and expiry
    for action in ("acknowledge", "resolve"):
        claims = verify_token(_token(links[action]), NOW, settings)
        assert claims.action == action
        assert (claims.incident_id, claims.project_id, claims.user_id) == (INCIDENT, PROJECT, USER)
        assert claims.expires_at == int(NOW.timestamp()) + 3600


def test_tokens_are_url_safe_and_compact() -> None:
    links = action_links(INCIDENT, PROJECT, NOW, _settings(), user_id=USER)
    for action in ("acknowledge", "resolve"):
        token = _token(links[action])
        assert len(token) < 300 <= MAX_TOKEN_CHARS
        assert all(c.isalnum() or c in "-_." for c in token)


def test_without_user_the_token_names_nobody() -> None:
    settings = _settings()
    token = make_token("resolve", INCIDENT, PROJECT, NOW, settings)
    assert verify_token(token, NOW, settings).user_id is None


def test_base_url_trailing_slash_is_not_doubled() -> None:
    links = action_links(INCIDENT, PROJECT, NOW, _settings(public_base_url=BASE + "/"))
    assert links["acknowledge"].startswith(BASE + "/v1/actions/incidents/")


@pytest.mark.parametrize("part", [0, 1])
def test_every_changed_character_of_payload_or_signature_is_refused(part: int) -> None:
    # Given a good token
    settings = _settings()
    token = make_token("acknowledge", INCIDENT, PROJECT, NOW, settings, USER)
    pieces = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # When any one character of the payload (part 0) or signature (part 1) is replaced by any other
    for index in range(len(pieces[part])):
        for replacement in (alphabet[(alphabet.index(pieces[part][index]) + 1) % 64], "A", "_"):
            if replacement == pieces[part][index]:
                continue
            changed = list(pieces)
            changed[part] = changed[part][:index] + replacement + changed[part][index + 1 :]
            # Then it is refused as invalid
            with pytest.raises(LinkInvalid):
                verify_token(".".join(changed), NOW, settings)


def test_a_payload_forged_to_bind_another_incident_action_or_project_is_refused() -> None:
    # Given a signed acknowledge token, and its payload rewritten (other action, incident, project, user, expiry)
    settings = _settings()
    token = make_token("acknowledge", INCIDENT, PROJECT, NOW, settings, USER)
    encoded, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    for key, value in [
        ("a", "resolve"),
        ("i", str(uuid4())),
        ("p", str(uuid4())),
        ("u", str(uuid4())),
        ("e", payload["e"] + 86400),
    ]:
        forged = dict(payload, **{key: value})
        forged_encoded = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
        # Then the old signature does not cover it
        with pytest.raises(LinkInvalid):
            verify_token(f"{forged_encoded}.{signature}", NOW, settings)
    # And swapping the two halves of two tokens does not help either
    other = make_token("resolve", INCIDENT, PROJECT, NOW, settings, USER)
    with pytest.raises(LinkInvalid):
        verify_token(f"{other.split('.')[0]}.{signature}", NOW, settings)


def test_expiry_with_an_injected_clock() -> None:
    # Given a token valid one hour
    settings = _settings()
    token = make_token("resolve", INCIDENT, PROJECT, NOW, settings)
    # Then it is good one second before the hour, expired at the hour and after
    verify_token(token, NOW + timedelta(seconds=3599), settings)
    for later in (timedelta(seconds=3600), timedelta(days=3)):
        with pytest.raises(LinkExpired):
            verify_token(token, NOW + later, settings)


def test_another_secret_refuses_and_a_rotation_accepts_the_previous_one() -> None:
    # Given a token signed with the old secret
    old = _settings(action_link_secret=SecretStr("old-secret-0123456789abcdef-xyz"))
    token = make_token("acknowledge", INCIDENT, PROJECT, NOW, old)
    # Then a service knowing only a new secret refuses it
    with pytest.raises(LinkInvalid):
        verify_token(token, NOW, _settings(action_link_secret=SecretStr("new-secret-0123456789abcdef-xyz")))
    # And one in rotation ("new old") accepts it, while signing new ones with the new secret only
    both = "new-secret-0123456789abcdef-xyz old-secret-0123456789abcdef-xyz"
    rotating = _settings(action_link_secret=SecretStr(both))
    assert verify_token(token, NOW, rotating).incident_id == INCIDENT
    fresh = make_token("acknowledge", INCIDENT, PROJECT, NOW, rotating)
    with pytest.raises(LinkInvalid):
        verify_token(fresh, NOW, old)


def test_no_secret_outside_local_stages_means_no_links() -> None:
    # Given a prod service with no link secret
    settings = _settings(action_link_secret=None)
    # Then no links are made and verifying says links are unavailable
    assert action_links(INCIDENT, PROJECT, NOW, settings) == {}
    with pytest.raises(LinksUnavailable):
        make_token("acknowledge", INCIDENT, PROJECT, NOW, settings)
    with pytest.raises(LinksUnavailable):
        verify_token("a.b", NOW, settings)


def test_no_public_base_url_means_no_links() -> None:
    assert action_links(INCIDENT, PROJECT, NOW, _settings(public_base_url=None)) == {}


@pytest.mark.parametrize("stage", ["local", "test"])
def test_local_stages_fall_back_to_the_development_secret(stage: str) -> None:
    # Given a local service without a secret
    settings = _settings(stage=stage, action_link_secret=None)
    links = action_links(INCIDENT, PROJECT, NOW, settings)
    # Then links are made with the development secret, which any local service verifies
    token = _token(links["acknowledge"])
    dev = _settings(stage="local", action_link_secret=SecretStr(DEVELOPMENT_SECRET))
    assert verify_token(token, NOW, dev).action == "acknowledge"
    # But a prod service with a real secret refuses them
    with pytest.raises(LinkInvalid):
        verify_token(token, NOW, _settings())


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "a",
        "a.b.c",
        "....",
        "x" * (MAX_TOKEN_CHARS + 1),
        "eyJ2IjoxfQ.",
        ".AAAA",
        "%%%.%%%",
        "eyJ2IjoxfQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "\x00.\x00",
        "é.é",
    ],
)
def test_garbage_is_invalid_never_another_error(garbage: str) -> None:
    with pytest.raises(LinkInvalid):
        verify_token(garbage, NOW, _settings())


def test_well_signed_but_malformed_payloads_are_invalid() -> None:
    # Given payloads signed with the right key but not what make_token writes (a leaked key is not assumed;
    # this checks the parser never trusts shapes it did not make)
    import hashlib
    import hmac

    secret = b"s3cret-for-links-0123456789abcdef"
    settings = _settings()
    good = {"v": 1, "a": "acknowledge", "i": str(INCIDENT), "p": str(PROJECT), "e": int(NOW.timestamp()) + 60}
    for payload in [
        dict(good, v=2),
        dict(good, a="delete"),
        dict(good, e="soon"),
        dict(good, e=True),
        dict(good, i="not-a-uuid"),
        dict(good, p=7),
        dict(good, u=[]),
        dict(good, extra=1),
        [1, 2],
        "text",
    ]:
        encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        sig = hmac.new(secret, b"observai.action-link.v1." + encoded.encode(), hashlib.sha256).digest()
        token = encoded + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
        with pytest.raises(LinkInvalid):
            verify_token(token, NOW, settings)
    # And the same construction with the good payload verifies (the test builds tokens correctly)
    encoded = base64.urlsafe_b64encode(json.dumps(good).encode()).rstrip(b"=").decode()
    sig = hmac.new(secret, b"observai.action-link.v1." + encoded.encode(), hashlib.sha256).digest()
    assert verify_token(encoded + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode(), NOW, settings)
