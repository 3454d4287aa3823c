"""Slack request signatures (Slack's published example), payload parsing, response_url rules, the HTML pages."""

from __future__ import annotations

import contextlib
import json
import random
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from observai.config import Settings
from observai.errors import InvalidInput, Unauthenticated, Unavailable
from observai.notify.action_pages import CONTENT_SECURITY_POLICY, Page, render
from observai.notify.slack_actions import (
    mrkdwn_escape,
    parse_payload,
    response_url_allowed,
    signature,
    verify_request,
)
from pydantic import SecretStr

# Slack's example (api.slack.com/authentication/verifying-requests-from-slack): secret, timestamp, body, signature.
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
    b"channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
    b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SLACK_NOW = datetime.fromtimestamp(int(SLACK_TS), UTC)


def _settings(**kw: object) -> Settings:
    values: dict[str, object] = {"stage": "prod", "slack_signing_secret": SecretStr(SLACK_SECRET)}
    values.update(kw)
    return Settings.model_validate(values)


def _headers(ts: str = SLACK_TS, sig: str = SLACK_SIGNATURE) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}


def test_slack_published_example_signs_and_verifies() -> None:
    assert signature(SLACK_SECRET, SLACK_TS, SLACK_BODY) == SLACK_SIGNATURE
    verify_request(_headers(), SLACK_BODY, SLACK_NOW, _settings())
    # header names in any letter case (HTTP API gives them lower-case)
    verify_request({k.lower(): v for k, v in _headers().items()}, SLACK_BODY, SLACK_NOW, _settings())


def test_within_five_minutes_either_way_and_not_beyond() -> None:
    for skew in (-300, 300):
        verify_request(_headers(), SLACK_BODY, SLACK_NOW + timedelta(seconds=skew), _settings())
    for skew in (-301, 301, 86400):
        with pytest.raises(Unauthenticated):
            verify_request(_headers(), SLACK_BODY, SLACK_NOW + timedelta(seconds=skew), _settings())


def test_any_changed_byte_of_body_or_signature_is_refused() -> None:
    for index in range(0, len(SLACK_BODY), 7):
        body = SLACK_BODY[:index] + bytes([SLACK_BODY[index] ^ 1]) + SLACK_BODY[index + 1 :]
        with pytest.raises(Unauthenticated):
            verify_request(_headers(), body, SLACK_NOW, _settings())
    for index in range(3, len(SLACK_SIGNATURE)):
        char = "0" if SLACK_SIGNATURE[index] != "0" else "1"
        with pytest.raises(Unauthenticated):
            verify_request(
                _headers(sig=SLACK_SIGNATURE[:index] + char + SLACK_SIGNATURE[index + 1 :]),
                SLACK_BODY,
                SLACK_NOW,
                _settings(),
            )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Signature": SLACK_SIGNATURE},
        {"X-Slack-Request-Timestamp": SLACK_TS},
        _headers(sig=SLACK_SIGNATURE.upper()),
        _headers(sig="v1=" + SLACK_SIGNATURE[3:]),
        _headers(sig=SLACK_SIGNATURE + "00"),
        _headers(sig="v0=é" + SLACK_SIGNATURE[4:]),
        _headers(ts="-1531420618"),
        _headers(ts="1531420618.5"),
        _headers(ts="9" * 40),
        _headers(ts=" "),
    ],
)
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthenticated):
        verify_request(headers, SLACK_BODY, SLACK_NOW, _settings())


def test_another_secret_is_refused_and_no_secret_is_unavailable() -> None:
    with pytest.raises(Unauthenticated):
        verify_request(_headers(), SLACK_BODY, SLACK_NOW, _settings(slack_signing_secret=SecretStr("other")))
    with pytest.raises(Unavailable):
        verify_request(_headers(), SLACK_BODY, SLACK_NOW, _settings(slack_signing_secret=None))


def test_payload_parsing() -> None:
    payload = {"type": "block_actions", "user": {"id": "U1"}}
    assert parse_payload(urlencode({"payload": json.dumps(payload)}).encode()) == payload
    for bad in (
        b"",
        b"payload",
        b"other=1",
        urlencode([("payload", "{}"), ("payload", "{}")]).encode(),
        urlencode({"payload": "not json"}).encode(),
        urlencode({"payload": "[1]"}).encode(),
        b"payload=%ff%fe",
        b"\xff\xfe",
        urlencode({"payload": "[" * 100_000}).encode()[:200_000],
        b"a=" + b"x" * (300 * 1024),
    ):
        with pytest.raises(InvalidInput):
            parse_payload(bad)


def test_parsing_never_fails_otherwise_on_random_bytes() -> None:
    rng = random.Random(14)
    for _ in range(300):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        with contextlib.suppress(InvalidInput):
            parse_payload(body)


def test_response_url_only_slack_hooks_outside_local_stages() -> None:
    prod = _settings()
    assert response_url_allowed("https://hooks.slack.com/actions/T1/2/abc", prod)
    for url in (
        "http://hooks.slack.com/actions/T1/2/abc",
        "https://hooks.slack.com.evil.test/actions",
        "https://evil.test/hooks.slack.com",
        "https://user:pw@hooks.slack.com/actions",
        "https://hooks.slack.com:8443/actions",
        "https://hooks.slack.com:99999/actions",
        "https://127.0.0.1/actions",
    ):
        assert not response_url_allowed(url, prod), url
    assert response_url_allowed("http://127.0.0.1:9/resp", _settings(stage="test"))


def test_mrkdwn_escape_neutralises_mentions_and_links() -> None:
    assert mrkdwn_escape("<!channel> & <https://x|y>") == "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"


def test_pages_escape_every_text_and_carry_no_script() -> None:
    evil = '<script>alert("x")</script>&"\''
    html = render(
        Page(200, evil, evil, {"number": 1, "title": evil, "status": evil, "severity": evil}, "acknowledge", True)
    )
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert '<form method="post">' in html
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "script-src" not in CONTENT_SECURITY_POLICY


def test_the_pages_inline_style_is_the_one_the_policy_allows() -> None:
    import base64
    import hashlib

    html = render(Page(200, "t", "m"))
    style = html.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
