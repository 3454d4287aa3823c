"""Opaque cursors for keyset pagination: URL-safe base64 of a small JSON object, validated on the way in.

A cursor that does not decode, or decodes to the wrong shape (another list's cursor, a forged
timestamp, an id out of range), is a 400: it never reaches SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from observai.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class TimeCursor(BaseModel):
    """Position in a list ordered by (created_at, id)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    ts: AwareDatetime
    id: UUID


class IdCursor(BaseModel):
    """Position in a list ordered by a bigint id, newest first."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    before: int = Field(gt=0, lt=2**63)


CursorT = TypeVar("CursorT", bound=BaseModel)
_INVALID = "Invalid cursor: pass back the next_cursor of a previous page of this list"


def encode_cursor(position: BaseModel) -> str:
    raw = position.model_dump_json().encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, model: type[CursorT]) -> CursorT | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return model.model_validate(value)
    except (binascii.Error, ValueError, UnicodeDecodeError, ValidationError) as exc:
        raise InvalidInput(_INVALID, details={"loc": ["query", "cursor"]}) from exc


def time_cursor_params(after: TimeCursor | None) -> dict[str, Any]:
    return {"after_ts": after.ts if after else None, "after_id": after.id if after else None}


def time_position(ts_key: str = "created_at", id_key: str = "id") -> Callable[[dict[str, Any]], TimeCursor]:
    def position(row: dict[str, Any]) -> TimeCursor:
        ts: datetime = row[ts_key]
        return TimeCursor(ts=ts, id=row[id_key])

    return position


RowT = TypeVar("RowT")


def page(rows: list[RowT], limit: int, position_of: Callable[[RowT], BaseModel]) -> tuple[list[RowT], str | None]:
    """Rows were fetched with limit + 1: trim to ``limit`` and build the next cursor from the last row kept."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(position_of(rows[-1]))
    return rows, None
