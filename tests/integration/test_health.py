"""Liveness needs nothing; readiness needs the database and migrations at head, else 503 with Retry-After."""

from __future__ import annotations

import pytest
from observai.db import close_connection
from observai.db.migrations import EXPECTED_HEAD

from tests.helpers.inprocess import invoke


def test_liveness_needs_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    close_connection()
    result = invoke("health", "GET", "/v1/health")
    assert result.status == 200
    assert result.data["status"] == "ok"
    close_connection()


def test_ready_when_migrations_at_head(database_url: str) -> None:
    result = invoke("health", "GET", "/v1/health/ready")
    assert result.status == 200, result.text
    assert result.data["migrations_applied"] == EXPECTED_HEAD


def test_not_ready_when_database_unreachable(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    # Given the database cannot be reached
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT_S", "1")
    close_connection()
    # Then readiness is a 503 in the envelope with Retry-After
    result = invoke("health", "GET", "/v1/health/ready")
    assert result.status == 503
    assert result.error["code"] == "unavailable"
    assert result.error["details"]["database"] == "unreachable"
    assert int(result.header("Retry-After")) > 0
    monkeypatch.setenv("DATABASE_URL", database_url)
    close_connection()


def test_not_ready_when_migrations_behind(monkeypatch: pytest.MonkeyPatch, db, database_url: str) -> None:
    # Given a database whose newest migration is older than the code expects
    import psycopg

    scratch = "observai_behind"
    db.execute(f"drop database if exists {scratch}")
    db.execute(f"create database {scratch}")
    url = psycopg.conninfo.make_conninfo(database_url, dbname=scratch)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create table public.schema_migrations (version text primary key, checksum text not null,"
            " applied_at timestamptz not null default now())"
        )
        conn.execute("insert into public.schema_migrations (version, checksum) values ('0001_supabase_compat', 'x')")
    monkeypatch.setenv("DATABASE_URL", url)
    close_connection()
    try:
        result = invoke("health", "GET", "/v1/health/ready")
        assert result.status == 503
        assert result.error["details"] == {
            "migrations_applied": "0001_supabase_compat",
            "migrations_expected": EXPECTED_HEAD,
        }
    finally:
        close_connection()
        monkeypatch.setenv("DATABASE_URL", database_url)
        db.execute(f"drop database if exists {scratch} with (force)")
