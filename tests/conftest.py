"""Shared fixtures: one real Postgres per test process (embedded, or DATABASE_URL), migrated once."""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Settings are read per call, so tests set the environment before anything runs.
os.environ.setdefault("STAGE", "test")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database. With DATABASE_URL each test process gets its own fresh database in it."""
    from observai.db.migrations import apply_migrations
    from observai_local.pg import embedded_database_url

    base = os.environ.get("DATABASE_URL_FOR_TESTS") or os.environ.get("DATABASE_URL")
    created: str | None = None
    if base:
        created = f"observai_test_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'create database "{created}"')
        url = psycopg.conninfo.make_conninfo(base, dbname=created)
    else:
        url = embedded_database_url(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    apply_migrations(url, ROOT / "migrations")
    os.environ["DATABASE_URL"] = url
    yield url
    from observai.db import close_connection

    close_connection()
    if created and base:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{created}" with (force)')


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A direct superuser connection for arranging and inspecting rows."""
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        yield conn


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes (its real handler and JSON formatter), at DEBUG."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    buffer = io.StringIO()
    from observai.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous_stream = handler.setStream(buffer)
    previous_level = logger.log_level
    logger.setLevel("DEBUG")
    try:
        yield buffer
    finally:
        handler.setStream(previous_stream)
        logger.setLevel(previous_level)
