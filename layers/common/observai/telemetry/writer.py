"""The write path: a whole batch in one transaction, with binary COPY, idempotent.

Replays never produce duplicate rows:
- a request replayed with the same Idempotency-Key returns the first response and writes nothing
  (the key is claimed first in the same transaction, so concurrent replays wait, then replay);
- an event sent again is dropped by its dedup key: (series, time) for metric points, (event_id, time)
  for logs that carry an event id, (trace_id, span_id, start_time) for spans (each unique index also
  holds retention_days, the sub-partition key, the same for a retried event: migration 0010). The first
  attempt COPYs straight away (new events are the common case); when a unique index refuses a stored
  event, the whole transaction is written again "carefully": existing keys are looked up first (one
  indexed query per signal, pruned to the batch's time range) and skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg import Copy, sql
from psycopg.types.json import Jsonb
from psycopg.types.string import BytesBinaryDumper

from observai.db.connection import Cursor, committing, copy_transaction, execute_autocommit, transaction
from observai.db.jsonb import clean_text, jsonb_binary
from observai.errors import Conflict
from observai.logs import volume
from observai.observability import logger
from observai.retention.policy import RowRetention, row_retention
from observai.telemetry import copy_rows, usage
from observai.telemetry.copy_rows import Encoded
from observai.telemetry.model import Batch, LogRecord, MetricPoint, Rejection, Signal, Span
from observai.telemetry.overlap import in_background, quick_switches
from observai.telemetry.series import series_id

if TYPE_CHECKING:
    from observai.telemetry.otlp.wire import WireRows

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
KNOWN_SERIES_MAX = 200_000

# project_id → {series_id: metric type}: series this container has seen stored.
_known_series: dict[UUID, dict[int, str]] = {}


@dataclass(slots=True)
class StoreResult:
    replayed: bool
    response: dict[str, Any]
    rejected: list[Rejection] = field(default_factory=list)  # found while writing (series limits, type clashes)
    duplicates: int = 0


def ts_of(pg_us: int) -> datetime:
    """The datetime of a pg_time value (for query parameters)."""
    return _EPOCH + timedelta(microseconds=pg_us + _PG_EPOCH_US)


def clear_caches() -> None:
    _known_series.clear()


@dataclass(frozen=True, slots=True)
class _Write:
    org_id: UUID
    project_id: UUID
    batch: Batch
    idempotency_key: str | None
    request_hash: str
    response: dict[str, Any]
    body_bytes: int
    respond: Callable[[Batch, list[Rejection], int], dict[str, Any]] | None
    admit: Callable[[], None] | None
    retention: RowRetention  # the retention_days column of each row (the org's plan, cached per container)


def store_batch(
    org_id: UUID,
    project_id: UUID,
    batch: Batch,
    *,
    idempotency_key: str | None,
    request_hash: str,
    response: dict[str, Any],
    body_bytes: int,
    respond: Callable[[Batch, list[Rejection], int], dict[str, Any]] | None = None,
    admit: Callable[[], None] | None = None,
) -> StoreResult:
    """Write ``batch`` for the project; with ``respond``, the stored response is built from what the write found:
    the batch, write-time rejections (series limits, type clashes) and how many events were already stored.
    ``admit`` runs once the request is known not to be a replay and the batch is written, before the commit
    (quotas). A batch with pending conversions (``Batch.pending``) has its records converted as they are COPYed,
    while Postgres stores the ones sent before."""
    retention = row_retention(usage.plan_limits(org_id))
    write = _Write(
        org_id, project_id, batch, idempotency_key, request_hash, response, body_bytes, respond, admit, retention
    )
    # First optimistically: most batches hold only new events, and the unique indexes catch the rest. A batch
    # that re-sends stored events fails on them and is written again carefully, looking existing keys up first;
    # the third try covers a concurrent writer that slipped the same events in between.
    with quick_switches():
        for careful in (False, True, True):
            try:
                return _store_once(write, careful)
            except psycopg.errors.UniqueViolation:
                logger.debug("duplicate events in the batch: writing it again, skipping the stored ones")
    raise AssertionError("unreachable")


def _store_once(w: _Write, careful: bool) -> StoreResult:
    org_id, project_id, batch = w.org_id, w.project_id, w.batch
    wired = None if careful else _wired(w)
    if wired is not None and w.idempotency_key is None:
        return _store_wired(w, wired)
    with transaction() as cur:
        if w.idempotency_key is not None:
            stored = _claim_key(cur, org_id, project_id, w.idempotency_key, w.request_hash)
            if stored is not None:
                return StoreResult(replayed=True, response=stored)
        skipped, points, rejected, minutes = _write_signals(cur, w, careful, wired)
        if w.admit is not None:
            # e.g. the daily quota: after the replay check, so a replay is never refused; once the batch is
            # converted (its accepted events known), before the commit: refused, what was written rolls back.
            w.admit()
        duplicates = sum(skipped.values())
        written = {
            Signal.METRICS: points - skipped[Signal.METRICS],
            Signal.LOGS: batch.count(Signal.LOGS) - skipped[Signal.LOGS],
            Signal.TRACES: batch.count(Signal.TRACES) - skipped[Signal.TRACES],
        }
        final = w.respond(batch, rejected, duplicates) if w.respond is not None else w.response
        # The bookkeeping and the COMMIT in one query string, one round trip (no result is read): the histogram's
        # log volume (exactly the log rows written), usage (what was stored: a retried event is not charged twice),
        # and the response a replay of the Idempotency-Key gets.
        bookkeeping = [
            volume.volume_statement(org_id, project_id, minutes),
            usage.usage_statement(org_id, project_id, _usage(written, w.body_bytes)),
            _replay_statement(project_id, w.idempotency_key, final),
        ]
        with committing(cur) as last:
            last.extend(statement for statement in bookkeeping if statement is not None)
    return StoreResult(replayed=False, response=final, rejected=rejected, duplicates=duplicates)


def _wired(w: _Write) -> WireRows | None:
    """The rows of an OTLP logs, traces or metrics request built straight from its protobuf bytes (``otlp/wire.py``),
    when every item is accepted and (metric points) every series is known; else None (the records' path)."""
    raw = w.batch.raw
    if raw is None or w.batch.signals() != {raw.signal}:
        return None
    # (Imported here: only an OTLP request has a raw body, and the otlp package is the ingest function's.)
    from observai.telemetry.otlp.wire import wire_rows

    wired = wire_rows(raw, w.org_id, w.project_id, w.retention)
    if wired is not None and wired.series is not None and not _all_known(w.project_id, wired.series):
        return None  # a series not stored yet (or of another type): created, or refused, on the records' path
    return wired


def _store_wired(w: _Write, wired: WireRows) -> StoreResult:
    """A request whose rows are built already (``_wired``), without an Idempotency-Key: its whole transaction in
    one query string (``copy_transaction``: BEGIN, the COPY, the bookkeeping, COMMIT), the same rows and the same
    bookkeeping as ``_store_once`` writes. Every item is accepted, so what is written (and charged) is known before
    the COPY: the quota is checked before anything is sent. A duplicate raises UniqueViolation as the COPY of
    ``_store_once`` would (the careful retry follows)."""
    batch, raw = w.batch, w.batch.raw
    assert raw is not None
    signal = raw.signal
    batch.wired[signal] = wired.count  # the counts below, and the response, read it (no record converted)
    try:
        if w.admit is not None:
            w.admit()
        final = w.respond(batch, [], 0) if w.respond is not None else w.response
        table, columns = {
            Signal.LOGS: ("logs", _LOG_COLUMNS),
            Signal.TRACES: ("spans", _SPAN_COLUMNS),
            Signal.METRICS: ("metric_points", _METRIC_COLUMNS),
        }[signal]
        bookkeeping = [
            volume.volume_statement(w.org_id, w.project_id, wired.minutes or {}),
            usage.usage_statement(w.org_id, w.project_id, _usage({signal: wired.count}, w.body_bytes)),
        ]
        copy_transaction(
            f"copy public.{table} ({columns}) from stdin (format binary)",
            wired.payload,
            [statement for statement in bookkeeping if statement is not None],
        )
    except BaseException:
        del batch.wired[signal]  # nothing written: a retry or the spool converts the records
        raise
    return StoreResult(replayed=False, response=final)


def _replay_statement(project_id: UUID, key: str | None, response: dict[str, Any]) -> sql.Composed | None:
    """The response a replay of the Idempotency-Key gets, stored with the batch (None: no key)."""
    if key is None:
        return None
    return sql.SQL("update public.ingest_idempotency set response = {} where project_id = {} and key = {}").format(
        sql.Literal(Jsonb(response)), sql.Literal(project_id), sql.Literal(key)
    )


def _claim_key(cur: Cursor, org_id: UUID, project_id: UUID, key: str, request_hash: str) -> dict[str, Any] | None:
    """Claim the key (None) or return the first response stored under it. An expired key is claimed afresh."""
    cur.execute(
        "insert into public.ingest_idempotency as i (project_id, key, org_id, request_hash, status, response)"
        " values (%s, %s, %s, %s, 202, '{}'::jsonb)"
        " on conflict (project_id, key) do update set request_hash = excluded.request_hash,"
        " response = excluded.response, created_at = now(), expires_at = now() + interval '24 hours'"
        " where i.expires_at < now()"
        " returning key",
        (project_id, key, org_id, request_hash),
    )
    if cur.fetchone() is not None:
        return None
    cur.execute(
        "select request_hash, response from public.ingest_idempotency where project_id = %s and key = %s",
        (project_id, key),
    )
    row = cur.fetchone()
    assert row is not None
    if row["request_hash"] != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
            details={"idempotency_key": key},
        )
    return dict(row["response"])


