"""Ordered SQL migrations: applied under a lock, each file in its own transaction, recorded with a checksum.

Files are ``NNNN_name.sql`` in one directory, applied in name order. Each applied file is recorded
in ``public.schema_migrations`` (version = file stem, checksum = sha256 of its bytes) in the same
transaction as its SQL, so a file is either applied and recorded, or neither. A file that was
applied and has changed since is refused before anything runs: write a new migration instead.

The whole run holds a *session* advisory lock, so concurrent runners (two deploys, parallel test
workers) apply each file exactly once. Run migrations over a session connection (Supabase's direct
connection or session pooler, port 5432), never through the transaction pooler (port 6543): there a
session lock may be taken on one server connection and released on another.

    python -m observai.db.migrations [--database-url URL] [--dir migrations]

The URL defaults to the DATABASE_URL environment variable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

# The newest migration in migrations/: the health readiness route compares the database with it.
# tests/unit/test_migrations_head.py fails until a new migration bumps it.
EXPECTED_HEAD = "0052_rls_api_key_claim_cast_once"

# pg_advisory_lock key for migration runs: any fixed bigint, the same in every runner.
ADVISORY_LOCK_ID = 7_316_082_455_120_932_101

_FILE_RE = re.compile(r"^(?P<number>\d{4,})_[a-z0-9_]+\.sql$")

_CREATE_TABLE_SQL = """
create table if not exists public.schema_migrations (
    version text primary key,
    checksum text not null,
    applied_at timestamptz not null default now()
);
-- Not for API roles: RLS on with no policy hides it from anything PostgREST exposes.
alter table public.schema_migrations enable row level security;
"""


class MigrationError(RuntimeError):
    """A migration could not be applied (or an applied one changed); nothing of the failing file remains."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    sql: bytes

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql).hexdigest()


def discover(directory: Path) -> list[Migration]:
    """The migration files of ``directory`` in apply order; misnamed ``.sql`` files and duplicate numbers are errors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    migrations: list[Migration] = []
    numbers: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql"), key=lambda p: p.name):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name must look like 0001_name.sql (lowercase): {path.name}")
        number = match["number"]
        if number in numbers:
            raise MigrationError(f"two migrations share number {number}: {numbers[number]} and {path.name}")
        numbers[number] = path.name
        migrations.append(Migration(version=path.stem, path=path, sql=path.read_bytes()))
    return migrations


def _first(row: Any) -> Any:
    """The first column of a row from any row factory (tuple or dict)."""
    if row is None:
        return None
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]


def head_version(cursor: psycopg.Cursor[Any]) -> str | None:
    """The newest applied version, or None when no migration ever ran (no schema_migrations table)."""
    # to_regclass instead of catching UndefinedTable: an error would abort the caller's transaction.
    cursor.execute("select to_regclass('public.schema_migrations') is not null")
    if not _first(cursor.fetchone()):
        return None
    cursor.execute("select version from public.schema_migrations order by version desc limit 1")
    return _first(cursor.fetchone())


def apply_migrations(database_url: str, directory: Path) -> list[str]:
    """Apply the pending migrations of ``directory``; return the versions this call applied, in order."""
    migrations = discover(directory)
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True, prepare_threshold=None) as conn:
        # Migrations may legitimately run long (index builds): no statement timeout on this session.
        conn.execute("set statement_timeout = 0")
        conn.execute("select pg_advisory_lock(%s)", (ADVISORY_LOCK_ID,))
        try:
            conn.execute(_CREATE_TABLE_SQL)
            # Read under the lock: another runner may have applied files while we waited.
            rows = conn.execute("select version, checksum from public.schema_migrations").fetchall()
            applied: dict[str, str] = {version: checksum for version, checksum in rows}
            changed = [m.path.name for m in migrations if m.version in applied and applied[m.version] != m.checksum]
            if changed:
                raise MigrationError(
                    "applied migrations were modified since (checksum differs): "
                    + ", ".join(changed)
                    + "; restore them and add a new migration instead"
                )
            for migration in migrations:
                if migration.version in applied:
                    continue
                try:
                    with conn.transaction():
                        # No parameters: psycopg sends the file as one simple query, many statements allowed.
                        conn.execute(migration.sql)
                        conn.execute(
                            "insert into public.schema_migrations (version, checksum) values (%s, %s)",
                            (migration.version, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.path.name} failed and was rolled back: {exc}") from exc
                applied_now.append(migration.version)
        finally:
            if not conn.closed and not conn.broken:
                conn.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK_ID,))
    return applied_now


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m observai.db.migrations", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    parser.add_argument("--dir", default="migrations", type=Path, help="default: ./migrations")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("no database: pass --database-url or set DATABASE_URL")
    try:
        versions = apply_migrations(args.database_url, args.dir)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for version in versions:
        print(f"applied {version}")
    if not versions:
        print("up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
