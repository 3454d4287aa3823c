"""Erasing the telemetry of deleted projects (and of deleted organizations: their projects cascade).

The telemetry tables have no foreign key to ``public.projects`` (migration 0005 onward), so a deleted project's
rows would stay, hidden by RLS, until retention drops their partitions. Migration 0017 records every deleted
project in ``public.deleted_projects`` (an AFTER DELETE trigger); the purge job (``PurgeDeletedFunction``, every
15 minutes) deletes their rows from every table in ``PURGE_TABLES``:

- Batched through the project_id-leading indexes: a batch picks up to ``batch_size`` rows of one project in one
  table (``tableoid``, ``ctid``: on a partitioned table, an index probe per partition, stopping at the limit), then
  deletes them by ctid in each leaf they came from. A ctid is only unique within a leaf; the delete also repeats
  ``project_id``, so it can never remove another project's row.
- Bounded: at most ``max_rows_per_table`` rows per table per run (shared by the projects, oldest deletion first),
  ``max_projects`` projects, and no batch starts after ``max_seconds``.
- Resumable and idempotent: each batch commits on its own with its count (``rows_purged``); what is left is
  simply found again by the next run.
- Overlap-safe: each batch, and marking a project done, is a transaction that first takes
  ``pg_try_advisory_xact_lock(LOCK_KEY)``; a run that does not get it stops (``ran=False``). Batches of two runs
  never interleave inside a transaction, so a row is deleted (and counted) once.
- Done: a project is marked ``purged_at`` by a run that found nothing left in any table (and deleted nothing:
  rollups derived from rows deleted earlier in the same pass are re-checked by a later run), once its deletion is
  older than ``grace``. The grace covers writes in flight when the project was deleted: an API key is cached
  for a minute per container, an ingest or drain transaction is at most a Lambda timeout. The record is kept
  (when the data was erased, how many rows) and the erasure is audited (``retention.project_purged``).

Not purged here, on purpose: ``usage_increments`` (the organization's usage: the 5-minute roll-up moves them
into the per-organization ``usage_daily``, and a deleted organization's go by foreign key), ``ai_usage`` (the
organization's model tokens, counted against its monthly budget whichever project spent them), ``audit_log`` (it
outlives what it records), and the tables with a foreign key ``on delete cascade`` to projects or organizations
(api_keys, exports, metric_definitions, memberships, invitations, usage_daily): the delete itself removes them.
"""

from __future__ import annotations

import time
from datetime import timedelta
from uuid import UUID

from psycopg import sql
from pydantic import BaseModel, Field

from observai import audit
from observai.db.connection import Cursor, execute_autocommit, transaction

# pg_try_advisory_xact_lock key of the purge (distinct from the other jobs').
LOCK_KEY = 0x0B5A1_0017
# Every table carrying a project's rows without a cascading foreign key, each with a project_id-leading index.
# Sources first, then what is derived from them (rollups, series, log volume): a job deriving rows from a source
# row deleted in this pass writes them before the pass is over, or the next pass finds them.
PURGE_TABLES: tuple[str, ...] = (
    "public.metric_points",
    "public.logs",
    "public.spans",
    "public.metric_group_pending",
    "public.metric_rollups",
    "public.metric_group_rollups",
    "public.metric_group_keys",
    "public.metric_series",
    "public.log_volume",
    "public.log_volume_rolled",
    "public.ingest_idempotency",
    "public.anomaly_points",
)
BATCH_SIZE = 5_000
MAX_ROWS_PER_TABLE = 100_000
MAX_PROJECTS_PER_RUN = 200
MAX_SECONDS = 240.0  # the function's timeout is 300 s: no batch starts past this
GRACE = timedelta(hours=1)


class ProjectPurge(BaseModel):
    project_id: UUID
    org_id: UUID
    rows_deleted: dict[str, int] = Field(default_factory=dict, description="Rows deleted this run, per table")
    complete: bool = Field(default=False, description="Every table was seen without a row of the project")
    done: bool = Field(default=False, description="Marked purged by this run")


class PurgeReport(BaseModel):
    ran: bool = Field(description="False when another run held the lock (this one stopped)")
    projects: list[ProjectPurge]
    rows_deleted: int
    more_pending: bool = Field(description="Rows may be left (a bound was reached): the next run continues")
    seconds: float


class _LockHeld(Exception):
    """Another run holds the purge lock: this run stops."""


def _locked(cur: Cursor) -> None:
    cur.execute("select pg_try_advisory_xact_lock(%s) as got", (LOCK_KEY,))
    row = cur.fetchone()
    if not row or not row["got"]:
        raise _LockHeld


def project_exists(org_id: UUID, project_id: UUID) -> bool:
    """Whether the project is still there (the spool drain drops the batches of a deleted one)."""
    rows = execute_autocommit(
        "select exists (select 1 from public.projects where id = %s and org_id = %s) as present", (project_id, org_id)
    )
    return bool(rows and rows[0]["present"])


