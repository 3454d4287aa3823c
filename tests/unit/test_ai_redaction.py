"""What leaves for the model: the logs' redaction plus e-mail addresses, tokens, keys and card numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from observai.ai.redaction import CARD, EMAIL, REDACTED, luhn_ok, redact_for_model
from observai.auth.api_key_format import generate_key
from observai.auth.jwt import issue_dev_token

JWT = issue_dev_token("6f1c1d55-5c4a-4b7e-9d0e-0f6b0c3d2a11", "someone@example.test")
API_KEY = generate_key().key


@pytest.mark.parametrize(
    ("raw", "secret", "kept"),
    [
        ("payment failed for alice.smith+shop@example.co.uk at checkout", "alice.smith+shop@example.co.uk", EMAIL),
        (f"Authorization: Bearer {JWT}", JWT.split(".")[1], "Authorization:"),
        (f"jwt {JWT} rejected", JWT.split(".")[2], "rejected"),
        (f"key {API_KEY} used", API_KEY[4:], "used"),
        ("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE", "denied"),
        ("token=s3cr3t-Value_99 ok", "s3cr3t-Value_99", "token=[REDACTED]"),
        ('{"api_key": "abcd1234efgh"}', "abcd1234efgh", '"api_key": "[REDACTED]'),
        ("password: hunter22 for db", "hunter22", "password: [REDACTED]"),
        ("sig 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 bad", "9f86d081884c7d65", "bad"),
        ("blob aGVsbG8gd29ybGQgdGhpcyBpcyBhIHNlY3JldCBrZXkgMTIzNDU2Nzg5MA== x", "aGVsbG8gd29ybGQ", " x"),
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111", CARD),
        ("card 5555-5555-5555-4444 declined", "5555-5555-5555-4444", CARD),
        ("amex 378282246310005!", "378282246310005", CARD),
        ("google AIzaSyA-1234567890abcdefghijklmnopqrstu end", "AIzaSyA-1234567890", "end"),
    ],
    ids=[
        "email",
        "bearer-jwt",
        "bare-jwt",
        "our-api-key",
        "aws-key-id",
        "token-pair",
        "json-api-key",
        "password-colon",
        "long-hex",
        "long-base64",
        "visa-spaces",
        "mastercard-dashes",
        "amex",
        "google-key",
    ],
)
def test_secrets_and_personal_data_are_replaced(raw: str, secret: str, kept: str) -> None:
    # Given a log line holding a secret or personal data; When it is redacted for the model
    out = redact_for_model(raw)
    # Then the secret is gone and the rest of the line is still there
    assert secret not in out
    assert kept in out


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # fails the Luhn check: an order id, kept
        "took 1733471948123 ms",  # an epoch in ms (starts with 1)
        "GET /api/v1/checkout/orders/123 returned 502 after 3000 ms",
        "connection refused: checkout-service-eu-west-1-replica-pool-number-two",
        "request 6f1c1d55-5c4a-4b7e-9d0e-0f6b0c3d2a11 timed out",  # a UUID
        "",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact_for_model(text) == text


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


def test_private_key_block_is_removed_whole() -> None:
    raw = "cfg -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY----- loaded"
    out = redact_for_model(raw)
    assert "MIIEowIBAAKCAQEA" not in out and out == f"cfg {REDACTED} loaded"


@given(user=st.from_regex(r"[a-z][a-z0-9._]{0,20}", fullmatch=True), domain=st.sampled_from(["example.com", "x.io"]))
def test_any_email_goes(user: str, domain: str) -> None:
    address = f"{user}@{domain}"
    assert address not in redact_for_model(f"user {address} signed in")


@given(st.text(max_size=300))
def test_never_raises_and_is_idempotent(text: str) -> None:
    once = redact_for_model(text)
    assert redact_for_model(once) == once
