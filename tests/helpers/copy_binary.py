"""Binary COPY payloads read back into rows, and row tuples compared the way Postgres would store them.

For the OTLP fast path's tests: its payload (PGCOPY signature, rows, trailer) must hold the rows the Python
path builds (the writer's row tuples, values in their wire form). Values are compared as stored: integers
and times by value, text exactly, jsonb as documents whose numbers keep their value and scale (jsonb stores
numeric: 1.0 and 1 differ in scale, 1e16 and 10000000000000000 do not).
"""

from __future__ import annotations

import json
import struct
from decimal import Decimal
from typing import Any

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


def read_rows(payload: bytes) -> list[list[bytes | None]]:
    """The rows of a binary COPY payload, each a list of its fields' raw bytes (None for NULL)."""
    assert payload.startswith(SIGNATURE), payload[:19]
    at, rows = len(SIGNATURE), []
    while True:
        (count,) = struct.unpack_from(">h", payload, at)
        at += 2
        if count == -1:
            assert at == len(payload), "bytes after the trailer"
            return rows
        row: list[bytes | None] = []
        for _ in range(count):
            (size,) = struct.unpack_from(">i", payload, at)
            at += 4
            if size == -1:
                row.append(None)
            else:
                row.append(payload[at : at + size])
                at += size
        rows.append(row)


def _numeric(text: str) -> tuple[Decimal, int]:
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    return value, max(0, -exponent) if isinstance(exponent, int) else 0


def stored_json(raw: bytes) -> Any:
    """A jsonb value as Postgres keeps it: numbers as (value, scale); the last of duplicate keys wins."""
    assert raw[:1] == b"\x01", raw[:10]
    return json.loads(raw[1:], parse_float=_numeric, parse_int=lambda s: _numeric(s))


def wire_value(value: Any, column_type: str) -> bytes | None:
    """A row tuple's value (the writer's wire form) as the bytes binary COPY carries."""
    if value is None:
        return None
    if column_type in ("uuid", "jsonb"):
        return bytes(value)
    if column_type in ("timestamptz", "int8"):
        return struct.pack(">q", value)
    if column_type == "int4":
        return struct.pack(">i", value)
    if column_type == "int2":
        return struct.pack(">h", value)
    if column_type == "float8":
        return struct.pack(">d", value)
    if column_type == "text":
        return str(value).encode()
    raise AssertionError(f"unexpected column type {column_type}")


def comparable(row: list[bytes | None], column_types: list[str]) -> list[Any]:
    """A payload row with its jsonb fields parsed (stored_json), the rest as raw bytes."""
    return [stored_json(v) if t == "jsonb" and v is not None else v for v, t in zip(row, column_types, strict=True)]
