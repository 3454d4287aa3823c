"""Opaque cursors for keyset pagination: URL-safe base64 of a small JSON object."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from observai.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            "Invalid cursor: pass back the next_cursor of a previous page", details={"loc": ["query", "cursor"]}
        ) from exc
    if not isinstance(value, dict):
        raise InvalidInput(
            "Invalid cursor: pass back the next_cursor of a previous page", details={"loc": ["query", "cursor"]}
        )
    return value


def page(rows: list[Any], limit: int, position_of: Any) -> tuple[list[Any], str | None]:
    """Rows were fetched with limit + 1: trim to ``limit`` and build the next cursor from the last row kept."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(position_of(rows[-1]))
    return rows, None
