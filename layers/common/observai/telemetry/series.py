"""Metric series identity: name + sorted attributes → a stable 63-bit id (positive bigint)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_attributes(attributes: dict[str, Any]) -> str:
    return json.dumps(attributes, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def series_id(name: str, attributes: dict[str, Any]) -> int:
    """Stable across processes and versions: BLAKE2b-64 of the name and canonical attributes, top bit cleared."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(name.encode())
    digest.update(b"\x00")
    digest.update(canonical_attributes(attributes).encode())
    return int.from_bytes(digest.digest(), "big") & 0x7FFF_FFFF_FFFF_FFFF
