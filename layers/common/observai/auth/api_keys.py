"""Verifying API keys, with a per-container cache.

A key row is cached for ``API_KEY_CACHE_TTL_S`` seconds (default 60): that is the bound on how
long a revoked key keeps working in a warm container while the database is up. Expiry is checked on
every request against the cached ``expires_at``, so an expired key stops at once. While the database is
down a key verified before keeps working for up to STALE_IF_ERROR_S (its data is spooled, not lost).
``last_used_at`` is written at most once per key per container every ``LAST_USED_WRITE_INTERVAL_S``
seconds, not on every request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from observai.auth.api_key_format import hashes_match, parse_key
from observai.config import Settings
from observai.db.connection import execute_autocommit, transaction
from observai.errors import Unauthenticated, Unavailable

CACHE_MAX_ENTRIES = 2048
STALE_IF_ERROR_S = 6 * 3600
LAST_USED_WRITE_INTERVAL_S = 300


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: UUID
    org_id: UUID
    project_id: UUID
    scopes: frozenset[str]
    key_hash: bytes
    expires_at: datetime | None
    revoked_at: datetime | None


class _TTLCache:
    def __init__(self, max_entries: int) -> None:
        self._items: OrderedDict[str, tuple[float, KeyRecord | None]] = OrderedDict()
        self._max = max_entries

    def get(self, prefix: str, ttl_s: float) -> tuple[bool, KeyRecord | None]:
        item = self._items.get(prefix)
        if item is None or time.monotonic() - item[0] > ttl_s:
            return False, None
        self._items.move_to_end(prefix)
        return True, item[1]

    def put(self, prefix: str, record: KeyRecord | None) -> None:
        self._items[prefix] = (time.monotonic(), record)
        self._items.move_to_end(prefix)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


_cache = _TTLCache(CACHE_MAX_ENTRIES)
_last_used_written: dict[UUID, float] = {}


def clear_cache() -> None:
    _cache.clear()
    _last_used_written.clear()


def _load(prefix: str) -> KeyRecord | None:
    with transaction() as cur:
        cur.execute(
            "select id, org_id, project_id, scopes, key_hash, expires_at, revoked_at"
            " from public.api_keys where prefix = %s",
            (prefix,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return KeyRecord(
        id=row["id"],
        org_id=row["org_id"],
        project_id=row["project_id"],
        scopes=frozenset(row["scopes"]),
        key_hash=bytes(row["key_hash"]),
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def verify_api_key(key: str, settings: Settings) -> KeyRecord:
    """The key's record when the key is genuine, unrevoked and unexpired; Unauthenticated otherwise."""
    parsed = parse_key(key)
    if parsed is None:
        raise Unauthenticated("Malformed API key", code="api_key_malformed")
    found, record = _cache.get(parsed.lookup_prefix, settings.api_key_cache_ttl_s)
    if not found:
        try:
            record = _load(parsed.lookup_prefix)
        except Unavailable:
            # Stale-if-error: a key this container has verified before keeps working while the database is
            # down (ingestion spools meanwhile), for at most STALE_IF_ERROR_S; unknown keys still get a 503.
            stale, record = _cache.get(parsed.lookup_prefix, STALE_IF_ERROR_S)
            if not stale:
                raise
        else:
            _cache.put(parsed.lookup_prefix, record)
    if record is None or not hashes_match(key, record.key_hash):
        raise Unauthenticated("Invalid API key", code="api_key_invalid")
    if record.revoked_at is not None:
        raise Unauthenticated("This API key has been revoked", code="api_key_revoked")
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise Unauthenticated("This API key has expired", code="api_key_expired")
    return record


def note_key_used(key_id: UUID) -> None:
    """Write last_used_at now and then, not on every request (a hot-row write per call would cost more)."""
    now = time.monotonic()
    last = _last_used_written.get(key_id)
    if last is not None and now - last < LAST_USED_WRITE_INTERVAL_S:
        return
    execute_autocommit("update public.api_keys set last_used_at = now() where id = %s", (key_id,))
    _last_used_written[key_id] = now
    if len(_last_used_written) > CACHE_MAX_ENTRIES:
        _last_used_written.clear()
