"""API key format: ``oai_`` + 32 random base62 characters + a 6-character CRC32 checksum.

The fixed prefix lets secret scanners spot a leaked key; the checksum lets us (and scanners)
reject a mistyped or made-up key without a database lookup. The first 12 random characters are
the key's public lookup prefix (stored, shown in listings); only a SHA-256 hash of the whole key
is stored: keys carry ~190 bits of entropy, so a fast hash is enough (no password stretching).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from dataclasses import dataclass

KEY_PREFIX = "oai_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
LOOKUP_LENGTH = 12
KEY_LENGTH = len(KEY_PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key: str
    lookup_prefix: str  # "oai_" + the first 12 random characters


def generate_key() -> ParsedKey:
    body = KEY_PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    key = body + checksum(body)
    return ParsedKey(key=key, lookup_prefix=key[: len(KEY_PREFIX) + LOOKUP_LENGTH])


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def parse_key(key: str) -> ParsedKey | None:
    """The key's parts when its shape and checksum are right, else None."""
    if len(key) != KEY_LENGTH or not key.startswith(KEY_PREFIX):
        return None
    if any(c not in ALPHABET for c in key[len(KEY_PREFIX) :]):
        return None
    body, check = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(checksum(body), check):
        return None
    return ParsedKey(key=key, lookup_prefix=key[: len(KEY_PREFIX) + LOOKUP_LENGTH])


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def hashes_match(key: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_key(key), bytes(stored_hash))
