"""Daily partitions of the telemetry tables, created ahead of time by an hourly job.

``run_partition_upkeep`` asks the database (``private.ensure_daily_partitions``, migration 0005) for
the partitions of today-``days_back`` .. today+``days_ahead`` (UTC days) of every time-partitioned
table; missing ones are created, and rows that landed in a table's DEFAULT partition for such a day
are moved into the new partition in the same transaction. Since migration 0010 a day partition of logs,
spans and metric_points is itself LIST-partitioned by ``retention_days``: the same call creates its
sub-partitions, and adds to existing days the sub-partition of a value a plan started to use.

- Idempotent: an existing partition is left alone; a second run creates nothing.
- Overlap-safe: each table's transaction first takes ``pg_try_advisory_xact_lock(LOCK_KEY)``; a run
  that does not get it skips (the other run is doing the same work).
- Bounded: at most ``len(TABLES) × (days_back + days_ahead + 1)`` partitions per run, one
  transaction per table, each with a lock timeout so ingestion is never stalled for long.
- Resumable: creating what is missing is naturally resumable; a failed table is retried next run.
- Never touches a day older than ``days_back``: dropping old partitions is retention's job.

The same run then rolls usage increments up (``observai.telemetry.usage.roll_up_usage``): hourly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
from pydantic import BaseModel

from observai.db.breaker import is_connection_failure
from observai.db.connection import transaction
from observai.errors import ObservAIError
from observai.observability import logger

# pg_try_advisory_xact_lock key of partition upkeep (any fixed bigint, distinct from the other jobs').
LOCK_KEY = 0x0B5A1_0002
# The time-partitioned tables: parent and (for the record) its partition key.
TABLES: tuple[str, ...] = (
    "public.metric_points",
    "public.logs",
    "public.spans",
    "public.metric_rollups",
    "public.metric_group_rollups",
)
DEFAULT_DAYS_BACK = 8
DEFAULT_DAYS_AHEAD = 3
MAX_DAYS = 31  # per direction: the job is bounded whatever it is asked
# Creating a partition briefly locks the default partition; never wait long behind ingestion.
LOCK_TIMEOUT = "5s"
# Usage increments rolled up per hourly run (in batches; see usage.roll_up_usage). Well above an
# hour of increments at the target ingest rate (100 req/s x 3 signals ~ 1.1M rows/hour).
ROLLUP_MAX_ROWS_PER_RUN = 2_000_000


class TableUpkeep(BaseModel):
    table: str
    created: int = 0
    skipped: bool = False  # another run held the lock
    error: str | None = None


class PartitionReport(BaseModel):
    ran: bool
    first_day: date
    last_day: date
    tables: list[TableUpkeep]
    partitions_created: int = 0
    usage_rows_rolled_up: int = 0

    @property
    def failed(self) -> list[str]:
        return [t.table for t in self.tables if t.error]


def utc_today() -> date:
    return datetime.now(UTC).date()


def ensure_partitions(table: str, first_day: date, last_day: date) -> TableUpkeep:
    """Create ``table``'s missing daily partitions for first_day..last_day, under the upkeep lock."""
    with transaction() as cur:
        cur.execute(
            "select pg_try_advisory_xact_lock(%s) as got, set_config('lock_timeout', %s, true)",
            (LOCK_KEY, LOCK_TIMEOUT),
        )
        row = cur.fetchone()
        if not row or not row["got"]:
            return TableUpkeep(table=table, skipped=True)
        cur.execute(
            "select private.ensure_daily_partitions(%s::regclass, %s, %s) as created", (table, first_day, last_day)
        )
        created = cur.fetchone()
        return TableUpkeep(table=table, created=int(created["created"]) if created else 0)


def run_partition_upkeep(
    days_back: int = DEFAULT_DAYS_BACK, days_ahead: int = DEFAULT_DAYS_AHEAD, *, today: date | None = None
) -> PartitionReport:
    """Make sure every telemetry table has its daily partitions from today-days_back to today+days_ahead."""
    if not (0 <= days_back <= MAX_DAYS and 0 <= days_ahead <= MAX_DAYS):
        raise ValueError(f"days_back and days_ahead must be between 0 and {MAX_DAYS}")
    today = today or utc_today()
    first_day, last_day = today - timedelta(days=days_back), today + timedelta(days=days_ahead)
    results: list[TableUpkeep] = []
    for table in TABLES:
        try:
            result = ensure_partitions(table, first_day, last_day)
        except (psycopg.Error, ObservAIError) as exc:
            # One table failing (a lock timeout behind a long transaction) does not stop the others;
            # what is missing is created by the next run. An unreachable database stops the run.
            if is_connection_failure(exc):
                raise
            logger.warning("partition upkeep failed for a table", extra={"table": table, "error": str(exc)})
            result = TableUpkeep(table=table, error=f"{exc.__class__.__name__}: {exc}")
        results.append(result)
        if result.skipped:
            break  # another run holds the lock and does the same work
    ran = not any(r.skipped for r in results)
    return PartitionReport(
        ran=ran,
        first_day=first_day,
        last_day=last_day,
        tables=results,
        partitions_created=sum(r.created for r in results),
    )


def run_upkeep(days_back: int = DEFAULT_DAYS_BACK, days_ahead: int = DEFAULT_DAYS_AHEAD) -> PartitionReport:
    """The hourly job: partitions first (ingestion needs them), then the usage roll-up."""
    from observai.telemetry.usage import roll_up_usage

    report = run_partition_upkeep(days_back, days_ahead)
    report.usage_rows_rolled_up = roll_up_usage(max_rows=ROLLUP_MAX_ROWS_PER_RUN)
    return report
