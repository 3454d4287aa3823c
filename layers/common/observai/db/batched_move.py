"""Moving rows from an append-only increments table into their rolled-up form, a batch per transaction.

Usage's roll-up and the log volume's compaction share the mechanism: each batch takes a transaction-level
advisory lock (a concurrent run stops at once), runs one statement that deletes a batch of increments and
upserts their sums (so a row is counted exactly once), and commits on its own (the next run resumes with
the oldest rows left).
"""

from __future__ import annotations

from typing import LiteralString

from observai.db.connection import transaction


def _move_batch(lock_key: int, statement: LiteralString, limit: int) -> int | None:
    """One batch in its own transaction: rows moved, or None when another run holds the lock."""
    with transaction() as cur:
        cur.execute("select pg_try_advisory_xact_lock(%s) as got", (lock_key,))
        row = cur.fetchone()
        if not row or not row["got"]:
            return None
        cur.execute(statement, {"limit": limit})
        result = cur.fetchone()
        return int(result["moved"]) if result else 0


def move_in_batches(lock_key: int, statement: LiteralString, batch_size: int, max_rows: int) -> int:
    """Run ``statement`` (taking ``%(limit)s``, returning a ``moved`` count) in batches of ``batch_size``
    until it moves fewer than asked, ``max_rows`` are moved, or another run holds ``lock_key``."""
    total = 0
    while total < max_rows:
        limit = min(batch_size, max_rows - total)
        moved = _move_batch(lock_key, statement, limit)
        if moved is None:
            break
        total += moved
        if moved < limit:
            break
    return total
