"""Records to binary COPY rows in C (``_rows.c``): the writer's row builders and psycopg's encoding in one pass.

``_log_rows`` and ``_span_rows`` (writer.py) build a tuple per record, encode each attribute map with orjson,
and psycopg then encodes every value: about 2.5 µs a row. ``_rows`` writes the same rows (tests hold both to
the same values: tests/unit/test_copy_rows.py) at about 0.3 µs a row. It answers None for a table it cannot
send exactly as the Python builders would (a text that is not UTF-8-encodable, a value out of its column's
range): the writer then builds that table in Python, which raises what it raises.

Built by ``make install`` (``setup.py``) and by the layer's build; without it, the writer builds rows in Python.
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass
from types import ModuleType
from uuid import UUID

from observai.db.jsonb import jsonb_binary
from observai.retention.policy import RowRetention
from observai.telemetry.model import LogRecord, Span

_rows: ModuleType | None
try:
    _rows = importlib.import_module("observai.telemetry._rows")
except ImportError:  # not built: the Python row builders
    _rows = None


@dataclass(frozen=True, slots=True)
class Encoded:
    """A table's rows as one binary COPY payload (signature, rows, trailer)."""

    payload: bytes
    count: int


def available() -> bool:
    return _rows is not None


def log_payload(
    records: list[LogRecord],
    org_id: UUID,
    project_id: UUID,
    retention: RowRetention,
    minutes: Counter[tuple[int, str | None, int, int]],
) -> Encoded | None:
    """The logs' rows; their (minute, service, severity, retention) counts added to ``minutes`` (log volume)."""
    if _rows is None:
        return None
    found = _rows.logs(records, org_id.bytes, project_id.bytes, retention.logs_by_severity, jsonb_binary)
    if found is None:
        return None
    payload, count, counts = found
    minutes.update(counts)
    return Encoded(payload, count)


def span_payload(records: list[Span], org_id: UUID, project_id: UUID, keep_days: int) -> Encoded | None:
    if _rows is None:
        return None
    found = _rows.spans(records, org_id.bytes, project_id.bytes, keep_days, jsonb_binary)
    return None if found is None else Encoded(*found)
