"""One psycopg 3 connection per Lambda container, reused across invocations, re-opened when broken.

Safe behind Supabase's transaction pooler (Supavisor, port 6543): no server-side prepared
statements (``prepare_threshold=None``) and no session state: timeouts, role and JWT claims are
set with ``set_config(..., true)``, local to each transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row

from observai.config import Settings, get_settings
from observai.errors import Unavailable
from observai.observability import logger

Cursor = psycopg.Cursor[DictRow]

_connection: psycopg.Connection[DictRow] | None = None
_connection_url: str | None = None


def _connect(settings: Settings) -> psycopg.Connection[DictRow]:
    if settings.database_url is None:
        raise Unavailable("database is not configured", retry_after_s=30)
    try:
        return psycopg.connect(
            settings.database_url.get_secret_value(),
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=settings.db_connect_timeout_s,
            row_factory=dict_row,
            application_name=f"{settings.service_name}-{settings.stage}",
        )
    except psycopg.OperationalError as exc:
        logger.warning("database connection failed", extra={"error": exc.__class__.__name__})
        raise Unavailable("database unavailable", retry_after_s=5) from exc


def get_connection(settings: Settings | None = None) -> psycopg.Connection[DictRow]:
    """The container's connection: opened on first use, re-opened when closed, broken or re-pointed."""
    global _connection, _connection_url
    settings = settings or get_settings()
    url = settings.database_url.get_secret_value() if settings.database_url else None
    if _connection is not None and (_connection.closed or _connection.broken or url != _connection_url):
        close_connection()
    if _connection is None:
        _connection = _connect(settings)
        _connection_url = url
    return _connection


def close_connection() -> None:
    global _connection, _connection_url
    if _connection is not None:
        try:
            _connection.close()
        finally:
            _connection = None
            _connection_url = None


_BEGIN_SQL = (
    "select set_config('statement_timeout', %(st)s, true),"
    " set_config('idle_in_transaction_session_timeout', %(it)s, true)"
)
_TENANT_SQL = (
    _BEGIN_SQL + ", set_config('role', 'authenticated', true), set_config('request.jwt.claims', %(claims)s, true)"
)


@contextmanager
def _transaction(setup_sql: str, params: Mapping[str, Any]) -> Iterator[Cursor]:
    settings = get_settings()
    params = {
        "st": str(settings.db_statement_timeout_ms),
        "it": str(settings.db_idle_in_transaction_timeout_ms),
        **params,
    }
    for attempt in (1, 2):
        conn = get_connection(settings)
        try:
            tx = conn.transaction()
            tx.__enter__()
            cur = conn.cursor()
            cur.execute(setup_sql, params)
        except psycopg.OperationalError as exc:
            # Nothing of ours ran yet: a stale connection (server restart, pooler idle cut) is safe to retry once.
            close_connection()
            if attempt == 2:
                raise Unavailable("database unavailable", retry_after_s=5) from exc
            continue
        break
    try:
        yield cur
    except BaseException as exc:
        try:
            tx.__exit__(type(exc), exc, exc.__traceback__)
        except psycopg.Error:
            close_connection()
        if isinstance(exc, psycopg.errors.QueryCanceled):
            raise Unavailable("database statement timed out", retry_after_s=2) from exc
        if isinstance(exc, psycopg.OperationalError):
            close_connection()
            raise Unavailable("database unavailable", retry_after_s=5) from exc
        raise
    else:
        try:
            tx.__exit__(None, None, None)
        except psycopg.OperationalError as exc:
            close_connection()
            raise Unavailable("database unavailable during commit", retry_after_s=5) from exc
    finally:
        cur.close()


@contextmanager
def transaction() -> Iterator[Cursor]:
    """A transaction as the connecting role (service role: RLS bypassed). For jobs and checked writes."""
    with _transaction(_BEGIN_SQL, {}) as cur:
        yield cur


@contextmanager
def tenant_transaction(claims: Mapping[str, Any]) -> Iterator[Cursor]:
    """A transaction as role ``authenticated`` with the caller's JWT claims, as PostgREST does: RLS applies."""
    with _transaction(_TENANT_SQL, {"claims": json.dumps(dict(claims), default=str)}) as cur:
        yield cur
