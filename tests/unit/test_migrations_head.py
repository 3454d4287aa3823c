"""EXPECTED_HEAD must name the newest migration file, so the readiness check knows what "migrated" means."""

from __future__ import annotations

import re
from pathlib import Path

from observai.db.migrations import EXPECTED_HEAD, discover

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def test_expected_head_is_the_newest_migration_file() -> None:
    # Given the SQL files in migrations/, in apply (name) order
    files = sorted(MIGRATIONS.glob("*.sql"), key=lambda p: p.name)
    assert files, "no migration files found"

    # When comparing the newest one with the constant the health route checks
    newest = files[-1].stem

    # Then they agree: a new migration must bump observai.db.migrations.EXPECTED_HEAD
    assert newest == EXPECTED_HEAD, f"bump EXPECTED_HEAD to {newest!r} in observai/db/migrations.py"


def test_migration_files_are_well_named_and_numbered_once() -> None:
    # Given / When the runner discovers the project's migrations (it rejects misnamed files and reused numbers)
    migrations = discover(MIGRATIONS)

    # Then every file is NNNN_name.sql and the numbers are unique
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+", m.version) for m in migrations)
    numbers = [m.version.split("_", 1)[0] for m in migrations]
    assert len(numbers) == len(set(numbers))
