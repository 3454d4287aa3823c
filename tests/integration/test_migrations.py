"""The migration runner against a real Postgres: recorded, checksummed, transactional, locked."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from observai.db.migrations import EXPECTED_HEAD, MigrationError, apply_migrations, head_version

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROJECT_MIGRATIONS = ROOT / "migrations"


@pytest.fixture
def fresh_url(db: psycopg.Connection, database_url: str) -> Iterator[str]:
    """An empty database of its own (same server), dropped afterwards."""
    name = f"mig_{uuid.uuid4().hex[:12]}"
    db.execute(f'create database "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    finally:
        db.execute(f'drop database if exists "{name}" with (force)')


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


def recorded(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("select version, checksum from public.schema_migrations").fetchall())


def table_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()
        return bool(row and row[0])


def test_applying_twice_applies_nothing_the_second_time(fresh_url: str, tmp_path: Path) -> None:
    # Given two migrations
    directory = write(
        tmp_path / "m",
        {"0001_first.sql": "create table t1 (id int);", "0002_second.sql": "create table t2 (id int);"},
    )

    # When applying them twice
    first = apply_migrations(fresh_url, directory)
    second = apply_migrations(fresh_url, directory)

    # Then the first call applied both in order, recorded with their checksums, and the second nothing
    assert first == ["0001_first", "0002_second"]
    assert second == []
    assert set(recorded(fresh_url)) == {"0001_first", "0002_second"}
    assert all(len(checksum) == 64 for checksum in recorded(fresh_url).values())


def test_a_changed_applied_migration_is_refused_before_anything_runs(fresh_url: str, tmp_path: Path) -> None:
    # Given an applied migration that was edited afterwards, and a new pending one
    directory = write(tmp_path / "m", {"0001_first.sql": "create table t1 (id int);"})
    apply_migrations(fresh_url, directory)
    write(
        directory, {"0001_first.sql": "create table t1 (id int, extra text);", "0002_next.sql": "create table t2 ();"}
    )

    # When applying again
    with pytest.raises(MigrationError, match=r"0001_first\.sql") as excinfo:
        apply_migrations(fresh_url, directory)

    # Then the error says why, and the pending migration was not applied either
    assert "checksum" in str(excinfo.value)
    assert set(recorded(fresh_url)) == {"0001_first"}
    assert not table_exists(fresh_url, "t2")


def test_a_failing_migration_rolls_back_entirely_and_is_not_recorded(fresh_url: str, tmp_path: Path) -> None:
    # Given a good migration followed by one that fails halfway through
    directory = write(
        tmp_path / "m",
        {
            "0001_good.sql": "create table t1 (id int);",
            "0002_bad.sql": "create table t2 (id int);\ninsert into t1 values (1);\nselect 1 / 0;",
        },
    )

    # When applying
    with pytest.raises(MigrationError, match=r"0002_bad\.sql") as excinfo:
        apply_migrations(fresh_url, directory)

    # Then the good one stays applied, and nothing of the bad one remains or is recorded
    assert isinstance(excinfo.value.__cause__, psycopg.errors.DivisionByZero)
    assert set(recorded(fresh_url)) == {"0001_good"}
    assert not table_exists(fresh_url, "t2")
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute("select count(*) from t1").fetchone() == (0,)

    # And once fixed, it applies on the next run
    write(directory, {"0002_bad.sql": "create table t2 (id int);"})
    assert apply_migrations(fresh_url, directory) == ["0002_bad"]


def test_concurrent_runners_apply_each_file_exactly_once(fresh_url: str, tmp_path: Path) -> None:
    # Given migrations that would fail if run twice (plain create table), one of them slow
    directory = write(
        tmp_path / "m",
        {
            "0001_a.sql": "create table a (id int); select pg_sleep(0.3);",
            "0002_b.sql": "create table b (id int);",
            "0003_c.sql": "create table c (id int);",
        },
    )
    start = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(apply_migrations(fresh_url, directory))
        except BaseException as exc:
            errors.append(exc)

    # When two runners start at the same moment
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then neither failed and, between them, every file was applied exactly once
    assert errors == []
    assert sorted(v for result in results for v in result) == ["0001_a", "0002_b", "0003_c"]
    assert set(recorded(fresh_url)) == {"0001_a", "0002_b", "0003_c"}


def test_misnamed_migration_files_are_refused(fresh_url: str, tmp_path: Path) -> None:
    # Given a .sql file that does not follow NNNN_name.sql
    directory = write(tmp_path / "m", {"0001_ok.sql": "select 1;", "add_users.sql": "select 1;"})

    # When / Then the runner refuses before touching the database
    with pytest.raises(MigrationError, match=r"add_users\.sql"):
        apply_migrations(fresh_url, directory)
    assert not table_exists(fresh_url, "public.schema_migrations")


def test_project_migrations_reach_expected_head(fresh_url: str) -> None:
    # Given an empty database: no schema_migrations table yet
    with psycopg.connect(fresh_url) as conn:
        assert head_version(conn.cursor()) is None

    # When applying the project's migrations
    applied = apply_migrations(fresh_url, PROJECT_MIGRATIONS)

    # Then every file applied and the head is what the readiness check expects (tuple and dict rows)
    assert applied[-1] == EXPECTED_HEAD
    with psycopg.connect(fresh_url) as conn:
        assert head_version(conn.cursor()) == EXPECTED_HEAD
        assert head_version(conn.cursor(row_factory=psycopg.rows.dict_row)) == EXPECTED_HEAD


def test_compat_migration_is_idempotent_when_objects_exist(fresh_url: str, tmp_path: Path) -> None:
    # Given a database where the whole project schema already exists (roles, auth schema, publication...)
    apply_migrations(fresh_url, PROJECT_MIGRATIONS)
    compat = (PROJECT_MIGRATIONS / "0001_supabase_compat.sql").read_text()

    # When the compatibility migration runs again, as it would on Supabase where all of it pre-exists
    with psycopg.connect(fresh_url) as conn:
        conn.execute(compat)
        conn.execute(compat)
        conn.commit()

        # Then nothing failed and the Supabase-like objects are there, once
        row = conn.execute(
            "select (select count(*) from pg_roles where rolname in ('anon', 'authenticated', 'service_role')),"
            " (select rolbypassrls from pg_roles where rolname = 'service_role'),"
            " (select count(*) from pg_publication where pubname = 'supabase_realtime'),"
            " to_regclass('auth.users') is not null"
        ).fetchone()
        assert row == (3, True, 1, True)

    # And through the runner as a separate file, on a database that already has everything
    directory = write(tmp_path / "m", {"0001_supabase_compat.sql": compat})
    assert apply_migrations(fresh_url, directory) == []  # already recorded under the same version and checksum
    write(directory, {"0002_compat_again.sql": compat})
    assert apply_migrations(fresh_url, directory) == ["0002_compat_again"]


def test_auth_functions_read_claims_like_supabase(fresh_url: str) -> None:
    # Given the compatibility functions
    apply_migrations(fresh_url, PROJECT_MIGRATIONS)
    user = uuid.uuid4()
    with psycopg.connect(fresh_url) as conn:
        # When claims are set for the transaction (as PostgREST and tenant_transaction do)
        conn.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (f'{{"sub": "{user}", "role": "authenticated", "email": "a@example.com"}}',),
        )
        # Then auth.uid(), auth.role() and auth.jwt() expose them
        row = conn.execute("select auth.uid(), auth.role(), auth.jwt() ->> 'email'").fetchone()
        assert row == (user, "authenticated", "a@example.com")
        conn.rollback()

        # And without claims they are null, not errors
        assert conn.execute("select auth.uid(), auth.role(), auth.jwt()").fetchone() == (None, None, None)


def test_cli_applies_and_reports(fresh_url: str, tmp_path: Path) -> None:
    # Given a migrations directory
    directory = write(tmp_path / "m", {"0001_first.sql": "create table t1 (id int);"})
    cmd = [sys.executable, "-m", "observai.db.migrations", "--database-url", fresh_url, "--dir", str(directory)]

    # When running the CLI twice
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    # Then it prints what it applied, then that nothing was left to do
    assert first.returncode == 0, first.stderr
    assert "0001_first" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
