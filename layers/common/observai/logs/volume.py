"""Pre-aggregated log volume: lines per UTC minute, service, level and retention_days (migration 0014).

* Recording: the ingest writer counts the lines it COPYed and sends ``volume_statement`` with its COMMIT:
  one INSERT of a few rows (one per minute, service, severity and retention_days of the batch) into the
  append-only ``public.log_volume``. Exact (it commits or rolls back with the lines, and only lines actually
  written are counted: dedup skipped the retried ones before), no hot row (a request never updates a row).
* Compaction (``compact_log_volume``, hourly from the partition-upkeep job) moves increments into
  ``public.log_volume_rolled``, one row per (project, minute, service, level, retention_days), as the usage
  roll-up does: delete ... returning → upsert adding, in key order, under an advisory lock, in bounded
  batches. Reads sum both tables in one statement, so a concurrent compaction is counted exactly once.
* Reading: observai.logs.volume_histogram (apart, so that the ingest writer never imports the query language).
* Retention: observai.retention.cleanup purges rows whose minute expired with the lines they count.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from psycopg import sql

from observai.db.batched_move import move_in_batches
from observai.db.literals import uuid_literal

# pg_try_advisory_xact_lock key of the compaction (distinct from the other jobs').
COMPACT_LOCK_KEY = 0x0B5A1_0014
COMPACT_BATCH_SIZE = 20_000
MINUTE_US = 60_000_000

# --- recording (the writer, inside its transaction) ----------------------------------------------------------------

VolumeKey = tuple[int, str | None, int, int]  # (minute since 2000-01-01 UTC, service, severity_number, retention)

# Service names as SQL literals (psycopg's quoting, ~5 µs each): a project sends the same few again and again.
_SERVICE_LITERALS: dict[str | None, str] = {}
_SERVICE_LITERALS_MAX = 10_000


def level_of(severity_number: int) -> int:
    """The histogram's level of a severity number: least((severity_number + 3) / 4, 6) as SQL computes it
    (integer division truncating toward zero)."""
    q = abs(severity_number + 3) // 4
    return min(q if severity_number + 3 >= 0 else -q, 6)


def _service_literal(service: str | None) -> str:
    found = _SERVICE_LITERALS.get(service)
    if found is None:
        if len(_SERVICE_LITERALS) >= _SERVICE_LITERALS_MAX:
            _SERVICE_LITERALS.clear()
        found = _SERVICE_LITERALS[service] = sql.Literal(service).as_string(None)
    return found


def volume_statement(org_id: UUID, project_id: UUID, counts: Mapping[VolumeKey, int]) -> sql.SQL | None:
    """The statement appending the volume of lines just written (one, whatever the number of keys), values
    written in (the writer sends it with its COMMIT); None when no line was written.

    Severities of one level are merged here, one row per (minute, service, level, retention_days). Service names
    are quoted by psycopg; every other value is an integer or a UUID, written directly (a few microseconds a
    request instead of ~100 through psycopg's quoting of arrays)."""
    if not counts:
        return None
    merged: dict[tuple[int, str | None, int, int], int] = {}
    for (minute, service, severity, retention), n in counts.items():
        key = (int(minute), service, level_of(int(severity)), int(retention))
        merged[key] = merged.get(key, 0) + int(n)
    org, project = uuid_literal(org_id), uuid_literal(project_id)
    values = ", ".join(
        f"({org}, {project}, timestamptz '2000-01-01 00:00:00+00' + {minute} * interval '1 minute',"
        f" {_service_literal(service)}, {level}, {retention}, {n})"
        for (minute, service, level, retention), n in merged.items()
    )
    return sql.SQL(
        "insert into public.log_volume (org_id, project_id, minute, service, level, retention_days, count)"
        f" values {values}"
    )


# --- compaction (scheduled) ----------------------------------------------------------------------------------------

# A batch of increments (oldest first) into log_volume_rolled in one statement; SKIP LOCKED plus the advisory
# lock: two compactions never take the same row. Upserts in key order: no deadlock between overlapping runs.
_COMPACT_SQL = """
with picked as materialized (  -- evaluated once: the batch is these rows and no more, whatever the plan
    select id from public.log_volume order by id limit %(limit)s for update skip locked
), moved as (
    delete from public.log_volume t using picked p
    where t.id = p.id
    returning org_id, project_id, minute, service, level, retention_days, count
), sums as (
    select org_id, project_id, minute, service, level, retention_days, sum(count)::bigint as count, count(*) as n
    from moved group by org_id, project_id, minute, service, level, retention_days
), upserted as (
    insert into public.log_volume_rolled as r (org_id, project_id, minute, service, level, retention_days, count)
    select org_id, project_id, minute, service, level, retention_days, count from sums
    order by project_id, minute, service, level, retention_days
    on conflict (project_id, minute, service, level, retention_days) do update set count = r.count + excluded.count
    returning 1
)
select coalesce((select sum(n) from sums), 0)::bigint as moved, (select count(*) from upserted) as upserted
"""


def compact_log_volume(max_rows: int = 500_000) -> int:
    """Merge up to ``max_rows`` increments into log_volume_rolled; return how many increments were merged.

    Bounded (batches of COMPACT_BATCH_SIZE), overlap-safe (a concurrent run stops at the advisory lock),
    resumable (each batch commits alone; the next run goes on with the oldest increments) and idempotent
    (an increment is deleted in the transaction that adds it: nothing is counted twice).
    """
    return move_in_batches(COMPACT_LOCK_KEY, _COMPACT_SQL, COMPACT_BATCH_SIZE, max_rows)
