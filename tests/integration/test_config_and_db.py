"""Settings from Secrets Manager (through moto) and the per-container connection's resilience."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import boto3
import psycopg
import pytest
from moto import mock_aws
from observai.config import get_settings
from observai.db import close_connection, get_connection, tenant_transaction, transaction
from observai.db.connection import committing
from observai.errors import Unavailable
from psycopg import sql

from tests.helpers.inprocess import invoke
from tests.helpers.users import make_user


@pytest.fixture
def secret_arn(monkeypatch: pytest.MonkeyPatch):
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(
            Name="observai/test",
            SecretString=json.dumps({"database_url": "postgresql://from-secret/db", "supabase_jwt_secret": "s" * 40}),
        )["ARN"]
        monkeypatch.setenv("APP_SECRET_ARN", arn)
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.delenv("SUPABASE_JWT_SECRET", raising=False)
        yield client, arn


def test_secrets_come_from_secrets_manager_and_are_cached(secret_arn) -> None:
    # Given a deployed function whose settings name one JSON secret
    client, arn = secret_arn
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    # When settings are read
    settings = get_settings()
    # Then the secret's values fill the settings
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://from-secret/db"
    assert settings.jwt_secret == "s" * 40
    # And the secret is fetched once per container: a change is not seen until the cache expires
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"database_url": "postgresql://changed/db"}))
    assert get_settings().database_url.get_secret_value() == "postgresql://from-secret/db"
    parameters.clear_caches()
    assert get_settings().database_url.get_secret_value() == "postgresql://changed/db"


def test_environment_wins_over_the_secret(secret_arn, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given both an environment variable and the secret
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/db")
    # Then the environment variable is used (local development, tests)
    assert get_settings().database_url.get_secret_value() == "postgresql://from-env/db"


def test_prod_has_no_default_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.delenv("SUPABASE_JWT_SECRET", raising=False)
    assert get_settings().jwt_secret is None
    monkeypatch.setenv("STAGE", "local")
    assert get_settings().jwt_secret is not None


def test_connection_is_reused_and_reopened_when_the_server_drops_it(database_url: str) -> None:
    # Given the container's connection
    first = get_connection()
    assert get_connection() is first
    # When the server terminates it (pooler restart, idle cut)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", (first.info.backend_pid,))
    # Then the next transaction transparently reconnects
    with transaction() as cur:
        cur.execute("select 1 as one")
        assert cur.fetchone()["one"] == 1
    assert get_connection() is not first


def test_no_server_side_prepared_statements(database_url: str) -> None:
    # Given the transaction pooler forbids named prepared statements, when we run the same query often
    for _ in range(10):
        with transaction() as cur:
            cur.execute("select %s::int as n", (1,))
    # Then none was prepared on the server
    with transaction() as cur:
        cur.execute("select count(*) as n from pg_prepared_statements")
        assert cur.fetchone()["n"] == 0


def test_statement_timeout_is_a_503(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    # Given a 200 ms statement timeout
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "200")
    # When a statement runs longer
    with pytest.raises(Unavailable) as raised, transaction() as cur:
        cur.execute("select pg_sleep(2)")
    # Then the caller gets a retryable Unavailable and the connection stays usable
    assert raised.value.retry_after_s >= 1
    with transaction() as cur:
        cur.execute("select 1 as one")
        assert cur.fetchone()["one"] == 1


def test_unreachable_database_is_a_503(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    # Given a database URL nobody listens on
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT_S", "1")
    close_connection()
    # Then opening a transaction is Unavailable, not a crash
    with pytest.raises(Unavailable), transaction():
        pass
    monkeypatch.setenv("DATABASE_URL", database_url)
    close_connection()


def test_a_request_refused_for_an_unreachable_database_logs_one_line(
    monkeypatch: pytest.MonkeyPatch, database_url: str, db: psycopg.Connection, captured_logs: io.StringIO
) -> None:
    # Given a user, and then the database unreachable
    user = make_user(db)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    close_connection()
    try:
        # When a request needs it
        result = invoke("orgs", "GET", "/v1/orgs", headers=user.headers)
    finally:
        monkeypatch.setenv("DATABASE_URL", database_url)
        close_connection()
    # Then it is a 503, logged once with its cause (the connection layer itself logs nothing: each caller says what
    # the outage meant for it, here the 503; the rate limiter that let the request through says so too)
    assert result.status == 503
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    refused = [line for line in lines if line["message"] == "service unavailable"]
    assert [(line["level"], line["cause"]) for line in refused] == [("WARNING", "OperationalError")]
    assert not [line for line in lines if "traceback" in json.dumps(line).lower() or "exception" in line]


def test_settings_are_local_to_each_transaction(database_url: str) -> None:
    # Given a tenant transaction ran with a role and claims
    with tenant_transaction({"sub": "00000000-0000-0000-0000-000000000001", "role": "authenticated"}) as cur:
        cur.execute("select current_user as role, current_setting('request.jwt.claims', true) as claims")
        row = cur.fetchone()
        assert row["role"] == "authenticated"
        assert "00000000-0000-0000-0000-000000000001" in row["claims"]
    # Then nothing of it leaks into the next transaction on the same (pooled) connection
    with transaction() as cur:
        cur.execute("select current_user as role, coalesce(current_setting('request.jwt.claims', true), '') as claims")
        row = cur.fetchone()
        assert row["role"] != "authenticated"
        assert row["claims"] == ""


@pytest.fixture
def pipelined_table(db: psycopg.Connection) -> Iterator[str]:
    """A scratch table whose rows are checked at COMMIT: k unique (deferred), and k = 40001 fails the commit
    with a serialization failure (a deferred constraint trigger), as a COMMIT can fail in production."""
    name = f"pipelined_{uuid.uuid4().hex[:8]}"
    db.execute(f"create table public.{name} (k int, constraint {name}_k unique (k) deferrable initially deferred)")
    db.execute(
        f"create function public.{name}_check() returns trigger language plpgsql as $$ begin"
        " if new.k = 40001 then raise exception 'could not serialize' using errcode = '40001'; end if;"
        " return null; end $$"
    )
    db.execute(
        f"create constraint trigger {name}_check after insert on public.{name} deferrable initially deferred"
        f" for each row execute function public.{name}_check()"
    )
    yield name
    db.execute(f"drop table public.{name}")
    db.execute(f"drop function public.{name}_check()")


def _keys(db: psycopg.Connection, table: str) -> list[int]:
    return [row["k"] for row in db.execute(f"select k from public.{table} order by k").fetchall()]


def _connection_works() -> None:
    with transaction() as cur:
        cur.execute("select 1 as one")
        assert cur.fetchone()["one"] == 1


def test_committing_stores_the_statements_with_the_commit(db: psycopg.Connection, pipelined_table: str) -> None:
    # Given a transaction whose last statements are pipelined with its COMMIT
    with transaction() as cur:
        cur.execute(f"insert into public.{pipelined_table} (k) values (1)")
        with committing(cur) as last:
            last.append(sql.SQL(f"insert into public.{pipelined_table} (k) values (2)"))
            last.append(sql.SQL(f"insert into public.{pipelined_table} (k) values (3)"))
        # Then the transaction is over at the end of the block
        assert cur.connection.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    # And everything is committed
    assert _keys(db, pipelined_table) == [1, 2, 3]
    _connection_works()


def test_a_failing_pipelined_statement_rolls_the_transaction_back(db: psycopg.Connection, pipelined_table: str) -> None:
    # When a statement in the committing pipeline fails
    with pytest.raises(psycopg.errors.DivisionByZero), transaction() as cur:
        cur.execute(f"insert into public.{pipelined_table} (k) values (1)")
        with committing(cur) as last:
            last.append(sql.SQL(f"insert into public.{pipelined_table} (k) values (2)"))
            last.append(sql.SQL("select 1 / 0"))
            last.append(sql.SQL(f"insert into public.{pipelined_table} (k) values (3)"))
    # Then nothing of the transaction is stored and the connection is usable
    assert _keys(db, pipelined_table) == []
    _connection_works()


def test_a_pipelined_statement_timeout_is_a_503(
    monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection, pipelined_table: str
) -> None:
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "200")
    with pytest.raises(Unavailable) as raised, transaction() as cur:
        cur.execute(f"insert into public.{pipelined_table} (k) values (1)")
        with committing(cur) as last:
            last.append(sql.SQL("select pg_sleep(2)"))
    assert raised.value.message == "database statement timed out"
    assert _keys(db, pipelined_table) == []
    _connection_works()


def test_a_failing_pipelined_commit_raises_as_a_commit_does(db: psycopg.Connection, pipelined_table: str) -> None:
    # When the COMMIT itself fails (a deferred unique constraint)
    with pytest.raises(psycopg.errors.UniqueViolation), transaction() as cur:
        cur.execute(f"insert into public.{pipelined_table} (k) values (1)")
        with committing(cur) as last:
            last.append(sql.SQL(f"insert into public.{pipelined_table} (k) values (1)"))
    # Then the error is the commit's, nothing is stored, and the connection is usable
    assert _keys(db, pipelined_table) == []
    _connection_works()


def test_an_operational_commit_failure_is_a_503(db: psycopg.Connection, pipelined_table: str) -> None:
    # When the COMMIT fails with an operational error (a serialization failure)
    with pytest.raises(Unavailable) as raised, transaction() as cur, committing(cur) as last:
        last.append(sql.SQL(f"insert into public.{pipelined_table} (k) values (40001)"))
    # Then the caller gets a retryable Unavailable, as for a COMMIT outside a pipeline
    assert raised.value.message == "database unavailable during commit"
    assert isinstance(raised.value.__cause__, psycopg.errors.SerializationFailure)
    assert _keys(db, pipelined_table) == []
    _connection_works()
    # And a plain COMMIT failing the same way is the same 503
    with pytest.raises(Unavailable) as plain, transaction() as cur:
        cur.execute(f"insert into public.{pipelined_table} (k) values (40001)")
    assert plain.value.message == "database unavailable during commit"


def test_an_error_in_the_committing_block_rolls_back(db: psycopg.Connection, pipelined_table: str) -> None:
    # When our own code fails inside the block, after queueing a statement
    with pytest.raises(ValueError), transaction() as cur, committing(cur) as last:
        last.append(sql.SQL(f"insert into public.{pipelined_table} (k) values (1)"))
        raise ValueError("usage cannot be negative")
    # Then the transaction rolls back: the COMMIT was never sent
    assert _keys(db, pipelined_table) == []
    _connection_works()


def test_after_commit_runs_once_the_transaction_committed_and_never_after_a_rollback() -> None:
    # Given a transaction that registers a callback, and one that registers one then fails
    from observai.db.connection import after_commit

    ran: list[str] = []
    with transaction() as cur:
        after_commit(lambda: ran.append("committed"))
        cur.execute("select 1")
        # Then nothing runs before the commit
        assert ran == []
    with pytest.raises(RuntimeError), transaction() as cur:
        after_commit(lambda: ran.append("rolled back"))
        raise RuntimeError("the change fails")
    # Then only the committed transaction's callback ran
    assert ran == ["committed"]


def test_after_commit_callbacks_run_after_a_committing_block_and_a_failing_one_is_only_logged() -> None:
    # Given a transaction ended by ``committing`` whose first callback fails
    from observai.db.connection import after_commit

    ran: list[str] = []

    def fails() -> None:
        raise ValueError("the queue is down")

    with transaction() as cur:
        after_commit(fails)
        after_commit(lambda: ran.append("second"))
        with committing(cur) as statements:
            statements.append(sql.SQL("select 1"))
    # Then the change stands and the next callback still ran
    assert ran == ["second"]


def test_after_commit_outside_a_transaction_is_a_programming_error() -> None:
    from observai.db.connection import after_commit

    with pytest.raises(RuntimeError, match="outside a transaction"):
        after_commit(lambda: None)
