"""A transaction in one query string (``copy_transaction``: BEGIN, a binary COPY, the last statements, COMMIT), and
the OTLP fast path that writes a request with it: all or nothing, the errors ``transaction`` raises, the rows, the
usage and the log volume of the two-step write.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import psycopg
import pytest
from observai.db.connection import copy_transaction, get_connection, transaction
from observai.errors import RateLimited, Unavailable
from observai.telemetry import usage
from observai.telemetry.limits import now_ns
from observai.telemetry.model import Batch, Signal
from observai.telemetry.otlp import decode_otlp, wire
from observai.telemetry.writer import store_batch
from psycopg import sql
from psycopg.pq import TransactionStatus

from tests.helpers import otlp_payloads as payloads
from tests.helpers.ingest import counts, make_project, rows

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch(db: Any) -> str:
    """Two tables of this test's own: ``<name>`` (a unique key) and ``<name>_after`` (a check constraint), in a schema
    of the tests' own (public's tables all have row-level security, and a test checks it)."""
    name = f"copy_tx_{uuid.uuid4().hex[:10]}"
    with contextlib.suppress(psycopg.errors.UniqueViolation):  # another worker created it at the same moment
        db.execute("create schema if not exists copy_tx")
    db.execute(f"create table copy_tx.{name} (k int primary key, v text)")
    db.execute(f"create table copy_tx.{name}_after (n int check (n > 0))")
    return name


def text_rows(*pairs: tuple[int, str]) -> bytes:
    """COPY's text format (the helper takes any COPY FROM STDIN; the writer sends the binary format)."""
    return "".join(f"{k}\t{v}\n" for k, v in pairs).encode()


def after(table: str, n: int) -> list[sql.Composable]:
    return [sql.SQL("insert into copy_tx.{} (n) values ({})").format(sql.Identifier(f"{table}_after"), sql.Literal(n))]


def contents(db: Any, table: str) -> tuple[list[Any], list[Any]]:
    copied = [(r["k"], r["v"]) for r in db.execute(f"select k, v from copy_tx.{table} order by k").fetchall()]
    appended = [r["n"] for r in db.execute(f"select n from copy_tx.{table}_after order by n").fetchall()]
    return copied, appended


def test_the_copy_and_the_last_statements_commit_together(db: Any, scratch: str) -> None:
    # When rows are copied with a statement after them, in one query string
    copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", text_rows((1, "a"), (2, "b")), after(scratch, 7))
    # Then both are committed, and the connection is out of any transaction
    assert contents(db, scratch) == ([(1, "a"), (2, "b")], [7])
    assert get_connection().info.transaction_status is TransactionStatus.IDLE


def test_a_large_payload_goes_in_pieces(db: Any, scratch: str) -> None:
    # Given more data than one piece (COPY_CHUNK)
    pairs = [(i, "x" * 100) for i in range(5_000)]
    # When it is copied
    copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", text_rows(*pairs), [])
    # Then every row arrived
    assert db.execute(f"select count(*) as n from copy_tx.{scratch}").fetchone()["n"] == 5_000
    # ...and sent again, refused at its first row, the rest of the data is dropped by the server: the error is
    # raised, nothing more stored, and the connection usable
    with pytest.raises(psycopg.errors.UniqueViolation):
        copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", text_rows(*pairs), after(scratch, 1))
    assert contents(db, scratch)[1] == []
    with transaction() as cur:
        cur.execute(f"select count(*) as n from copy_tx.{scratch}")
        assert cur.fetchone()["n"] == 5_000


def test_a_duplicate_in_the_copy_rolls_everything_back(db: Any, scratch: str) -> None:
    # Given a stored key
    copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", text_rows((1, "a")), after(scratch, 1))
    # When a COPY carries it again, with a new key and a statement after it
    with pytest.raises(psycopg.errors.UniqueViolation):
        copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", text_rows((2, "b"), (1, "c")), after(scratch, 2))
    # Then nothing of that transaction is stored, and the connection is usable (rolled back, not left aborted)
    assert contents(db, scratch) == ([(1, "a")], [1])
    assert get_connection().info.transaction_status is TransactionStatus.IDLE
    with transaction() as cur:
        cur.execute("select 1 as one")
        assert cur.fetchone()["one"] == 1


def test_a_failing_statement_after_the_copy_rolls_the_copy_back(db: Any, scratch: str) -> None:
    # When the statement after the COPY fails (a check constraint)
    with pytest.raises(psycopg.errors.CheckViolation):
        copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", text_rows((1, "a")), after(scratch, -1))
    # Then the copied rows are not stored either
    assert contents(db, scratch) == ([], [])
    assert get_connection().info.transaction_status is TransactionStatus.IDLE


def test_bad_copy_data_is_raised_and_nothing_stored(db: Any, scratch: str) -> None:
    # When the data does not parse
    with pytest.raises(psycopg.errors.DataError):
        copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", b"not-a-number\tx\n", after(scratch, 1))
    # Then nothing is stored
    assert contents(db, scratch) == ([], [])


def test_a_statement_timeout_is_unavailable_and_rolls_back(
    monkeypatch: pytest.MonkeyPatch, db: Any, scratch: str
) -> None:
    # Given a 200 ms statement timeout
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "200")
    # When a statement of the transaction runs longer
    slow = [sql.SQL("select pg_sleep(2)"), *after(scratch, 1)]
    with pytest.raises(Unavailable):
        copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", text_rows((1, "a")), slow)
    # Then it is a 503 (Unavailable) and nothing is stored
    assert contents(db, scratch) == ([], [])


