"""Channel secrets (Slack webhook URLs, PagerDuty routing keys) sealed at rest with envelope encryption.

``seal`` asks AWS KMS for a fresh data key (``GenerateDataKey``, AES_256, under ``settings.notify_kms_key_id``) with an
encryption context naming the organization and the contact point, encrypts the secret with it (AES-256-GCM, the
context bound in as associated data) and keeps only the data key's KMS ciphertext next to it, in one versioned blob
(``contact_points.secret_sealed``)::

    version (1 byte) | encrypted data key length (2 bytes, big-endian) | encrypted data key | nonce (12) | ciphertext

``open_sealed`` asks KMS to decrypt the data key (with the same context: a blob copied to another contact point or
organization does not open) and decrypts the secret. Decrypted data keys are kept per container in a small LRU
(by encrypted key and context), so sending a message does not cost a KMS call each time.

Without a KMS key (``NOTIFY_KMS_KEY_ID`` unset) the local and test stages wrap the data key with a fixed
development key instead (version 2 blobs, opened only in those stages: they protect nothing, and `make dev` needs no
AWS account); every other stage refuses with 503 (Unavailable), never a published key.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping

from observai.aws_clients import Timeouts, aws_client
from observai.config import Settings
from observai.errors import Unavailable
from observai.observability import logger

VERSION_KMS = 1
VERSION_DEVELOPMENT = 2
_NONCE_BYTES = 12
_DATA_KEY_BYTES = 32
_PURPOSE = "observai.notify.channel_secret"
# Only for the local and test stages: a blob wrapped with it protects nothing (see the module's text).
DEVELOPMENT_KEY = b"observai-local-notify-secret-k!!"
_CACHE_MAX = 256
# On an API request (creation, a test send) and on the delivery worker's path: quick, one retry.
_KMS_TIMEOUTS = Timeouts(connect_s=2, read_s=5, max_attempts=2)


class SecretDoesNotOpen(ValueError):
    """The blob is not one of ours, was altered, or was sealed for another context (contact point, organization)."""


_cache: OrderedDict[tuple[bytes, str], bytes] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple[bytes, str]) -> bytes | None:
    with _cache_lock:
        value = _cache.get(key)
        if value is not None:
            _cache.move_to_end(key)
        return value


def _remember(key: tuple[bytes, str], data_key: bytes) -> None:
    with _cache_lock:
        _cache[key] = data_key
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_MAX:
            _cache.popitem(last=False)


def forget_data_keys() -> None:
    """Empty the per-container cache of decrypted data keys (tests; a key rotation)."""
    with _cache_lock:
        _cache.clear()


def _context(context: Mapping[str, str]) -> dict[str, str]:
    if not context:
        raise ValueError("a channel secret is sealed for a context (org_id, contact_point_id)")
    return {"purpose": _PURPOSE, **{str(k): str(v) for k, v in context.items()}}


def _aad(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


def _development(settings: Settings) -> bool:
    return settings.stage in ("local", "test")


def _not_configured(why: str) -> Unavailable:
    logger.error("channel secrets cannot be sealed or opened", extra={"reason": why})
    return Unavailable(f"Notifications are not configured here: {why}", retry_after_s=3600)


def _kms() -> object:
    return aws_client("kms", _KMS_TIMEOUTS)


def _kms_error(exc: Exception) -> Unavailable:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    logger.error("KMS refused a channel secret operation", extra={"error_code": code})
    return Unavailable("The key service is not available; try again shortly", retry_after_s=30)


def seal(plaintext: str, context: Mapping[str, str], settings: Settings) -> bytes:
    """The sealed blob of ``plaintext`` for ``context`` (e.g. ``{"org_id": ..., "contact_point_id": ...}``)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ctx = _context(context)
    if settings.notify_kms_key_id:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = _kms().generate_data_key(  # type: ignore[attr-defined]
                KeyId=settings.notify_kms_key_id, KeySpec="AES_256", EncryptionContext=ctx
            )
        except (ClientError, BotoCoreError) as exc:
            raise _kms_error(exc) from None
        data_key, wrapped, version = bytes(answer["Plaintext"]), bytes(answer["CiphertextBlob"]), VERSION_KMS
    elif _development(settings):
        data_key = os.urandom(_DATA_KEY_BYTES)
        wrap_nonce = os.urandom(_NONCE_BYTES)
        wrapped = wrap_nonce + AESGCM(DEVELOPMENT_KEY).encrypt(wrap_nonce, data_key, _aad(ctx))
        version = VERSION_DEVELOPMENT
    else:
        raise _not_configured("NOTIFY_KMS_KEY_ID is not set (the KMS key that seals channel secrets)")
    if len(wrapped) > 0xFFFF:
        raise ValueError("encrypted data key too long")
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(data_key).encrypt(nonce, plaintext.encode(), _aad(ctx))
    return bytes([version]) + len(wrapped).to_bytes(2, "big") + wrapped + nonce + sealed


def _split(blob: bytes) -> tuple[int, bytes, bytes, bytes]:
    data = bytes(blob)
    if len(data) < 3:
        raise SecretDoesNotOpen("not a sealed channel secret")
    version, length = data[0], int.from_bytes(data[1:3], "big")
    wrapped = data[3 : 3 + length]
    rest = data[3 + length :]
    if version not in (VERSION_KMS, VERSION_DEVELOPMENT) or len(wrapped) != length or len(rest) < _NONCE_BYTES + 16:
        raise SecretDoesNotOpen("not a sealed channel secret")
    return version, wrapped, rest[:_NONCE_BYTES], rest[_NONCE_BYTES:]


def _data_key(version: int, wrapped: bytes, ctx: dict[str, str], settings: Settings) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if version == VERSION_DEVELOPMENT and not _development(settings):
        # A development blob in a deployment: its key is published, so it is refused rather than trusted.
        raise SecretDoesNotOpen("sealed with the development key, which only local and test stages accept")
    cache_key = (bytes([version]) + wrapped, _aad(ctx).decode())
    cached = _cached(cache_key)
    if cached is not None:
        return cached
    if version == VERSION_DEVELOPMENT:
        try:
            data_key = AESGCM(DEVELOPMENT_KEY).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _aad(ctx))
        except InvalidTag:
            raise SecretDoesNotOpen("the sealed secret does not open in this context") from None
    else:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = _kms().decrypt(CiphertextBlob=wrapped, EncryptionContext=ctx)  # type: ignore[attr-defined]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise SecretDoesNotOpen("the sealed secret does not open in this context") from None
            raise _kms_error(exc) from None
        except BotoCoreError as exc:
            raise _kms_error(exc) from None
        data_key = bytes(answer["Plaintext"])
    _remember(cache_key, data_key)
    return data_key


def open_sealed(blob: bytes, context: Mapping[str, str], settings: Settings) -> str:
    """The secret ``seal`` sealed for ``context``; SecretDoesNotOpen when the blob or the context does not match,
    Unavailable (503) when KMS cannot be reached."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ctx = _context(context)
    version, wrapped, nonce, sealed = _split(blob)
    data_key = _data_key(version, wrapped, ctx, settings)
    try:
        return AESGCM(data_key).decrypt(nonce, sealed, _aad(ctx)).decode()
    except InvalidTag:
        raise SecretDoesNotOpen("the sealed secret does not open in this context") from None


def hint(secret: str) -> str:
    """What may be shown of a secret: its last 4 characters."""
    return secret[-4:]
