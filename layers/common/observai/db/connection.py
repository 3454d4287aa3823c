"""One psycopg 3 connection per Lambda container, reused across invocations, re-opened when broken.

Safe behind Supabase's transaction pooler (Supavisor, port 6543): no server-side prepared
statements (``prepare_threshold=None``) and no session state: timeouts, role and JWT claims are
set with ``set_config(..., true)``, local to each transaction.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

import psycopg
from psycopg import generators, pq, sql
from psycopg.abc import PQGen
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_dumps
from psycopg.waiting import Wait

from observai.config import Settings, get_settings
from observai.db.jsonb import jsonb_dumps
from observai.errors import Unavailable

Cursor = psycopg.Cursor[DictRow]

_connection: psycopg.Connection[DictRow] | None = None
_connection_url: str | None = None


def _connect(settings: Settings) -> psycopg.Connection[DictRow]:
    if settings.database_url is None:
        raise Unavailable("database is not configured", retry_after_s=30)
    try:
        conn = psycopg.connect(
            settings.database_url.get_secret_value(),
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=settings.db_connect_timeout_s,
            row_factory=dict_row,
            application_name=f"{settings.service_name}-{settings.stage}",
        )
    except psycopg.OperationalError as exc:
        # Not logged here: whoever handles the Unavailable logs it once, in its terms (a 503, a spooled batch, a
        # requeued one, a skipped scheduled run).
        raise Unavailable("database unavailable", retry_after_s=5) from exc
    set_json_dumps(jsonb_dumps, conn)
    return conn


# ``own_connection``: the connection of the current context (a thread of its own), when one is set.
_own: ContextVar[list[psycopg.Connection[DictRow] | None] | None] = ContextVar("own_connection", default=None)


@contextmanager
def own_connection(kept: str | None = None) -> Iterator[None]:
    """Within it, the current context's transactions use a connection of their own (opened on first use, closed at
    the end) instead of the container's: how a second thread works beside the main one (detect-anomalies writes one
    detector while it scores the next; aggregate-metrics rolls groups up beside the per-series runs).

    ``kept``: the connection stays open at the end, for the next context of that name in this container (a
    scheduled job's second thread, invocation after invocation: no new handshake a minute). One context of a name
    at a time."""
    holder: list[psycopg.Connection[DictRow] | None] = _kept_holder(kept) if kept else [None]
    token = _own.set(holder)
    try:
        yield
    finally:
        _own.reset(token)
        if holder[0] is not None and (kept is None or holder[0].info.transaction_status is not TransactionStatus.IDLE):
            holder[0].close()
            holder[0] = None


# ``own_connection(kept=...)``'s connections, by name, with the database URL each was opened for.
_kept: dict[str, tuple[str | None, list[psycopg.Connection[DictRow] | None]]] = {}


def _kept_holder(name: str) -> list[psycopg.Connection[DictRow] | None]:
    settings = get_settings()
    url = settings.database_url.get_secret_value() if settings.database_url else None
    found = _kept.get(name)
    if found is not None and found[0] == url:
        return found[1]
    if found is not None and found[1][0] is not None:
        found[1][0].close()  # re-pointed since
    holder: list[psycopg.Connection[DictRow] | None] = [None]
    _kept[name] = (url, holder)
    return holder


def get_connection(settings: Settings | None = None) -> psycopg.Connection[DictRow]:
    """The container's connection: opened on first use, re-opened when closed, broken or re-pointed (within
    ``own_connection``: that context's own)."""
    global _connection, _connection_url
    settings = settings or get_settings()
    holder = _own.get()
    if holder is not None:
        own = holder[0]
        if own is None or own.closed or own.broken:
            own = holder[0] = _connect(settings)
        return own
    url = settings.database_url.get_secret_value() if settings.database_url else None
    if _connection is not None and (_connection.closed or _connection.broken or url != _connection_url):
        close_connection()
    if _connection is None:
        _connection = _connect(settings)
        _connection_url = url
    return _connection


def close_connection() -> None:
    global _connection, _connection_url
    holder = _own.get()
    if holder is not None:  # within own_connection: that one
        if holder[0] is not None:
            try:
                holder[0].close()
            finally:
                holder[0] = None
        return
    if _connection is not None:
        try:
            _connection.close()
        finally:
            _connection = None
            _connection_url = None


def _begin_sql(settings: Settings, claims: Mapping[str, Any] | None) -> sql.Composed | bytes:
    """BEGIN and the transaction-local settings as one simple query: one round trip instead of two.

    Values are quoted client-side with sql.Literal (no user text is ever spliced in as SQL). Without claims the
    query depends on the two timeouts alone: built once per value (~12 µs a transaction otherwise).
    """
    if claims is None:
        return _service_begin_sql(settings.db_statement_timeout_ms, settings.db_idle_in_transaction_timeout_ms)
    return _begin_with(
        settings.db_statement_timeout_ms,
        settings.db_idle_in_transaction_timeout_ms,
        sql.SQL("set_config('role', 'authenticated', true)"),
        sql.SQL("set_config('request.jwt.claims', {}, true)").format(
            sql.Literal(json.dumps(dict(claims), default=str))
        ),
    )


@functools.lru_cache(maxsize=8)
def _service_begin_sql(statement_timeout_ms: int, idle_in_transaction_timeout_ms: int) -> bytes:
    return _begin_with(statement_timeout_ms, idle_in_transaction_timeout_ms).as_bytes(None)


def _begin_with(statement_timeout_ms: int, idle_in_transaction_timeout_ms: int, *more: sql.Composable) -> sql.Composed:
    settings_sql: list[sql.Composable] = [
        sql.SQL("set_config('statement_timeout', {}, true)").format(sql.Literal(str(statement_timeout_ms))),
        sql.SQL("set_config('idle_in_transaction_session_timeout', {}, true)").format(
            sql.Literal(str(idle_in_transaction_timeout_ms))
        ),
        *more,
    ]
    return sql.SQL("BEGIN; SELECT {}").format(sql.SQL(", ").join(settings_sql))


class _CommitFailed(Exception):
    """Raised by ``committing`` when the transaction ended with its pipeline: the COMMIT failed (or its outcome is
    unknown), not one of the statements before it. Carries the error as ``__cause__``."""


@contextmanager
def _transaction(claims: Mapping[str, Any] | None) -> Iterator[Cursor]:
    settings = get_settings()
    begin = _begin_sql(settings, claims)
    for attempt in (1, 2):
        conn = get_connection(settings)
        try:
            conn.execute(begin)
        except psycopg.OperationalError as exc:
            # Nothing of ours ran yet: a stale connection (server restart, pooler idle cut) is safe to retry once.
            close_connection()
            if attempt == 2:
                raise Unavailable("database unavailable", retry_after_s=5) from exc
            continue
        except psycopg.Error:
            close_connection()  # BEGIN may have succeeded: never hand out a connection inside a failed transaction
            raise
        break
    cur = conn.cursor()
    callbacks: list[Callable[[], Any]] = []
    token = _after_commit.set(callbacks)
    try:
        yield cur
    except _CommitFailed as failed:
        _raise_commit_failure(failed.__cause__)
    except BaseException as exc:
        _roll_back_and_raise(conn, exc)
    else:
        if conn.info.transaction_status is not TransactionStatus.IDLE:  # IDLE: committed by ``committing``
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                _raise_commit_failure(exc)
        _run_after_commit(callbacks)
    finally:
        _after_commit.reset(token)
        cur.close()


# The callbacks the running transaction registered (``after_commit``); None outside a transaction.
_after_commit: ContextVar[list[Callable[[], Any]] | None] = ContextVar("after_commit", default=None)


def after_commit(callback: Callable[[], Any]) -> None:
    """Run ``callback`` once the running transaction has committed, never if it rolls back: how a change sends what
    must only leave after it is durable (SQS wake-ups, timers). A failing callback is logged, not raised: the
    change is committed, and whatever the callback sends has a sweep behind it."""
    callbacks = _after_commit.get()
    if callbacks is None:
        raise RuntimeError("after_commit outside a transaction")
    callbacks.append(callback)


def _run_after_commit(callbacks: list[Callable[[], Any]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:
            from observai.observability import logger

            logger.warning("after-commit callback failed", extra={"error": exc.__class__.__name__})


def _raise_commit_failure(exc: BaseException | None) -> NoReturn:
    if isinstance(exc, psycopg.OperationalError):
        close_connection()
        raise Unavailable("database unavailable during commit", retry_after_s=5) from exc
    assert exc is not None
    raise exc from None  # as it was raised (a non-operational COMMIT error, e.g. a deferred constraint)


@contextmanager
def committing(cur: Cursor) -> Iterator[list[sql.Composable]]:
    """End the transaction of ``cur`` (a ``transaction``'s): the statements the block appends to the list it gets,
    then COMMIT, go as one query string (the simple query protocol: one round trip, one message, no pipeline).

    Only for a transaction's last statements, whose results are not read; their values are quoted client-side
    (``sql.Literal``). Errors keep the transaction's semantics: a failing statement is raised at the end of the
    block and the transaction rolls back (the server skips the rest of the string, COMMIT included); an error in
    the block itself sends nothing; a failing COMMIT is raised as a COMMIT outside the block would be.
    """
    statements: list[sql.Composable] = []
    yield statements
    try:
        cur.execute(sql.SQL("; ").join([*statements, sql.SQL("COMMIT")]))
    except Exception as exc:
        # Still in the transaction (INTRANS, INERROR): a statement failed, not the COMMIT.
        if cur.connection.info.transaction_status in (TransactionStatus.IDLE, TransactionStatus.UNKNOWN):
            raise _CommitFailed from exc
        raise


def _roll_back_and_raise(
    conn: psycopg.Connection[DictRow], exc: BaseException, *, unless_idle: bool = False
) -> NoReturn:
    """Roll the transaction back (``unless_idle``: only when one is open), then raise ``exc`` in our terms: a
    statement timeout as Unavailable (retry soon), a lost connection as Unavailable (closed, re-opened next time)."""
    if not (unless_idle and conn.info.transaction_status is TransactionStatus.IDLE):
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            close_connection()
    if isinstance(exc, psycopg.errors.QueryCanceled):
        raise Unavailable("database statement timed out", retry_after_s=2) from exc
    if isinstance(exc, psycopg.OperationalError):
        close_connection()
        raise Unavailable("database unavailable", retry_after_s=5) from exc
    raise exc


# A COPY's data goes in pieces of at most this size (libpq copies each piece into its output buffer).
COPY_CHUNK = 128 * 1024


def copy_transaction(copy: str, payload: bytes, after: list[sql.Composable]) -> None:
    """A whole transaction as one query string: BEGIN and its settings, ``copy`` (a ``COPY ... FROM STDIN``)
    fed ``payload`` (its binary data, complete), the ``after`` statements (results not read, values quoted in),
    COMMIT. Postgres runs a simple query's statements in order and reads the COPY's data in the middle: the
    client waits twice (for the COPY to start, then for the COMMIT), where ``transaction`` waits four times
    (BEGIN, COPY start, COPY end, the last statements with COMMIT).

    Errors keep ``transaction``'s semantics: a statement that fails (a duplicate key in the COPY, a timeout)
    stops the string, the transaction rolls back and the error is raised (QueryCanceled as Unavailable); a stale
    connection is re-opened and the query sent again while nothing has run (no COPY started); a connection lost
    later, or a failing COMMIT, is raised as ``transaction`` raises it (Unavailable: the outcome is unknown).
    """
    settings = get_settings()
    begin = _service_begin_sql(settings.db_statement_timeout_ms, settings.db_idle_in_transaction_timeout_ms)
    query = b"; ".join([begin, copy.encode(), *(s.as_bytes(None) for s in after), b"COMMIT"])
    early: psycopg.Error | None = None
    for attempt in (1, 2):
        conn = get_connection(settings)
        try:
            with conn.lock:
                started = conn.wait(_start_copy(conn.pgconn, query))
            if started is not None:  # a statement before the COPY failed (a dropped connection's FATAL among them)
                raise psycopg.errors.error_from_result(started, encoding=conn.info.encoding)
        except psycopg.OperationalError as exc:
            close_connection()  # nothing ran (no COPY started): safe to send again on a new connection
            if attempt == 2:
                raise Unavailable("database unavailable", retry_after_s=5) from exc
            continue
        except psycopg.Error as exc:
            early = exc
        break
    try:
        if early is not None:
            raise early
        with conn.lock:
            failed = conn.wait(_finish_copy(conn.pgconn, payload))
        if failed is not None:
            error = psycopg.errors.error_from_result(failed, encoding=conn.info.encoding)
            if conn.info.transaction_status in (TransactionStatus.IDLE, TransactionStatus.UNKNOWN):
                raise _CommitFailed from error
            raise error
    except _CommitFailed as failed_commit:
        _raise_commit_failure(failed_commit.__cause__)
    except BaseException as exc:
        _roll_back_and_raise(conn, exc, unless_idle=True)


def _start_copy(pgconn: Any, query: bytes) -> PQGen[Any]:
    """Send ``query`` and read its results up to the COPY's start: None, or the result of the statement that
    failed before it."""
    pgconn.send_query(query)
    for result in (yield from generators.execute(pgconn)):
        if result.status == pq.ExecStatus.COPY_IN:
            return None
        if result.status == pq.ExecStatus.FATAL_ERROR:
            # The server skips the rest of the string: read up to its end (the connection ready again).
            while (yield from generators.fetch(pgconn)) is not None:
                pass
            return result
    raise psycopg.ProgrammingError("copy_transaction: the query has no COPY FROM STDIN")


def _finish_copy(pgconn: Any, payload: bytes) -> PQGen[Any]:
    """Send the COPY's data and its end, then read the results of the rest of the string: None, or the result of
    the statement that failed."""
    view = memoryview(payload)
    for start in range(0, len(view), COPY_CHUNK):
        yield from generators.copy_to(pgconn, view[start : start + COPY_CHUNK], flush=False)
    while pgconn.put_copy_end(None) == 0:
        while not (yield Wait.W):
            continue
    while pgconn.flush() != 0:
        while not (yield Wait.W):
            continue
    failed = None
    while (result := (yield from generators.fetch(pgconn))) is not None:
        if result.status == pq.ExecStatus.FATAL_ERROR and failed is None:
            failed = result
    return failed


def execute_autocommit(query: str, params: Mapping[str, Any] | tuple[Any, ...]) -> list[DictRow]:
    """Run one atomic statement outside a transaction block: one round trip, no BEGIN/COMMIT.

    For idempotent or harmless-to-repeat statements only (a rate-limit upsert, a last-used stamp):
    a stale connection is re-opened and the statement retried once.
    """
    settings = get_settings()
    for attempt in (1, 2):
        conn = get_connection(settings)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []
        except psycopg.OperationalError as exc:
            close_connection()
            if attempt == 2:
                raise Unavailable("database unavailable", retry_after_s=5) from exc
    raise AssertionError("unreachable")


@contextmanager
def transaction() -> Iterator[Cursor]:
    """A transaction as the connecting role (service role: RLS bypassed). For jobs and checked writes."""
    with _transaction(None) as cur:
        yield cur


@contextmanager
def tenant_transaction(claims: Mapping[str, Any]) -> Iterator[Cursor]:
    """A transaction as role ``authenticated`` with the caller's JWT claims, as PostgREST does: RLS applies."""
    with _transaction(claims) as cur:
        yield cur
