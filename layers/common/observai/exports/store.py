"""Data access of exports: the export rows (service writes, tenant reads) and the rows an export copies."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from observai.db.connection import Cursor, tenant_transaction
from observai.logs.query_language import LogFilter

# One advisory lock key per project serializes the concurrency check with the insert (a bigint from the id).
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.exports:' || %s::text, 0))"
COLUMNS = (
    "id, org_id, project_id, signal, from_time, to_time, query, filters, status, row_count, bytes, s3_key, error,"
    " attempts, lease_until, created_by, created_by_key_id, created_at, started_at, finished_at, expires_at"
)
FETCH_ROWS = 5000  # rows per FETCH of the server-side cursor
READ_STATEMENT_TIMEOUT_MS = 120_000  # one FETCH (the first may sort)
READ_IDLE_TIMEOUT_MS = 120_000  # between FETCHes the worker compresses


# --- the export rows -------------------------------------------------------------------------------------------


def lock_project(cur: Cursor, project_id: UUID) -> None:
    cur.execute(_LOCK_SQL, (project_id,))


def fail_abandoned(cur: Cursor, project_id: UUID, *, lost_after_s: int, never_started_after_s: int) -> int:
    """Mark failed the project's exports no worker will finish: a claim that expired long ago (the worker
    timed out or crashed on its last delivery) or a queued export never picked up."""
    cur.execute(
        "update public.exports set status = 'failed', finished_at = now(), lease_until = null,"
        " error = case when status = 'running'"
        "  then 'the export worker stopped before finishing (timed out or crashed); start a new export'"
        "  else 'the export was never picked up by a worker; start a new export' end"
        " where project_id = %(project)s and status in ('queued', 'running') and ("
        "  (status = 'running' and lease_until < now() - make_interval(secs => %(lost)s))"
        "  or (status = 'queued' and created_at < now() - make_interval(secs => %(never)s)))"
        f" returning {COLUMNS}",
        {"project": project_id, "lost": lost_after_s, "never": never_started_after_s},
    )
    finished = cur.fetchall()
    _completed(cur, finished)
    return len(finished)


def count_unfinished(cur: Cursor, project_id: UUID) -> int:
    cur.execute(
        "select count(*) as n from public.exports where project_id = %s and status in ('queued', 'running')",
        (project_id,),
    )
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def insert(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    signal: str,
    from_time: datetime,
    to_time: datetime,
    query: str,
    filters: dict[str, Any],
    created_by: UUID | None,
    created_by_key_id: UUID | None,
) -> dict[str, Any]:
    cur.execute(
        "insert into public.exports (org_id, project_id, signal, from_time, to_time, query, filters, created_by,"
        " created_by_key_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" returning {COLUMNS}",
        (org_id, project_id, signal, from_time, to_time, query, Jsonb(filters), created_by, created_by_key_id),
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def get(cur: Cursor, project_id: UUID, export_id: UUID) -> dict[str, Any] | None:
    cur.execute(f"select {COLUMNS} from public.exports where project_id = %s and id = %s", (project_id, export_id))
    row = cur.fetchone()
    return dict(row) if row else None


def get_by_id(cur: Cursor, export_id: UUID) -> dict[str, Any] | None:
    cur.execute(f"select {COLUMNS} from public.exports where id = %s", (export_id,))
    row = cur.fetchone()
    return dict(row) if row else None


def get_state(cur: Cursor, export_id: UUID) -> dict[str, Any] | None:
    """Status, attempts, last error, and whether a worker may claim it now (queued, or its claim expired)."""
    cur.execute(
        "select status, attempts, error, (status = 'queued' or lease_until is null or lease_until < now())"
        " as claimable from public.exports where id = %s",
        (export_id,),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def list_page(
    cur: Cursor, project_id: UUID, after_ts: datetime | None, after_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first; ``limit`` rows after the (created_at, id) position, when given."""
    cur.execute(
        f"select {COLUMNS} from public.exports where project_id = %(project)s"
        " and (%(after_ts)s::timestamptz is null or (created_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by created_at desc, id desc limit %(limit)s",
        {"project": project_id, "after_ts": after_ts, "after_id": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def set_failed(cur: Cursor, export_id: UUID, reason: str, *, attempt: int | None = None) -> bool:
    """Failed with ``reason``, unless finished already (or, with ``attempt``, claimed again since)."""
    cur.execute(
        "update public.exports set status = 'failed', error = left(%(reason)s, 2000), finished_at = now(),"
        " lease_until = null where id = %(id)s and status in ('queued', 'running')"
        " and (%(attempt)s::integer is null or attempts = %(attempt)s)"
        f" returning {COLUMNS}",
        {"id": export_id, "reason": reason, "attempt": attempt},
    )
    finished = cur.fetchall()
    _completed(cur, finished)
    return len(finished) == 1


def claim(cur: Cursor, export_id: UUID, *, lease_s: int, max_attempts: int) -> dict[str, Any] | None:
    """Take the export for one attempt: queued, or running under a claim that has expired. None when it cannot
    be taken now (gone, finished, claimed by a live worker, or out of attempts: the caller looks)."""
    cur.execute(
        "update public.exports set status = 'running', attempts = attempts + 1,"
        " lease_until = now() + make_interval(secs => %(lease)s), started_at = coalesce(started_at, now())"
        " where id = %(id)s and attempts < %(max)s"
        " and (status = 'queued' or (status = 'running' and lease_until < now()))"
        f" returning {COLUMNS}",
        {"id": export_id, "lease": lease_s, "max": max_attempts},
    )
    row = cur.fetchone()
    return dict(row) if row else None


def release(cur: Cursor, export_id: UUID, attempt: int, reason: str) -> None:
    """Back to queued after a failure worth retrying (the message's redelivery tries again)."""
    cur.execute(
        "update public.exports set status = 'queued', lease_until = null,"
        " error = left('attempt ' || %(attempt)s || ' failed: ' || %(reason)s, 2000)"
        " where id = %(id)s and status = 'running' and attempts = %(attempt)s",
        {"id": export_id, "attempt": attempt, "reason": reason},
    )


def set_succeeded(
    cur: Cursor, export_id: UUID, attempt: int, *, row_count: int, size: int, key: str, keep_days: int
) -> bool:
    cur.execute(
        "update public.exports set status = 'succeeded', row_count = %(rows)s, bytes = %(bytes)s, s3_key = %(key)s,"
        " error = null, lease_until = null, finished_at = now(), expires_at = now() + make_interval(days => %(keep)s)"
        " where id = %(id)s and status = 'running' and attempts = %(attempt)s"
        f" returning {COLUMNS}",
        {"id": export_id, "attempt": attempt, "rows": row_count, "bytes": size, "key": key, "keep": keep_days},
    )
    finished = cur.fetchall()
    _completed(cur, finished)
    return len(finished) == 1


def _completed(cur: Cursor, rows: list[Any]) -> None:
    """``export.completed`` for each export that just finished, in the transaction that finished it (the outbox:
    the webhooks deliver it; none for a change that rolls back)."""
    from observai import outbox

    outbox.emit_many(
        cur,
        [
            outbox.OutboxEvent(
                row["org_id"],
                row["project_id"],
                "export.completed",
                {
                    "export_id": str(row["id"]),
                    "project_id": str(row["project_id"]),
                    "signal": row["signal"],
                    "status": row["status"],
                    "format": "ndjson.gz",
                    "from": row["from_time"].isoformat(),
                    "to": row["to_time"].isoformat(),
                    "row_count": row["row_count"],
                    "bytes": row["bytes"],
                    "error": row["error"],
                    "finished_at": row["finished_at"].isoformat(),
                    "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
                },
                row["finished_at"],
            )
            for row in rows
        ],
    )


# --- the rows an export copies ---------------------------------------------------------------------------------

# One JSON object per row, rendered by Postgres (json_build_object keeps the key order): snake_case names,
# timestamps RFC 3339 in UTC with microseconds, attributes/resource/scope as JSON objects. Loadable as is
# by BigQuery (newline-delimited JSON; attributes as a JSON column) and Athena (the OpenX JSON SerDe).
_RFC3339 = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''


def _ts(column: str) -> str:
    return f"to_char({column} at time zone 'UTC', {_RFC3339})"


_LOG_LINE = (
    "json_build_object('id', id, 'project_id', project_id, 'time', " + _ts("time") + ","
    " 'observed_time', " + _ts("observed_time") + ", 'severity_number', severity_number,"
    " 'severity_text', severity_text, 'service', service, 'body', body, 'trace_id', trace_id, 'span_id', span_id,"
    " 'flags', flags, 'event_name', event_name, 'attributes', attributes, 'resource', resource, 'scope', scope)::text"
)
_SPAN_LINE = (
    "json_build_object('project_id', project_id, 'trace_id', trace_id, 'span_id', span_id,"
    " 'parent_span_id', parent_span_id, 'name', name, 'kind', kind, 'service', service,"
    " 'start_time', " + _ts("start_time") + ", 'end_time', " + _ts("end_time") + ", 'duration_ns', duration_ns,"
    " 'status_code', status_code, 'status_message', status_message, 'trace_state', trace_state, 'flags', flags,"
    " 'attributes', attributes, 'resource', resource, 'scope', scope, 'events', events, 'links', links)::text"
)


def log_lines_sql(log_filter: LogFilter) -> sql.Composed:
    """Logs of one project in [from, to), oldest first, at most ``limit``; the filter over unqualified columns."""
    return sql.SQL(
        "select " + _LOG_LINE + " from public.logs"
        " where project_id = %(x_project)s and time >= %(x_from)s and time < %(x_to)s and ({where})"
        " order by time, id limit %(x_limit)s"
    ).format(where=log_filter.where)


def span_lines_sql(filters: dict[str, Any]) -> sql.Composed:
    conditions: list[sql.Composable] = [sql.SQL("true")]
    for field, column in (("service", "service"), ("name", "name"), ("status", "status_code")):
        if filters.get(field) is not None:
            conditions.append(sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(f"x_{field}")))
    return sql.SQL(
        "select " + _SPAN_LINE + " from public.spans"
        " where project_id = %(x_project)s and start_time >= %(x_from)s and start_time < %(x_to)s and {where}"
        " order by start_time, trace_id, span_id limit %(x_limit)s"
    ).format(where=sql.SQL(" and ").join(conditions))


def stream_lines(
    project_id: UUID, query: sql.Composed, params: dict[str, Any], *, chunk: int = FETCH_ROWS
) -> Generator[list[str]]:
    """The query's lines in chunks, through a server-side (named) cursor: memory stays flat however many rows.

    Read as the project (an API-key-shaped JWT claim for just this project), so RLS confines even a wrong
    query to the project's own rows; one transaction, so the export is one consistent snapshot.
    """
    claims = {"role": "authenticated", "api_key": {"project_id": str(project_id), "scopes": ["read"]}}
    with tenant_transaction(claims) as cur:
        cur.execute(
            "select set_config('statement_timeout', %s, true), set_config('idle_in_transaction_session_timeout', %s,"
            " true)",
            (str(READ_STATEMENT_TIMEOUT_MS), str(READ_IDLE_TIMEOUT_MS)),
        )
        conn: psycopg.Connection[Any] = cur.connection
        with conn.cursor(name="observai_export", row_factory=tuple_row) as lines:
            lines.execute(query, params)
            while True:
                rows = lines.fetchmany(chunk)
                if not rows:
                    break
                yield [row[0] for row in rows]