def test_a_connection_the_server_dropped_is_reopened(database_url: str, db: Any, scratch: str) -> None:
    # Given the container's connection, terminated by the server (pooler restart, idle cut)
    first = get_connection()
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", (first.info.backend_pid,))
    # When a transaction is written in one query string
    copy_transaction(f"copy copy_tx.{scratch} (k, v) from stdin", text_rows((1, "a")), after(scratch, 1))
    # Then it was sent again on a new connection, once
    assert contents(db, scratch) == ([(1, "a")], [1])
    assert get_connection() is not first


def test_a_query_without_a_copy_is_refused(db: Any, scratch: str) -> None:
    with pytest.raises(psycopg.ProgrammingError):
        copy_transaction(f"select count(*) from copy_tx.{scratch}", b"", [])
    assert get_connection().info.transaction_status is TransactionStatus.IDLE


# --- the OTLP fast path -----------------------------------------------------------------------------------------


needs_wire = pytest.mark.skipif(not wire.available(), reason="the C extension is not built (make install)")


def store(project: Any, signal: Signal, body: bytes, **kwargs: Any) -> Batch:
    batch = decode_otlp(signal, body, encoding="protobuf", now_ns=now_ns(), lazy=True)
    store_batch(
        project.org_id, project.project_id, batch, idempotency_key=None, request_hash="", response={},
        body_bytes=len(body), **kwargs,
    )  # fmt: skip
    return batch


def usage_increments(database_url: str, project: Any) -> list[tuple[str, int, int]]:
    found = rows(
        database_url,
        "select signal, events, bytes from public.usage_increments where project_id = %s order by signal",
        (project.project_id,),
    )
    return [(r["signal"], r["events"], r["bytes"]) for r in found]


@needs_wire
def test_a_wired_logs_request_writes_its_rows_usage_and_volume_once(database_url: str) -> None:
    # Given a logs request every record of which the fast path takes
    project = make_project(label="OneTrip")
    body = payloads.to_protobuf(payloads.many_logs_request(120, time.time_ns()))
    # When it is stored
    batch = store(project, Signal.LOGS, body)
    # Then it went the fast way (no record made), its rows are stored, its usage charged once (every event, the
    # body's bytes), and the log volume counts every line
    assert batch.wired == {Signal.LOGS: 120} and not batch.logs
    assert counts(database_url, project.project_id)["logs"] == 120
    assert usage_increments(database_url, project) == [("logs", 120, len(body))]
    volume = rows(
        database_url, "select sum(count)::int as n from public.log_volume where project_id = %s", (project.project_id,)
    )
    assert volume[0]["n"] == 120


@needs_wire
def test_a_wired_request_over_the_quota_writes_nothing(database_url: str, db: Any) -> None:
    # Given an organization at its daily event quota
    project = make_project(label="OneTripQuota")
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes)"
        " values (%s, (now() at time zone 'UTC')::date, 'traces', 1000000, 0)",
        (project.org_id,),
    )
    usage.reset_caches()
    body = payloads.to_protobuf(payloads.many_spans_request(50, time.time_ns()))
    batch = decode_otlp(Signal.TRACES, body, encoding="protobuf", now_ns=now_ns(), lazy=True)
    # When a request the fast path takes is stored
    with pytest.raises(RateLimited):
        store_batch(
            project.org_id, project.project_id, batch, idempotency_key=None, request_hash="", response={},
            body_bytes=len(body), admit=lambda: usage.check_quota(project.org_id, batch.accepted, len(body)),
        )  # fmt: skip
    # Then nothing is stored, nothing charged, and the batch's records are still there to convert (the spool's)
    assert counts(database_url, project.project_id)["spans"] == 0
    assert usage_increments(database_url, project) == []
    assert not batch.wired and batch.complete().count(Signal.TRACES) == 50


@needs_wire
def test_a_resent_wired_request_is_written_once(database_url: str) -> None:
    # Given a stored traces request
    project = make_project(label="OneTripAgain")
    body = payloads.to_protobuf(payloads.many_spans_request(40, time.time_ns()))
    store(project, Signal.TRACES, body)
    # When it is sent again (the COPY meets the stored keys: the careful write follows)
    again = store(project, Signal.TRACES, body)
    # Then its spans are stored once, charged once, and the second batch was converted record by record
    assert counts(database_url, project.project_id)["spans"] == 40
    assert usage_increments(database_url, project) == [("traces", 40, len(body))]
    assert not again.wired and len(again.spans) == 40


@needs_wire
@pytest.mark.parametrize("signal", [Signal.LOGS, Signal.TRACES, Signal.METRICS])
def test_an_empty_request_stores_and_charges_nothing(database_url: str, signal: Signal) -> None:
    # Given a request with no item (an exporter's empty flush)
    project = make_project(label="OneTripEmpty")
    empty = {
        Signal.LOGS: payloads.many_logs_request(0, time.time_ns()),
        Signal.TRACES: payloads.many_spans_request(0, time.time_ns()),
        Signal.METRICS: payloads.many_points_request(0, time.time_ns()),
    }[signal]
    # When it is stored
    batch = store(project, signal, payloads.to_protobuf(empty))
    # Then nothing is written, nor charged
    assert batch.accepted == 0
    assert not any(counts(database_url, project.project_id).values())
    assert usage_increments(database_url, project) == []