def batch_stored(project_id: UUID, key: str) -> bool:
    """Whether a batch was stored under this Idempotency-Key: its key is committed with it, and kept 24 hours
    (the spool drain settles a redelivered message whose S3 envelope it already deleted)."""
    rows = execute_autocommit(
        "select exists (select 1 from public.ingest_idempotency where project_id = %s and key = %s) as stored",
        (project_id, key),
    )
    return bool(rows and rows[0]["stored"])


def _usage(written: dict[Signal, int], body_bytes: int) -> dict[Signal, tuple[int, int]]:
    """Events and bytes per signal; the request's bytes are shared out in proportion to the events."""
    total = sum(written.values()) or 1
    return {signal: (n, body_bytes * n // total) for signal, n in written.items() if n}


# --- metric series -------------------------------------------------------------------------------------------


def _resolve_series(
    cur: Cursor, org_id: UUID, project_id: UUID, points: list[MetricPoint], ids: list[int] | None = None
) -> tuple[list[MetricPoint], list[int], list[Rejection]]:
    """Series ids for the points (``ids``: computed already); unknown series are created within the plan's limits,
    the rest rejected."""
    if not points:
        return [], [], []
    known = _known_series.setdefault(project_id, {})
    if ids is None:
        ids = [series_id(p.name, p.attributes) for p in points]
    unknown: dict[int, MetricPoint] = {}
    for sid, point in zip(ids, points, strict=True):
        if sid not in known:
            unknown.setdefault(sid, point)  # a new series takes the type of its first point
    refused: dict[int, str] = {}
    if unknown:
        cur.execute(
            "select series_id, type from public.metric_series where project_id = %s and series_id = any(%s)",
            (project_id, list(unknown)),
        )
        for row in cur.fetchall():
            known[row["series_id"]] = row["type"]
            unknown.pop(row["series_id"], None)
        if unknown:
            refused = _create_series(cur, org_id, project_id, unknown)
            known.update({sid: p.type.value for sid, p in unknown.items() if sid not in refused})
    if sum(len(v) for v in _known_series.values()) > KNOWN_SERIES_MAX:
        _known_series.clear()
    kept: list[MetricPoint] = []
    kept_ids: list[int] = []
    rejected: list[Rejection] = []
    for sid, point in zip(ids, points, strict=True):
        reason = refused.get(sid)
        if reason is None and known.get(sid, point.type.value) != point.type.value:
            reason = f"metric {point.name!r} is a {known[sid]}, not a {point.type.value}"
        if reason is None:
            kept.append(point)
            kept_ids.append(sid)
        else:
            rejected.append(Rejection(point.index, reason, Signal.METRICS))
    return kept, kept_ids, rejected


def _create_series(cur: Cursor, org_id: UUID, project_id: UUID, new: dict[int, MetricPoint]) -> dict[int, str]:
    """Insert new series up to the plan's series and per-metric cardinality limits; return the refused ones."""
    limits = usage.plan_limits(org_id)
    names = sorted({p.name for p in new.values()})
    cur.execute("select count(*) as n from public.metric_series where project_id = %s", (project_id,))
    row = cur.fetchone()
    total = int(row["n"]) if row else 0
    cur.execute(
        "select name, count(*) as n from public.metric_series where project_id = %s and name = any(%s) group by name",
        (project_id, names),
    )
    per_name = {r["name"]: int(r["n"]) for r in cur.fetchall()}
    refused: dict[int, str] = {}
    accepted: list[tuple[int, MetricPoint]] = []
    for sid, point in new.items():
        if limits.max_series is not None and total >= limits.max_series:
            refused[sid] = f"series limit of the {limits.plan} plan reached ({limits.max_series} series per project)"
            continue
        used = per_name.get(point.name, 0)
        if limits.max_cardinality_per_metric is not None and used >= limits.max_cardinality_per_metric:
            refused[sid] = (
                f"cardinality limit of the {limits.plan} plan reached for {point.name!r}"
                f" ({limits.max_cardinality_per_metric} series per metric)"
            )
            continue
        total += 1
        per_name[point.name] = used + 1
        accepted.append((sid, point))
    if accepted:
        cur.execute(
            "insert into public.metric_series"
            " (org_id, project_id, series_id, name, type, unit, description, attributes, monotonic, temporality,"
            " scope)"
            " select %s, %s, * from unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::jsonb[], %s::boolean[], %s::text[], %s::jsonb[])"
            " on conflict (project_id, series_id) do nothing",
            (
                org_id,
                project_id,
                [sid for sid, _ in accepted],
                [clean_text(p.name) for _, p in accepted],
                [p.type.value for _, p in accepted],
                [clean_text(p.unit) for _, p in accepted],
                [clean_text(p.description) for _, p in accepted],
                [Jsonb(p.attributes) for _, p in accepted],
                [p.monotonic for _, p in accepted],
                [p.temporality.value if p.temporality else None for _, p in accepted],
                [Jsonb(p.scope) if p.scope is not None else None for _, p in accepted],
            ),
        )
    return refused


# --- rows ----------------------------------------------------------------------------------------------------
#
# Binary COPY carries each field as a length and the bytes of the column type's binary form, with no type ids:
# the server reads them with the column's own receive function. So values are sent in that form straight from
# the row tuples, through psycopg's C dumpers only (no Python dumper call per value): uuid as its 16 bytes and
# jsonb as version byte 1 + JSON text, both as "bytea" (raw bytes), timestamptz as int8 microseconds since
# 2000-01-01 UTC. *_COLUMN_TYPES are the columns' real types; *_TYPES (_wire_types) what psycopg is told.

_WIRE_TYPE = {"uuid": "bytea", "jsonb": "bytea", "timestamptz": "int8"}
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since the Unix epoch
_MINUTE_US = 60_000_000  # a log row's minute (log volume): its pg_time // _MINUTE_US, since 2000-01-01 UTC


def _wire_types(types: list[str]) -> list[str]:
    return [_WIRE_TYPE.get(t, t) for t in types]


def pg_time(ns: int) -> int:
    """timestamptz's binary form: microseconds since 2000-01-01 UTC."""
    return ns // 1000 - _PG_EPOCH_US


def pg_time_of(value: datetime) -> int:
    """pg_time of a timestamptz read back from the database."""
    return (value - _EPOCH) // _MICROSECOND - _PG_EPOCH_US


_METRIC_COLUMNS = (
    "org_id, project_id, series_id, time, start_time, value, count, sum, min, max, distribution, exemplars, flags,"
    " event_id, retention_days"
)
_METRIC_COLUMN_TYPES = [
    "uuid", "uuid", "int8", "timestamptz", "timestamptz", "float8", "int8", "float8", "float8", "float8",
    "jsonb", "jsonb", "int4", "text", "int2",
]  # fmt: skip
_METRIC_TYPES = _wire_types(_METRIC_COLUMN_TYPES)
_LOG_COLUMNS = (
    "org_id, project_id, time, observed_time, severity_number, severity_text, service, body, attributes, resource,"
    " scope, trace_id, span_id, flags, event_id, event_name, retention_days"
)
_LOG_COLUMN_TYPES = [
    "uuid", "uuid", "timestamptz", "timestamptz", "int2", "text", "text", "text", "jsonb", "jsonb",
    "jsonb", "text", "text", "int4", "text", "text", "int2",
]  # fmt: skip
_LOG_TYPES = _wire_types(_LOG_COLUMN_TYPES)
_SPAN_COLUMNS = (
    "org_id, project_id, trace_id, span_id, parent_span_id, name, kind, service, start_time, end_time, duration_ns,"
    " status_code, status_message, attributes, resource, scope, events, links, trace_state, flags, event_id,"
    " retention_days"
)
_SPAN_COLUMN_TYPES = [
    "uuid", "uuid", "text", "text", "text", "text", "text", "text", "timestamptz", "timestamptz", "int8",
    "text", "text", "jsonb", "jsonb", "jsonb", "jsonb", "jsonb", "text", "int4", "text", "int2",
]  # fmt: skip
_SPAN_TYPES = _wire_types(_SPAN_COLUMN_TYPES)


class SharedJsonb:
    """jsonb_binary for values many rows share (the items of one resource or scope share one dict): each object
    encoded once per batch. The memo holds a reference to every object it saw, so no id can be reused by another
    object meanwhile; it lives as long as one batch's rows.
    """

    __slots__ = ("memo",)

    def __init__(self) -> None:
        self.memo: dict[int, tuple[Any, bytes | None]] = {}

    def __call__(self, value: Any) -> bytes | None:
        seen = self.memo.get(id(value))
        if seen is None:
            seen = self.memo[id(value)] = (value, jsonb_binary(value))
        return seen[1]


def _write_signals(
    cur: Cursor, w: _Write, careful: bool, wired: WireRows | None
) -> tuple[dict[Signal, int], int, list[Rejection], Counter[tuple[int, str | None, int, int]]]:
    """COPY logs, then spans, then metric points; returns the duplicates skipped per signal, the points accepted,
    the points refused (series limits, type clashes) and the log rows' volume (``volume.volume_statement``).

    A software pipeline (``overlap``): each table's records are converted (``Batch.pending``) and its rows built
    while Postgres inserts the table before: the logs are streamed (Postgres parses them as they arrive), the
    spans' rows are built while the logs' COPY is finished, and the metric points and their series ids while the
    spans' COPY is finished. A batch of logs or spans alone (an OTLP request) has nothing else to build meanwhile:
    its table is COPYed in two parts (``_copy_in_two``). A careful write (a retry after a duplicate) looks the
    stored keys up first, so the whole batch is converted before anything is written.
    """
    org_id, project_id, batch, retention = w.org_id, w.project_id, w.batch, w.retention
    logs: Iterator[LogRecord] = batch.records(Signal.LOGS)
    spans: Iterator[Span] = batch.records(Signal.TRACES)
    if careful:
        batch.complete()
        logs = iter(_unstored_logs(cur, project_id, batch.logs))
        spans = iter(_unstored_spans(cur, project_id, batch.spans))
    # Logs with an event id are written once per (event_id, time), spans once per (trace, span, start).
    minutes: Counter[tuple[int, str | None, int, int]] = Counter()  # log volume
    points: list[MetricPoint] = []
    ids: list[int] = []
    built_spans: list[Rows] = []

    def log_rows() -> Rows:
        return _log_copy_rows(org_id, project_id, _first_of_each(logs, _log_key), retention, minutes)

    def span_rows() -> Rows:
        return _span_copy_rows(org_id, project_id, _first_of_each(spans, _span_key), retention.spans)

    def build_spans() -> None:
        rows = span_rows()
        built_spans.append(rows if isinstance(rows, Encoded) else list(rows))

    def identify_points() -> None:
        points.extend(batch.records(Signal.METRICS))
        ids.extend(series_id(p.name, p.attributes) for p in points)

    signals = batch.signals()
    raw = batch.raw
    spans_written = points_written = 0
    if wired is not None and raw is not None:
        encoded = Encoded(wired.payload, wired.count)
        if raw.signal is Signal.LOGS:
            _copy(cur, "logs", _LOG_COLUMNS, _LOG_TYPES, encoded)
            minutes.update(wired.minutes or {})
        elif raw.signal is Signal.TRACES:
            spans_written = _copy(cur, "spans", _SPAN_COLUMNS, _SPAN_TYPES, encoded)
        else:
            points_written = _copy(cur, "metric_points", _METRIC_COLUMNS, _METRIC_TYPES, encoded)
        batch.wired[raw.signal] = wired.count
    elif signals == {Signal.LOGS}:  # one table alone (an OTLP request): split in two to overlap
        _copy_in_two(cur, "logs", _LOG_COLUMNS, _LOG_TYPES, log_rows())
    elif signals == {Signal.TRACES}:
        spans_written = _copy_in_two(cur, "spans", _SPAN_COLUMNS, _SPAN_TYPES, span_rows())
    else:
        _copy(cur, "logs", _LOG_COLUMNS, _LOG_TYPES, log_rows(), meanwhile=build_spans)
        spans_written = _copy(cur, "spans", _SPAN_COLUMNS, _SPAN_TYPES, built_spans[0], meanwhile=identify_points)
    metrics, series_ids, rejected = _resolve_series(cur, org_id, project_id, points, ids)
    skipped = {
        Signal.METRICS: _write_metrics(cur, org_id, project_id, metrics, series_ids, careful, retention),
        Signal.LOGS: batch.count(Signal.LOGS) - sum(minutes.values()),
        Signal.TRACES: batch.count(Signal.TRACES) - spans_written,
    }
    return skipped, len(metrics) + points_written, rejected, minutes


def _all_known(project_id: UUID, series: dict[int, str]) -> bool:
    """Every series stored already, with that type (``_known_series``: this container has seen them)."""
    known = _known_series.get(project_id)
    return known is not None and all(known.get(sid) == kind for sid, kind in series.items())


def _copy(
    cur: Cursor,
    table: str,
    columns: str,
    types: list[str],
    rows: Rows,
    *,
    meanwhile: Callable[[], None] | None = None,
) -> int:
    """COPY the rows: a payload built in C at once (``Encoded``), or row tuples taken as they come (psycopg sends
    every 32 kB: Postgres parses those while the next ones are built); ``meanwhile`` runs on the worker thread while
    the COPY is finished (``overlap``), and has run when this returns. No rows: no COPY (``meanwhile`` still runs).
    Returns the rows written."""
    send = _sender(rows, types)
    if send is None:
        if meanwhile is not None:
            meanwhile()
        return 0
    # For "bytea", psycopg would pick its DB-API Binary dumper (a Python call per value): the plain bytes one is C.
    cur.adapters.register_dumper(None, BytesBinaryDumper)
    work: Future[None] | None = None
    try:
        with cur.copy(f"copy public.{table} ({columns}) from stdin (format binary)") as copy:
            written = send(copy)
            if meanwhile is not None:
                # Started now: it runs while the COPY is finished (Postgres inserting what it buffered).
                work = in_background(meanwhile)
    finally:
        if work is not None:
            # Waited for even when the COPY failed (a duplicate, the database gone): the work converts records into
            # the batch, which the careful retry or the spool reads next, never while it still runs.
            wait([work])
    if work is not None:
        work.result()
    return written


def _sender(rows: Rows, types: list[str]) -> Callable[[Copy], int] | None:
    """What sends the rows into a COPY and returns how many it sent; None when there are none."""
    if isinstance(rows, Encoded):
        encoded = rows

        def send_payload(copy: Copy) -> int:
            copy.write(encoded.payload)
            return encoded.count

        return send_payload if encoded.count else None
    it = iter(rows)
    first = next(it, None)
    if first is None:
        return None

    def send_rows(copy: Copy) -> int:
        copy.set_types(types)
        write = copy.write_row
        write(first)
        written = 1
        for row in it:
            write(row)
            written += 1
        return written

    return send_rows


# Rows of a lone table COPYed (and built) first: the rest is built on the worker while Postgres inserts these.
HEAD_ROWS = 160


def _copy_in_two(cur: Cursor, table: str, columns: str, types: list[str], rows: Rows) -> int:
    """COPY a table that is the batch's only one: its first HEAD_ROWS rows as they are built, then the rest, built
    on the worker thread while Postgres inserts the first ones (A/B: about 0.8 ms less per 1,000 OTLP events;
    a batch of several tables overlaps one table with the next instead). Returns the rows written. Rows built
    in C (``Encoded``) are ready at once: one COPY."""
    if isinstance(rows, Encoded):
        return _copy(cur, table, columns, types, rows)
    rows = iter(rows)
    rest: list[tuple[Any, ...]] = []
    written = _copy(cur, table, columns, types, islice(rows, HEAD_ROWS), meanwhile=lambda: rest.extend(rows))
    return written + _copy(cur, table, columns, types, rest)


def _write_metrics(
    cur: Cursor,
    org_id: UUID,
    project_id: UUID,
    points: list[MetricPoint],
    ids: list[int],
    careful: bool,
    retention: RowRetention,
) -> int:
    if not points:
        return 0
    keyed: dict[tuple[int, int], MetricPoint] = {}
    for sid, point in zip(ids, points, strict=True):
        keyed.setdefault((sid, pg_time(point.time_ns)), point)
    fresh = keyed
    if careful:
        times = [ts_of(k[1]) for k in keyed]
        found = _existing(
            cur,
            "select series_id, time from public.metric_points where project_id = %s and time between %s and %s"
            " and (series_id, time) in (select * from unnest(%s::bigint[], %s::timestamptz[]))",
            (project_id, min(times), max(times), [k[0] for k in keyed], times),
        )
        fresh = {k: p for k, p in keyed.items() if k not in found}
    _copy(
        cur, "metric_points", _METRIC_COLUMNS, _METRIC_TYPES, _metric_rows(org_id, project_id, fresh, retention.metrics)
    )
    return len(points) - len(fresh)


def _log_key(record: LogRecord) -> tuple[str, int] | None:
    return None if record.event_id is None else (record.event_id, pg_time(record.time_ns))


def _span_key(span: Span) -> tuple[str, str, int]:
    return (span.trace_id, span.span_id, pg_time(span.start_time_ns))


def _unstored_logs(cur: Cursor, project_id: UUID, logs: list[LogRecord]) -> list[LogRecord]:
    """The logs without an event id, and those whose (event_id, time) is not stored yet."""
    keys = {key for key in map(_log_key, logs) if key is not None}
    if not keys:
        return logs
    times = [ts_of(k[1]) for k in keys]
    found = _existing(
        cur,
        "select event_id, time from public.logs where project_id = %s and time between %s and %s"
        " and event_id = any(%s)",
        (project_id, min(times), max(times), [k[0] for k in keys]),
    )
    return [log for log in logs if _log_key(log) not in found]


def _unstored_spans(cur: Cursor, project_id: UUID, spans: list[Span]) -> list[Span]:
    """The spans whose (trace_id, span_id, start_time) is not stored yet."""
    if not spans:
        return spans
    starts = [ts_of(pg_time(s.start_time_ns)) for s in spans]
    found = _existing(
        cur,
        "select trace_id, span_id, start_time from public.spans where project_id = %s"
        " and start_time between %s and %s"
        " and (trace_id, span_id) in (select * from unnest(%s::text[], %s::text[]))",
        (project_id, min(starts), max(starts), [s.trace_id for s in spans], [s.span_id for s in spans]),
    )
    return [s for s in spans if _span_key(s) not in found]


def _first_of_each(records: Iterator[Any], key: Callable[[Any], Any]) -> Iterator[Any]:
    """The records but those whose key (not None) an earlier record of the batch had: a retried event once."""
    seen: set[Any] = set()
    for record in records:
        k = key(record)
        if k is None:
            yield record
        elif k not in seen:
            seen.add(k)
            yield record


def _existing(cur: Cursor, sql: str, params: tuple[Any, ...]) -> set[tuple[Any, ...]]:
    """Dedup keys already stored (looked up only on a careful write); times as pg_time, like the batch's keys."""
    cur.execute(sql, params)
    return {tuple(pg_time_of(v) if v.__class__ is datetime else v for v in r.values()) for r in cur.fetchall()}


Rows = Encoded | Iterable[tuple[Any, ...]]  # a table's rows: built in C at once, or row tuples


def _log_copy_rows(
    org_id: UUID,
    project_id: UUID,
    logs: Iterator[LogRecord],
    retention: RowRetention,
    minutes: Counter[tuple[int, str | None, int, int]],
) -> Rows:
    """The logs' rows: built in C (``copy_rows``), every record converted first; else row tuples built as taken."""
    if not copy_rows.available():
        return _log_rows(org_id, project_id, logs, retention, minutes)
    records = list(logs)
    encoded = copy_rows.log_payload(records, org_id, project_id, retention, minutes)
    return encoded if encoded is not None else _log_rows(org_id, project_id, records, retention, minutes)


def _span_copy_rows(org_id: UUID, project_id: UUID, spans: Iterator[Span], keep_days: int) -> Rows:
    if not copy_rows.available():
        return _span_rows(org_id, project_id, spans, keep_days)
    records = list(spans)
    encoded = copy_rows.span_payload(records, org_id, project_id, keep_days)
    return encoded if encoded is not None else _span_rows(org_id, project_id, records, keep_days)


# Row builders: one tuple per row, columns in the order of the table's column list above (a new column is one
# more entry in each). Text goes through clean_text (no NUL in text columns).


def _metric_rows(
    org_id: UUID, project_id: UUID, points: dict[tuple[int, int], MetricPoint], keep_days: int
) -> list[tuple[Any, ...]]:
    org, project, jsonb = org_id.bytes, project_id.bytes, jsonb_binary
    return [
        (org, project, sid, time, pg_time(p.start_time_ns) if p.start_time_ns else None, p.value, p.count, p.sum,
         p.min, p.max, jsonb(p.distribution), jsonb(p.exemplars), p.flags, clean_text(p.event_id), keep_days)
        for (sid, time), p in points.items()
    ]  # fmt: skip


def _log_rows(
    org_id: UUID,
    project_id: UUID,
    logs: Iterable[LogRecord],
    retention: RowRetention,
    minutes: Counter[tuple[int, str | None, int, int]],
) -> Iterator[tuple[Any, ...]]:
    """The logs' rows; counts each row's (minute, service, severity, retention) in ``minutes`` (log volume)."""
    org, project, jsonb, shared, keep_days = (
        org_id.bytes,
        project_id.bytes,
        jsonb_binary,
        SharedJsonb(),
        retention.for_log,
    )
    for r in logs:
        time, service, severity = pg_time(r.time_ns), clean_text(r.service), r.severity_number
        keep = keep_days(severity)
        minutes[(time // _MINUTE_US, service, severity, keep)] += 1
        yield (org, project, time, pg_time(r.observed_time_ns) if r.observed_time_ns else None, severity,
               clean_text(r.severity_text), service, clean_text(r.body), jsonb(r.attributes), shared(r.resource),
               shared(r.scope), r.trace_id, r.span_id, r.flags, clean_text(r.event_id), clean_text(r.event_name),
               keep)  # fmt: skip


def _span_rows(org_id: UUID, project_id: UUID, spans: Iterable[Span], keep_days: int) -> Iterator[tuple[Any, ...]]:
    org, project, jsonb, shared = org_id.bytes, project_id.bytes, jsonb_binary, SharedJsonb()
    for s in spans:
        yield (org, project, s.trace_id, s.span_id, s.parent_span_id, clean_text(s.name), s.kind,
               clean_text(s.service), pg_time(s.start_time_ns), pg_time(s.end_time_ns),
               s.end_time_ns - s.start_time_ns, s.status_code, clean_text(s.status_message), jsonb(s.attributes),
               shared(s.resource), shared(s.scope), jsonb(s.events), jsonb(s.links), clean_text(s.trace_state),
               s.flags, clean_text(s.event_id), keep_days)  # fmt: skip
