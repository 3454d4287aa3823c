"""Untrusted text where it enters: bytes that must be UTF-8, and strings Postgres cannot hold.

Postgres text and jsonb hold neither NUL nor a lone UTF-16 surrogate (JSON can spell both: ``\\u0000``,
``\\udc00``). The API routes refuse them (422, with the field); telemetry stores U+FFFD in their place
(docs/sending-telemetry.md), so one odd character never costs the event or its batch.
"""

from __future__ import annotations

import re
from typing import Any

from observai.errors import InvalidInput

REPLACEMENT = "\ufffd"
# A \\u escape of a surrogate (D800-DFFF), in JSON text. A pair is fine; only a lone one is a problem, but
# any escape of one sends the parsed document through ``storable`` (rare: JSON encoders write pairs as UTF-8).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_text(body: bytes, what: str = "request body") -> str:
    """``body`` decoded as UTF-8, or 400 with the offset of the first bad byte (never U+FFFD in its place)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"The {what} is not valid UTF-8 (byte {exc.start})",
            code="invalid_utf8",
            details={"position": exc.start},
        ) from None


def may_hold_surrogates(json_text: bytes | str) -> bool:
    """True when parsing ``json_text`` may give a lone surrogate (it has a surrogate escape)."""
    raw = json_text.encode("utf-8", "surrogatepass") if isinstance(json_text, str) else json_text
    return _SURROGATE_ESCAPE.search(raw) is not None


def storable_text(value: str) -> str:
    """``value`` with each NUL and lone surrogate replaced by U+FFFD (a surrogate pair was joined by the parser)."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    if not value.isascii():
        value = _LONE_SURROGATE.sub(REPLACEMENT, value)
    return value


def storable(value: Any) -> Any:
    """A parsed JSON document with every string (keys included) made storable; iterative, so any depth."""
    if isinstance(value, str):
        return storable_text(value)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        parent, key, node = stack.pop()
        if isinstance(node, dict):
            fixed: dict[str, Any] = {}
            for k, v in node.items():
                fixed[storable_text(k) if isinstance(k, str) else k] = v
            parent[key] = fixed
            for k, v in fixed.items():
                if isinstance(v, str):
                    fixed[k] = storable_text(v)
                elif isinstance(v, dict | list):
                    stack.append((fixed, k, v))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, str):
                    node[i] = storable_text(v)
                elif isinstance(v, dict | list):
                    stack.append((node, i, v))
    return root[0]


def unstorable_reason(value: str) -> str | None:
    """Why Postgres cannot store ``value`` as text, or None."""
    if "\x00" in value:
        return "must not contain NUL characters (\\u0000)"
    if not value.isascii() and _LONE_SURROGATE.search(value):
        return "must not contain unpaired UTF-16 surrogates"
    return None
