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

# pg_try_advisory_xact_lock key of the compaction (distinct from the other jobs').
COMPACT_LOCK_KEY = 0x0B5A1_0014
COMPACT_BATCH_SIZE = 20_000
MINUTE_US = 60_000_000

# --- recording (the writer, inside its transaction) ----------------------------------------------------------------

# Keys are (minute since 2000-01-01 UTC, service, severity_number, retention_days); the level is computed here
# with the histogram's own expression, and severities of one level merged.
_RECORD_SQL = sql.SQL("""
insert into public.log_volume (org_id, project_id, minute, service, level, retention_days, count)
select {org}, {project}, timestamptz '2000-01-01 00:00:00+00' + v.m * interval '1 minute', v.service,
       least((v.sev + 3) / 4, 6), v.r, sum(v.n)
from unnest({minutes}::bigint[], {services}::text[], {severities}::smallint[], {retention}::smallint[],
            {counts}::bigint[]) as v (m, service, sev, r, n)
group by v.m, v.service, least((v.sev + 3) / 4, 6), v.r
""")

VolumeKey = tuple[int, str | None, int, int]  # (minute since 2000-01-01 UTC, service, severity_number, retention)


def volume_statement(org_id: UUID, project_id: UUID, counts: Mapping[VolumeKey, int]) -> sql.Composed | None:
    """The statement appending the volume of lines just written (one, whatever the number of keys), values
    quoted in (the writer sends it with its COMMIT); None when no line was written."""
    if not counts:
        return None
    keys = list(counts)
    return _RECORD_SQL.format(
        org=sql.Literal(org_id),
        project=sql.Literal(project_id),
        minutes=sql.Literal([k[0] for k in keys]),
        services=sql.Literal([k[1] for k in keys]),
        severities=sql.Literal([k[2] for k in keys]),
        retention=sql.Literal([k[3] for k in keys]),
        counts=sql.Literal(list(counts.values())),
    )


# --- compaction (scheduled) ----------------------------------------------------------------------------------------

# A batch of increments (oldest first) into log_volume_rolled in one statement; SKIP LOCKED plus the advisory
# lock: two compactions never take the same row. Upserts in key order: no deadlock between overlapping runs.
_COMPACT_SQL = """
with moved as (
    delete from public.log_volume
    where id in (select id from public.log_volume order by id limit %(limit)s for update skip locked)
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
