"""On-call schedules: CRUD, overrides and the timeline of who is on call (see docs/oncall.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter

from observai.oncall.models import Layer
from observai.oncall.timeline import OverrideSpan

_LAYERS = TypeAdapter(list[Layer])


def layers_of(row: Mapping[str, Any]) -> list[Layer]:
    """A stored schedule's layers (validated when written; read back as the models)."""
    return _LAYERS.validate_python(row["layers"])


def spans_of(rows: Iterable[Mapping[str, Any]]) -> list[OverrideSpan]:
    return [OverrideSpan(r["user_id"], r["start_at"], r["end_at"]) for r in rows]