# The projects left to purge, oldest deletion first; an id that exists again in projects is never purged.
_PENDING_SQL = """
select d.project_id, d.org_id from public.deleted_projects d
where d.purged_at is null
  and not exists (select 1 from public.projects p where p.id = d.project_id)
  and (%(only)s::uuid[] is null or d.project_id = any(%(only)s::uuid[]))
order by d.deleted_at, d.project_id
limit %(limit)s
"""
# A batch's rows, grouped by the leaf (partition, or the table itself) they are in.
_PICK_SQL = """
with picked as (select tableoid, ctid from {table} where project_id = %(project)s limit %(limit)s)
select n.nspname as schema, c.relname as leaf, array_agg(p.ctid::text) as ctids
from picked p join pg_class c on c.oid = p.tableoid join pg_namespace n on n.oid = c.relnamespace
group by n.nspname, c.relname
"""
_DELETE_SQL = "delete from {leaf} where ctid = any(%(ctids)s::tid[]) and project_id = %(project)s"
_PROGRESS_SQL = """
update public.deleted_projects set rows_purged = rows_purged + %(rows)s, last_purged_at = now()
where project_id = %(project)s
"""
_DONE_SQL = """
update public.deleted_projects set purged_at = now()
where project_id = %(project)s and purged_at is null and deleted_at <= now() - %(grace)s::interval
  and not exists (select 1 from public.projects p where p.id = %(project)s)
returning org_id, rows_purged, deleted_at
"""


def _purge_batch(table: str, project_id: UUID, limit: int) -> tuple[int, int]:
    """One batch in its own transaction under the lock: (rows picked, rows deleted)."""
    with transaction() as cur:
        _locked(cur)
        cur.execute(
            sql.SQL(_PICK_SQL).format(table=sql.Identifier(*table.split("."))), {"project": project_id, "limit": limit}
        )
        groups = cur.fetchall()
        picked = deleted = 0
        for group in groups:
            picked += len(group["ctids"])
            cur.execute(
                sql.SQL(_DELETE_SQL).format(leaf=sql.Identifier(group["schema"], group["leaf"])),
                {"ctids": group["ctids"], "project": project_id},
            )
            deleted += cur.rowcount
        if deleted:
            cur.execute(_PROGRESS_SQL, {"rows": deleted, "project": project_id})
    return picked, deleted


def _mark_done(project: ProjectPurge, grace: timedelta) -> bool:
    with transaction() as cur:
        _locked(cur)
        cur.execute(_DONE_SQL, {"project": project.project_id, "grace": grace})
        row = cur.fetchone()
        if row is None:
            return False  # still in its grace period, or marked by an overlapping run
        audit.record(
            cur, None, "retention.project_purged", org_id=row["org_id"], target_type="project",
            target_id=project.project_id,
            details={"rows_purged": int(row["rows_purged"]), "deleted_at": row["deleted_at"].isoformat()},
        )  # fmt: skip
    return True


def _purge_project(project: ProjectPurge, budget: dict[str, int], batch_size: int, deadline: float) -> bool:
    """Delete the project's rows table by table within the budgets (spent as rows are picked); True when every
    table was seen without a row of the project."""
    complete = True
    for table in PURGE_TABLES:
        while True:
            limit = min(batch_size, budget[table])
            if limit == 0 or time.monotonic() > deadline:
                complete = False  # a bound was reached before the table was seen empty
                break
            picked, deleted = _purge_batch(table, project.project_id, limit)
            budget[table] -= picked
            if deleted:
                project.rows_deleted[table] = project.rows_deleted.get(table, 0) + deleted
            if picked < limit:
                break
    return complete


def run_purge(
    *,
    max_rows_per_table: int = MAX_ROWS_PER_TABLE,
    batch_size: int = BATCH_SIZE,
    max_projects: int = MAX_PROJECTS_PER_RUN,
    max_seconds: float = MAX_SECONDS,
    grace: timedelta = GRACE,
    project_ids: list[UUID] | None = None,
) -> PurgeReport:
    """One bounded run over the deleted projects not purged yet (``project_ids``: only those)."""
    if max_rows_per_table < 0 or batch_size < 1 or max_projects < 1:
        raise ValueError("max_rows_per_table must not be negative; batch_size and max_projects must be positive")
    started = time.monotonic()
    rows = execute_autocommit(_PENDING_SQL, {"only": project_ids, "limit": max_projects + 1})
    more_pending = len(rows) > max_projects
    report = PurgeReport(
        ran=True,
        projects=[ProjectPurge(project_id=r["project_id"], org_id=r["org_id"]) for r in rows[:max_projects]],
        rows_deleted=0,
        more_pending=more_pending,
        seconds=0.0,
    )
    budget = dict.fromkeys(PURGE_TABLES, max_rows_per_table)
    try:
        for project in report.projects:
            project.complete = _purge_project(project, budget, batch_size, started + max_seconds)
            if project.complete and not project.rows_deleted:
                project.done = _mark_done(project, grace)
            if not project.complete:
                report.more_pending = True
    except _LockHeld:
        report.ran = False
    report.rows_deleted = sum(sum(p.rows_deleted.values()) for p in report.projects)
    report.seconds = round(time.monotonic() - started, 3)
    return report
