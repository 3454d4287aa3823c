"""JSON for jsonb: what Postgres refuses, made storable instead of failing the whole write.

Postgres jsonb rejects NaN/Infinity (not JSON) and the \\u0000 escape (text cannot hold NUL); both
can arrive in telemetry attributes. Non-finite numbers become the strings "NaN", "Infinity",
"-Infinity"; NUL becomes U+FFFD. Clean documents (nearly all) are encoded once, at C speed.

COPY's jsonb values (jsonb_binary) are encoded with orjson, several times faster than the json module on
small attribute maps; what orjson refuses or would change (NaN and ±Infinity become null) goes the json way.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_NUL_ESCAPE_BYTES = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def jsonb_dumps(value: Any) -> str:
    if not value and value.__class__ in (dict, list):
        return "{}" if value.__class__ is dict else "[]"  # the common empty attributes, events, links
    try:
        text = _encode(value)
    except ValueError:  # NaN or ±Infinity somewhere
        text = _encode(_finite(value))
    if "\\u0000" in text:
        text = _NUL_ESCAPE.sub(r"\1\\ufffd", text)
    return text


def jsonb_binary(value: Any) -> bytes | None:
    """jsonb's binary wire form (version 1, then the JSON text), for binary COPY; None stays None (SQL NULL)."""
    if value is None:
        return None
    if not value and value.__class__ in (dict, list):
        return b"\x01{}" if value.__class__ is dict else b"\x01[]"
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:  # a key that is not a string, an integer past 64 bits, a lone surrogate...
        return b"\x01" + jsonb_dumps(value).encode()
    if b"null" in text:  # maybe a NaN or ±Infinity that orjson wrote as null (a real null is rare in telemetry)
        return b"\x01" + jsonb_dumps(value).encode()
    if b"\\u0000" in text:
        text = _NUL_ESCAPE_BYTES.sub(rb"\1\\ufffd", text)
    return b"\x01" + text


def clean_text(value: str | None) -> str | None:
    """Text columns cannot hold NUL either."""
    if value is not None and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value
