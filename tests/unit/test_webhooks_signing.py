"""Signing secrets and signatures, checked by the Standard Webhooks reference verifier (PyPI ``standardwebhooks``)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from observai.config import Settings
from observai.webhooks.signing import (
    decrypt_secret,
    encrypt_secret,
    new_secret,
    secret_hint,
    secret_key_bytes,
    sign,
)
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

BODY = b'{"type":"alert.firing","timestamp":"2026-12-06T03:00:00+00:00","data":{"rule_id":"r"}}'


def _headers(msg_id: str, ts: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_new_secret_is_whsec_and_32_random_bytes() -> None:
    # Given two fresh secrets
    a, b = new_secret(), new_secret()
    # Then both are whsec_ + base64 of 32 bytes, and differ
    assert a.startswith("whsec_") and len(base64.b64decode(a[6:])) == 32
    assert a != b
    assert secret_key_bytes(a) == base64.b64decode(a[6:])


def test_hint_shows_only_the_last_four_characters() -> None:
    secret = new_secret()
    hint = secret_hint(secret)
    assert hint == "whsec_…" + secret[-4:]
    assert len(hint) <= 16 and secret[6:-4] not in hint


@pytest.mark.parametrize("length", [24, 40, 64])
def test_secrets_of_24_to_64_bytes_are_accepted(length: int) -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(length))).decode()
    assert secret_key_bytes(secret) == bytes(range(length))


@pytest.mark.parametrize(
    "bad",
    [
        "whsec_" + base64.b64encode(b"x" * 23).decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
        "sk_" + base64.b64encode(b"x" * 32).decode(),
        "whsec_not base64!!",
    ],
)
def test_other_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        secret_key_bytes(bad)


def test_signature_verifies_with_the_standard_webhooks_library() -> None:
    # Given a secret and a message signed now
    secret = new_secret()
    ts = int(datetime.now(UTC).timestamp())
    signature = sign([secret], "msg_2Lh9KhcBu9", ts, BODY)
    # Then the reference verifier accepts it and returns the payload
    assert signature.startswith("v1,") and " " not in signature
    assert Webhook(secret).verify(BODY, _headers("msg_2Lh9KhcBu9", ts, signature))["type"] == "alert.firing"
    # And a changed body, id or timestamp, or another secret, is refused
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", _headers("msg_2Lh9KhcBu9", ts, signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, _headers("msg_other", ts, signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, _headers("msg_2Lh9KhcBu9", ts + 1, signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, _headers("msg_2Lh9KhcBu9", ts, signature))


def test_during_a_rotation_either_secret_verifies() -> None:
    # Given the old and the new secret of a rotation, both signing
    old, new = new_secret(), new_secret()
    ts = int(datetime.now(UTC).timestamp())
    signature = sign([new, old], "msg_1", ts, BODY)
    # Then the header has two space-separated signatures, and a receiver that knows either one accepts it
    assert len(signature.split(" ")) == 2
    Webhook(old).verify(BODY, _headers("msg_1", ts, signature))
    Webhook(new).verify(BODY, _headers("msg_1", ts, signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, _headers("msg_1", ts, signature))


def test_known_vector_of_the_specification() -> None:
    # Given the Standard Webhooks specification's example (a 24-byte secret)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    # Then our signature is the one the specification gives
    assert sign([secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_secret_round_trips_encrypted_and_the_ciphertext_hides_it() -> None:
    settings = Settings(stage="test")
    secret = new_secret()
    ciphertext = encrypt_secret(secret, settings)
    assert secret.encode() not in ciphertext and secret[6:].encode() not in ciphertext
    assert encrypt_secret(secret, settings) != ciphertext  # a fresh nonce each time
    assert decrypt_secret(ciphertext, settings) == secret


def test_a_ciphertext_opens_only_with_its_key_and_unaltered() -> None:
    key_a = SecretStr(base64.b64encode(b"a" * 32).decode())
    key_b = SecretStr(base64.b64encode(b"b" * 32).decode())
    ciphertext = encrypt_secret(new_secret(), Settings(stage="prod", webhook_secret_key=key_a))
    with pytest.raises(ValueError):
        decrypt_secret(ciphertext, Settings(stage="prod", webhook_secret_key=key_b))
    tampered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    with pytest.raises(ValueError):
        decrypt_secret(tampered, Settings(stage="prod", webhook_secret_key=key_a))


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_deployments_refuse_to_run_without_a_key(stage: str) -> None:
    with pytest.raises(RuntimeError, match="webhook_secret_key"):
        encrypt_secret(new_secret(), Settings(stage=stage))  # type: ignore[arg-type]


def test_a_key_of_the_wrong_length_is_refused() -> None:
    short = SecretStr(base64.b64encode(b"k" * 16).decode())
    with pytest.raises(RuntimeError, match="32 bytes"):
        encrypt_secret(new_secret(), Settings(stage="prod", webhook_secret_key=short))
