"""Standard Webhooks signing secrets: making them, signing with them, and keeping them encrypted at rest.

A secret is ``whsec_`` + base64 of random bytes (we make 32; 24 to 64 are accepted from elsewhere). The signature
of a delivery is ``v1,`` + base64 of HMAC-SHA256 over ``{msg_id}.{timestamp}.{body}`` keyed with the decoded
secret; during a rotation the message carries one such signature per secret, space-separated, and a receiver that
knows either accepts it (standardwebhooks.com, section "Signature scheme").

At rest the secret is encrypted with AES-256-GCM under ``settings.webhook_secret_key`` (from the app secret in
AWS): the database, its backups and anyone reading them see only ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence

from observai.config import Settings, get_settings

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64

# Only for the local and test stages (never accepted in dev or prod): ciphertexts made with it protect nothing.
DEVELOPMENT_SECRET_KEY = base64.b64encode(b"observai-local-webhook-secret-k!").decode()

# The first byte of every ciphertext: the format (and key generation) it was made with, so that a later key
# rotation can tell old ciphertexts from new ones.
_CIPHERTEXT_VERSION = b"\x01"
_NONCE_BYTES = 12
# Bound into every ciphertext: a ciphertext of this kind cannot be passed off as another kind's under the same key.
_ASSOCIATED_DATA = b"observai.webhooks.endpoint_secret"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its decoded bytes); ValueError if it is not one of 24 to 64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is base64 after its prefix") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}")
    return key


def secret_hint(secret: str) -> str:
    """What may be shown of a secret after its creation: the prefix and its last 4 characters."""
    return f"{SECRET_PREFIX}…{secret[-4:]}"


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64 HMAC-SHA256>`` per secret, space-separated."""
    if not secrets:
        raise ValueError("at least one secret signs a message")
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key_bytes(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def _encryption_key(settings: Settings | None) -> bytes:
    settings = settings or get_settings()
    if settings.webhook_secret_key is not None:
        encoded = settings.webhook_secret_key.get_secret_value()
    elif settings.stage in ("local", "test"):
        encoded = DEVELOPMENT_SECRET_KEY
    else:
        # Never a default in a deployment: secrets encrypted under a published key are as good as clear text.
        raise RuntimeError("webhook_secret_key is not set (the app secret's webhook_secret_key: base64 of 32 bytes)")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RuntimeError("webhook_secret_key is not base64") from None
    if len(key) != 32:
        raise RuntimeError(f"webhook_secret_key holds 32 bytes (AES-256), not {len(key)}")
    return key


def encrypt_secret(secret: str, settings: Settings | None = None) -> bytes:
    """The secret's ciphertext for the database: version byte, 12-byte random nonce, AES-256-GCM output."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # the API and the sender need it, not imports

    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_encryption_key(settings)).encrypt(nonce, secret.encode(), _ASSOCIATED_DATA)
    return _CIPHERTEXT_VERSION + nonce + sealed


def decrypt_secret(ciphertext: bytes, settings: Settings | None = None) -> str:
    """The secret of ``encrypt_secret``'s ciphertext; ValueError if it was not made with this key or was altered."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = bytes(ciphertext)
    if len(data) < 1 + _NONCE_BYTES + 16 or data[:1] != _CIPHERTEXT_VERSION:
        raise ValueError("not a webhook secret ciphertext")
    nonce, sealed = data[1 : 1 + _NONCE_BYTES], data[1 + _NONCE_BYTES :]
    try:
        return AESGCM(_encryption_key(settings)).decrypt(nonce, sealed, _ASSOCIATED_DATA).decode()
    except InvalidTag:
        raise ValueError("the webhook secret ciphertext does not open with this key") from None
