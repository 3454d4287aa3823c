"""Metric series identity: name + sorted attributes → a stable 63-bit id (positive bigint)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode
# (name, ((key, type, value), ...)) → id, for attribute maps of hashable values: most points repeat a series.
_memo: dict[tuple[Any, ...], int] = {}
MEMO_MAX = 100_000


def _compute(name: str, attributes: dict[str, Any]) -> int:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(name.encode())
    digest.update(b"\x00")
    digest.update(_canonical(attributes).encode())
    return int.from_bytes(digest.digest(), "big") & 0x7FFF_FFFF_FFFF_FFFF


def series_id(name: str, attributes: dict[str, Any]) -> int:
    """Stable across processes and versions: BLAKE2b-64 of the name and canonical attributes, top bit cleared."""
    try:
        # The value's type is part of the key: 1, 1.0 and True are equal in Python but not in JSON; a float is keyed
        # by its exact spelling, since 0.0 == -0.0 in Python but not in JSON (the fuzzer found two series merged).
        key = (name, *((k, v.__class__, v.hex() if v.__class__ is float else v) for k, v in sorted(attributes.items())))
        found = _memo.get(key)
    except TypeError:  # an unhashable value (a list, a map): no memo
        return _compute(name, attributes)
    if found is None:
        found = _compute(name, attributes)
        if len(_memo) >= MEMO_MAX:
            _memo.clear()
        _memo[key] = found
    return found
