"""SQL literals written directly, for values whose text cannot carry SQL (statements built on the ingest hot path,
where psycopg's quoting costs tens of microseconds a statement)."""

from __future__ import annotations

from uuid import UUID


def uuid_literal(value: UUID) -> str:
    """A UUID as an SQL literal (its canonical text: hex digits and dashes only); TypeError for anything else."""
    if value.__class__ is not UUID:
        raise TypeError(f"a UUID, not {value.__class__.__name__}")
    return f"'{value}'::uuid"
