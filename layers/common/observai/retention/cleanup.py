"""The daily cleanup-retention job: drop what the plans no longer keep, purge expired bookkeeping rows.

Telemetry (logs, spans, metric_points) is never deleted row by row: every UTC day partition is
LIST-partitioned by ``retention_days`` (migration 0010), so

- a sub-partition (day D, retention R) is dropped as a whole once ``D < today - R``;
- a day partition is dropped as a whole once nothing in it is kept any more: all its value
  sub-partitions expired, and its default sub-partition (rows whose value no plan used when the day was
  created) holds no row with ``D >= today - retention_days``;
- metric_rollups and metric_group_rollups (plain day partitions, no retention_days column) lose a day
  once it is older than the longest retention of any plan (every organization shares one day partition);
  metric_group_pending (the group step's queue, unpartitioned) is worked off by the job itself;
- the DEFAULT partitions (safety nets, small: rows of a day that had no partition, and in a day, rows
  whose retention_days had no sub-partition, e.g. a late row whose sub-partition was already dropped)
  lose their expired rows by batched DELETE.

Today's partition (and any later one) is never touched, whatever the plans say.

Also purged, by batched DELETE (small tables): expired Idempotency-Keys (``ingest_idempotency``),
``usage_daily`` rows older than ``USAGE_KEEP_DAYS``, and the log volume (``log_volume``, ``log_volume_rolled``:
migration 0014) of expired lines, by the lines' own rule: a row of minute M kept R days goes once
``day(M) < today - R``, with the log sub-partition it counts.

- Every drop is written to the audit log (a ``system`` actor, no organization: a partition holds the rows
  of every organization on that plan and level) in the transaction that drops it; purges write one audit
  row per kind and run.
- Dry run: lists what would be dropped and how many rows would be purged; changes nothing.
- Overlap-safe: each step is its own transaction that first takes ``pg_try_advisory_xact_lock(LOCK_KEY)``;
  a run that does not get it stops (the other run does the same work) and reports ``ran=False``.
  Each drop re-checks the partition still exists, so nothing is done twice.
- Locks: ``DROP TABLE`` of a sub-partition takes ACCESS EXCLUSIVE on its day partition only (old days see
  no writes); a whole day takes ACCESS EXCLUSIVE on the parent for an instant. ``DETACH ... CONCURRENTLY``
  would avoid that, but it cannot run in a transaction block nor on a table with a DEFAULT partition; so
  each drop runs with a short ``lock_timeout`` instead, and a drop that times out behind a long query is
  retried by the next run.
- Bounded: at most ``max_drops`` drops and ``max_purge_rows`` rows per purge per run, oldest first;
  the next run resumes with what is left (``more_pending``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from observai import audit
from observai.db.breaker import is_connection_failure
from observai.db.connection import Cursor, transaction
from observai.errors import ObservAIError
from observai.observability import logger

# pg_try_advisory_xact_lock key of cleanup-retention (distinct from the other jobs').
LOCK_KEY = 0x0B5A1_0010
# Day partitions LIST-partitioned by retention_days (migration 0010).
RETENTION_TABLES: tuple[str, ...] = ("public.logs", "public.spans", "public.metric_points")
# Plain day partitions shared by every plan: dropped past the longest plan retention.
PLAN_MAX_TABLES: tuple[str, ...] = ("public.metric_rollups", "public.metric_group_rollups")
# The time column of each parent (the range partition key), for the DEFAULT partition purge.
TIME_COLUMNS = {"public.logs": "time", "public.spans": "start_time", "public.metric_points": "time"}
PLAN_MAX_TIME_COLUMNS = {"public.metric_rollups": "bucket_start", "public.metric_group_rollups": "bucket_start"}

MAX_DROPS_PER_RUN = 200
MAX_PURGE_ROWS_PER_RUN = 200_000
PURGE_BATCH_SIZE = 5_000
USAGE_KEEP_DAYS = 400  # usage reports cover at most 366 days (observai.telemetry.usage_report.MAX_REPORT_DAYS)
LOCK_TIMEOUT = "3s"  # a drop never waits long behind a query: the next run retries it
SYSTEM_TARGET = "partition"

_DAY_RE = re.compile(r"_p(\d{8})$")
_LEAF_RE = re.compile(r"_(?:r(\d+)|(default))$")


class PartitionDrop(BaseModel):
    kind: Literal["subpartition", "day"]
    table: str = Field(description="The parent table, e.g. public.logs")
    partition: str = Field(description="The partition dropped (or to drop), schema-qualified")
    day: date
    retention_days: int | None = Field(description="The sub-partition's value; null for a whole day")
    estimated_rows: int
    bytes: int
    dropped: bool = False
    error: str | None = None


class RetentionReport(BaseModel):
    dry_run: bool
    ran: bool = Field(description="False when another run held the lock (this one stopped)")
    today: date
    drops: list[PartitionDrop]
    more_pending: bool = Field(description="More expired partitions than max_drops: the next run continues")
    default_rows_deleted: dict[str, int] = Field(description="Expired rows removed from each DEFAULT partition")
    idempotency_keys_purged: int
    usage_rows_purged: int
    log_volume_rows_purged: int = Field(default=0, description="Expired log volume rows (both tables)")
    seconds: float

    @property
    def failed(self) -> list[str]:
        return [d.partition for d in self.drops if d.error]


def utc_today() -> date:
    return datetime.now(UTC).date()


# ---------------------------------------------------------------------------------------------
# Planning: which partitions are expired (catalog reads only)

_TREE_SQL = """
select d.relname as day_name, d.relkind::text as day_kind,
       l.relname as leaf_name, coalesce(l.reltuples, d.reltuples)::bigint as reltuples,
       pg_total_relation_size(coalesce(l.oid, d.oid)) as bytes
