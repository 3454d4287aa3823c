"""OTLP protobuf logs, spans and metric points straight to binary COPY rows, in C (``_wire.c``): the fast path
of the ingest.

The Python path converts each item to a record (``decode.py``), then the writer turns records into row
tuples and psycopg encodes them: about 10 µs per span, 5 µs per log record or data point. ``_wire`` reads the
request's bytes once and writes the rows of ``public.logs``, ``public.spans`` or ``public.metric_points`` in
COPY's binary format, about 1 µs per item (series ids included).

It takes only requests whose every item is accepted, and that it reads exactly as the Python path does; for
any other it answers None and the Python path does the work (tests hold both to the same rows:
tests/unit/test_otlp_wire.py). Metric points go this way only when the container knows their series already
(a new series is created, or refused, on the Python path).

The extension is built by ``make install`` (``setup.py``) and by the layer's build; without it (a checkout
not built yet) every request takes the Python path.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from uuid import UUID

from observai.retention.policy import RowRetention
from observai.telemetry.limits import IngestLimits
from observai.telemetry.model import RawRequest, Signal

_wire: ModuleType | None
try:
    _wire = importlib.import_module("observai.telemetry.otlp._wire")
except ImportError:  # not built: the Python path
    _wire = None

_KINDS = {Signal.LOGS: 0, Signal.TRACES: 1, Signal.METRICS: 2}

# (minute since 2000-01-01 UTC, service, severity_number, retention_days) → log rows: the log volume's counts
Minutes = dict[tuple[int, str | None, int, int], int]


@dataclass(frozen=True, slots=True)
class WireRows:
    count: int  # rows (every item of the request)
    payload: bytes  # binary COPY: signature, rows, trailer
    minutes: Minutes | None = None  # logs only
    series: dict[int, str] | None = None  # metric points only: {series_id: type} of their series


def available() -> bool:
    return _wire is not None


def limits_tuple(limits: IngestLimits) -> tuple[int, ...]:
    return (
        limits.max_attributes,
        limits.max_key_length,
        limits.max_value_length,
        limits.max_body_length,
        limits.max_name_length,
        limits.max_past_s,
        limits.max_future_s,
    )


def wire_rows(raw: RawRequest, org_id: UUID, project_id: UUID, retention: RowRetention) -> WireRows | None:
    """The request's rows for its table, or None when the Python path must convert it (or _wire is not built):
    also for a request over the size limit, which the Python path refuses whole (413)."""
    kind = _KINDS.get(raw.signal)
    if _wire is None or kind is None:
        return None
    keep = {Signal.LOGS: retention.logs_by_severity, Signal.TRACES: retention.spans}.get(raw.signal, retention.metrics)
    found = _wire.rows(kind, raw.body, raw.now_ns, limits_tuple(raw.limits), org_id.bytes, project_id.bytes, keep)
    if found is None:
        return None
    count, payload, extra, items = found
    if items > raw.limits.max_events:
        return None  # the Python path refuses the request whole (413)
    if raw.signal is Signal.METRICS:
        return WireRows(count, payload, series=extra)
    return WireRows(count, payload, minutes=extra)