from pg_inherits di
join pg_class d on d.oid = di.inhrelid
left join pg_inherits li on li.inhparent = d.oid
left join pg_class l on l.oid = li.inhrelid
where di.inhparent = %s::regclass and d.relname ~ '_p[0-9]{8}$'
order by d.relname, l.relname
"""


@dataclass(slots=True)
class _Day:
    name: str
    day: date
    partitioned: bool
    leaves: dict[int, tuple[str, int, int]]  # retention_days → (leaf name, estimated rows, bytes)
    default_leaf: str | None = None
    rows: int = 0
    bytes: int = 0


def _name(qualified: str) -> sql.Identifier:
    """A schema-qualified table name read from the catalog, quoted for SQL."""
    schema, _, table = qualified.partition(".")
    return sql.Identifier(schema, table)


def _estimate(n: int) -> int:
    return max(n, 0)  # reltuples is -1 for a table never analysed


def _days_of(cur: Cursor, table: str) -> list[_Day]:
    schema = table.split(".")[0]
    cur.execute(_TREE_SQL, (table,))
    days: dict[str, _Day] = {}
    for row in cur.fetchall():
        match = _DAY_RE.search(row["day_name"])
        if not match:
            continue
        day = days.get(row["day_name"])
        if day is None:
            day = days[row["day_name"]] = _Day(
                name=f"{schema}.{row['day_name']}",
                day=datetime.strptime(match.group(1), "%Y%m%d").date(),
                partitioned=row["day_kind"] == "p",
                leaves={},
            )
        day.rows += _estimate(row["reltuples"])
        day.bytes += int(row["bytes"] or 0)
        leaf = row["leaf_name"]
        if leaf is None or not leaf.startswith(row["day_name"] + "_"):
            continue
        leaf_match = _LEAF_RE.search(leaf)
        if leaf_match is None:
            continue
        if leaf_match.group(2):
            day.default_leaf = f"{schema}.{leaf}"
        else:
            day.leaves[int(leaf_match.group(1))] = (
                f"{schema}.{leaf}",
                _estimate(row["reltuples"]),
                int(row["bytes"] or 0),
            )
    return sorted(days.values(), key=lambda d: d.day)


class _Gone(Exception):
    """The partition was dropped meanwhile (by an overlapping run)."""


def _longest_kept_in_default(cur: Cursor, default_leaf: str) -> int | None:
    """The largest retention_days in a day's default sub-partition (small: a safety net); None when empty.

    Raises _Gone when an overlapping run dropped the day since the catalog was read (a savepoint keeps the
    caller's transaction usable)."""
    cur.execute("savepoint retention_read")
    try:
        cur.execute(sql.SQL("select max(retention_days) as m from {}").format(_name(default_leaf)))
    except psycopg.errors.UndefinedTable:
        cur.execute("rollback to savepoint retention_read")
        raise _Gone from None
    row = cur.fetchone()
    cur.execute("release savepoint retention_read")
    return int(row["m"]) if row and row["m"] is not None else None


def _max_plan_retention(cur: Cursor) -> int:
    cur.execute("select max(retention_days) as m from public.plans")
    row = cur.fetchone()
    assert row is not None and row["m"] is not None
    return int(row["m"])


def _expired(day: date, keep_days: int, today: date) -> bool:
    """A row of ``day`` kept ``keep_days`` days is gone once day < today - keep_days; never today or later."""
    return day < today and day < today - timedelta(days=keep_days)


def plan_drops(cur: Cursor, today: date, since: date | None = None) -> list[PartitionDrop]:
    """Every expired partition, oldest day first (catalog reads and the small default sub-partitions only)."""
    drops: list[PartitionDrop] = []
    for table in RETENTION_TABLES:
        for day in _days_of(cur, table):
            if (since is not None and day.day < since) or day.day >= today or not day.partitioned:
                continue
            expired_leaves = [(r, leaf) for r, leaf in sorted(day.leaves.items()) if _expired(day.day, r, today)]
            whole_day = len(expired_leaves) == len(day.leaves)
            if whole_day and day.default_leaf is not None:
                try:
                    longest = _longest_kept_in_default(cur, day.default_leaf)
                except _Gone:
                    continue
                whole_day = longest is None or _expired(day.day, longest, today)
            if whole_day:
                drops.append(
                    PartitionDrop(
                        kind="day", table=table, partition=day.name, day=day.day, retention_days=None,
                        estimated_rows=day.rows, bytes=day.bytes,
                    )
                )  # fmt: skip
                continue
            for r, (leaf, rows, size) in expired_leaves:
                drops.append(
                    PartitionDrop(
                        kind="subpartition", table=table, partition=leaf, day=day.day, retention_days=r,
                        estimated_rows=rows, bytes=size,
                    )
                )  # fmt: skip
    longest_plan = _max_plan_retention(cur)
    for table in PLAN_MAX_TABLES:
        for day in _days_of(cur, table):
            if (since is not None and day.day < since) or not _expired(day.day, longest_plan, today):
                continue
            drops.append(
                PartitionDrop(
                    kind="day", table=table, partition=day.name, day=day.day, retention_days=None,
                    estimated_rows=day.rows, bytes=day.bytes,
                )
            )  # fmt: skip
    drops.sort(key=lambda d: (d.day, d.table, d.partition))
    return drops


# ---------------------------------------------------------------------------------------------
# Acting: one transaction per step, each under the advisory lock


class _LockHeld(Exception):
    """Another run holds the cleanup lock: this run stops."""


def _locked(cur: Cursor) -> None:
    cur.execute(
        "select pg_try_advisory_xact_lock(%s) as got, set_config('lock_timeout', %s, true)", (LOCK_KEY, LOCK_TIMEOUT)
    )
    row = cur.fetchone()
    if not row or not row["got"]:
        raise _LockHeld


def _drop(drop: PartitionDrop, today: date) -> bool:
    """Drop one partition and audit it, in one transaction; False when it was already gone."""
    with transaction() as cur:
        _locked(cur)
        cur.execute(
            "select exists (select 1 from pg_inherits i where i.inhrelid = to_regclass(%s)) as present",
            (drop.partition,),
        )
        row = cur.fetchone()
        if not row or not row["present"]:
            return False
        if drop.kind == "day" and drop.table in RETENTION_TABLES:
            # Re-check the default sub-partition under the parent's lock (taken first, as DROP takes it):
            # a late row with a longer retention may have arrived since planning.
            cur.execute(sql.SQL("lock table {} in access exclusive mode").format(_name(drop.table)))
            default_leaf = f"{drop.partition}_default"
            cur.execute("select to_regclass(%s) is not null as present", (default_leaf,))
            present = cur.fetchone()
            if present and present["present"]:
                longest = _longest_kept_in_default(cur, default_leaf)
                if longest is not None and not _expired(drop.day, longest, today):
                    return False
        if drop.day >= today:  # never today's partition (nor a later one), whatever happened upstream
            raise ValueError(f"refusing to drop {drop.partition}: its day is not in the past")
        cur.execute(sql.SQL("drop table {}").format(_name(drop.partition)))
        audit.record(
            cur,
            None,
            "retention.partition_dropped",
            org_id=None,
            target_type=SYSTEM_TARGET,
            target_id=drop.partition,
            details={
                "table": drop.table,
                "kind": drop.kind,
                "day": drop.day.isoformat(),
                "retention_days": drop.retention_days,
                "estimated_rows": drop.estimated_rows,
                "bytes": drop.bytes,
                "today": today.isoformat(),
            },
        )
    return True


def _default_purge_sql(table: str, count_only: bool) -> str:
    """Expired rows of ``table``'s DEFAULT partition: per row retention_days, or the longest plan's."""
    if table in TIME_COLUMNS:
        column, keep = TIME_COLUMNS[table], "d.retention_days"
    else:
        column, keep = PLAN_MAX_TIME_COLUMNS[table], "(select max(retention_days) from public.plans)"
    default = f"{table}_default"
    expired = (
        f"d.{column} < ((%(today)s::date - {keep})::timestamp at time zone 'UTC')"
        f" and d.{column} < (%(today)s::timestamp at time zone 'UTC')"
        f" and (%(since)s::date is null or d.{column} >= (%(since)s::timestamp at time zone 'UTC'))"
    )
    if count_only:
        return f"select count(*) as n from (select 1 from {default} d where {expired} limit %(limit)s) x"
    return (
        f"with gone as (delete from {default} where ctid = any(array("
        f"select d.ctid from {default} d where {expired} limit %(limit)s)) returning 1)"
        " select count(*) as n from gone"
    )


# A day's default sub-partition: rows of day D kept R days are expired once R < today - D (= age).
_DAY_DEFAULT_PURGE_SQL = """
with gone as (
    delete from {leaf} where ctid = any(array(
        select ctid from {leaf} where retention_days < %(age)s limit %(limit)s))
    returning 1
) select count(*) as n from gone
"""
_DAY_DEFAULT_COUNT_SQL = """
select count(*) as n from (select 1 from {leaf} where retention_days < %(age)s limit %(limit)s) x
"""
_IDEMPOTENCY_SQL = """
with gone as (
    delete from public.ingest_idempotency where ctid = any(array(
        select ctid from public.ingest_idempotency where expires_at < now() limit %(limit)s))
    returning 1
) select count(*) as n from gone
"""
_IDEMPOTENCY_COUNT_SQL = """
select count(*) as n from (select 1 from public.ingest_idempotency where expires_at < now() limit %(limit)s) x
"""
_USAGE_SQL = """
with gone as (
    delete from public.usage_daily where ctid = any(array(
        select ctid from public.usage_daily
        where day < (now() at time zone 'UTC')::date - %(keep)s::integer limit %(limit)s))
    returning 1
) select count(*) as n from gone
"""
_USAGE_COUNT_SQL = """
select count(*) as n from (
    select 1 from public.usage_daily where day < (now() at time zone 'UTC')::date - %(keep)s::integer limit %(limit)s
) x
"""


# The log volume of expired lines, one retention value at a time: an index range (retention_days, minute) on
# log_volume_rolled; log_volume holds only the increments of the last hour or so (compacted hourly).
_LOG_VOLUME_TABLES = ("public.log_volume_rolled", "public.log_volume")
_VOLUME_EXPIRED = """
retention_days = %(keep)s and minute < ((%(today)s::date - %(keep)s::integer)::timestamp at time zone 'UTC')
and minute < (%(today)s::timestamp at time zone 'UTC')
and (%(since)s::date is null or minute >= (%(since)s::timestamp at time zone 'UTC'))
"""
_VOLUME_PURGE_SQL = (
    "with gone as (delete from {table} where ctid = any(array(select ctid from {table} where"
    + _VOLUME_EXPIRED
    + " limit %(limit)s)) returning 1) select count(*) as n from gone"
)
_VOLUME_COUNT_SQL = "select count(*) as n from (select 1 from {table} where" + _VOLUME_EXPIRED + " limit %(limit)s) x"
# The retention values present: a loose index scan of log_volume_rolled_retention_idx (a few values).
_VOLUME_KEEP_VALUES_SQL = """
with recursive v (keep) as (
    (select retention_days from public.log_volume_rolled order by retention_days limit 1)
    union all
    select (select r.retention_days from public.log_volume_rolled r where r.retention_days > v.keep
            order by r.retention_days limit 1)
    from v where v.keep is not null
)
select keep from v where keep is not null
union
select distinct retention_days from public.log_volume
"""


def _purge_log_volume(today: date, since: date | None, max_rows: int, *, dry_run: bool) -> int:
    with transaction() as cur:
        cur.execute(_VOLUME_KEEP_VALUES_SQL)
        keep_values = sorted(int(row["keep"]) for row in cur.fetchall())
    total = 0
    for table in _LOG_VOLUME_TABLES:
        for keep in keep_values:
            if total >= max_rows:
                return total
            total += _purge(
                table,
                sql.SQL(_VOLUME_PURGE_SQL).format(table=_name(table)),
                {"today": today, "since": since, "keep": keep},
                max_rows - total,
                dry_run=dry_run,
                count_sql=sql.SQL(_VOLUME_COUNT_SQL).format(table=_name(table)),
            )
    return total


def _purge(
    name: str,
    delete_sql: str | sql.Composed,
    params: dict[str, Any],
    max_rows: int,
    *,
    dry_run: bool,
    count_sql: str | sql.Composed,
) -> int:
    """Delete in batches of PURGE_BATCH_SIZE up to max_rows, each batch in its own transaction with its audit row
    (at most max_rows / PURGE_BATCH_SIZE of them); a dry run counts (up to max_rows) instead."""
    if dry_run:
        with transaction() as cur:
            cur.execute(count_sql, {**params, "limit": max_rows})
            row = cur.fetchone()
            return int(row["n"]) if row else 0
    total = 0
    while total < max_rows:
        limit = min(PURGE_BATCH_SIZE, max_rows - total)
        with transaction() as cur:
            _locked(cur)
            cur.execute(delete_sql, {**params, "limit": limit})
            row = cur.fetchone()
            n = int(row["n"]) if row else 0
            total += n
            if n:
                audit.record(
                    cur, None, "retention.rows_purged", org_id=None, target_type="table", target_id=name,
                    details={"rows": n, **{k: str(v) for k, v in params.items() if v is not None}},
                )  # fmt: skip
        if n < limit:
            break
    return total


def _day_default_targets(cur: Cursor, today: date, since: date | None, skip: set[str]) -> list[tuple[str, str, int]]:
    """(table, default sub-partition, age in days) of every past day still there (not in ``skip``).

    A row reaches a day's default sub-partition when its retention_days has no sub-partition there: a
    value no plan used when the day was created, or a late row whose sub-partition retention already
    dropped (upkeep never re-creates an expired one). Such a row is expired once retention_days < age:
    these small safety nets lose their expired rows by batched DELETE, like the top-level defaults."""
    targets: list[tuple[str, str, int]] = []
    for table in RETENTION_TABLES:
        for day in _days_of(cur, table):
            if day.default_leaf is None or day.day >= today or day.name in skip:
                continue
            if since is not None and day.day < since:
                continue
            targets.append((table, day.default_leaf, (today - day.day).days))
    return targets


def run_cleanup(
    *,
    dry_run: bool = False,
    today: date | None = None,
    since: date | None = None,
    max_drops: int = MAX_DROPS_PER_RUN,
    max_purge_rows: int = MAX_PURGE_ROWS_PER_RUN,
) -> RetentionReport:
    """One bounded run. ``today`` (UTC) decides what expired; ``since`` limits the run to days on or after it
    (None: all days). Idempotency keys and usage rows are judged by the database clock."""
    if max_drops < 0 or max_purge_rows < 0:
        raise ValueError("max_drops and max_purge_rows must not be negative")
    started = time.monotonic()
    today = today or utc_today()
    with transaction() as cur:
        planned = plan_drops(cur, today, since)
    chosen, more_pending = planned[:max_drops], len(planned) > max_drops
    report = RetentionReport(
        dry_run=dry_run,
        ran=True,
        today=today,
        drops=chosen,
        more_pending=more_pending,
        default_rows_deleted={},
        idempotency_keys_purged=0,
        usage_rows_purged=0,
        seconds=0.0,
    )
    try:
        if not dry_run:
            for drop in chosen:
                try:
                    drop.dropped = _drop(drop, today)
                except (psycopg.Error, ObservAIError) as exc:
                    # A lock timeout behind a long query: the next run retries; the others go on. An unreachable
                    # database stops the run.
                    if is_connection_failure(exc):
                        raise
                    logger.warning("retention drop failed", extra={"partition": drop.partition, "error": str(exc)})
                    drop.error = f"{exc.__class__.__name__}: {exc}"
        params = {"today": today, "since": since}
        for table in RETENTION_TABLES + PLAN_MAX_TABLES:
            report.default_rows_deleted[table] = _purge(
                f"{table}_default",
                _default_purge_sql(table, count_only=False),
                params,
                max_purge_rows,
                dry_run=dry_run,
                count_sql=_default_purge_sql(table, count_only=True),
            )
        whole_days = {d.partition for d in chosen if d.kind == "day"}
        with transaction() as cur:
            targets = _day_default_targets(cur, today, since, skip=whole_days)
        for table, leaf, age in targets:
            budget = max_purge_rows - report.default_rows_deleted[table]
            if budget <= 0:
                continue
            try:
                purged = _purge(
                    leaf,
                    sql.SQL(_DAY_DEFAULT_PURGE_SQL).format(leaf=_name(leaf)),
                    {"age": age},
                    budget,
                    dry_run=dry_run,
                    count_sql=sql.SQL(_DAY_DEFAULT_COUNT_SQL).format(leaf=_name(leaf)),
                )
            except psycopg.errors.UndefinedTable:
                continue  # an overlapping run dropped the day meanwhile
            report.default_rows_deleted[table] += purged
        report.idempotency_keys_purged = _purge(
            "public.ingest_idempotency", _IDEMPOTENCY_SQL, {}, max_purge_rows, dry_run=dry_run,
            count_sql=_IDEMPOTENCY_COUNT_SQL,
        )  # fmt: skip
        report.usage_rows_purged = _purge(
            "public.usage_daily", _USAGE_SQL, {"keep": USAGE_KEEP_DAYS}, max_purge_rows, dry_run=dry_run,
            count_sql=_USAGE_COUNT_SQL,
        )  # fmt: skip
        report.log_volume_rows_purged = _purge_log_volume(today, since, max_purge_rows, dry_run=dry_run)
    except _LockHeld:
        report.ran = False
    report.seconds = round(time.monotonic() - started, 3)
    return report
