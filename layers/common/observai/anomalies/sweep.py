"""The sweep of scored points (``anomaly_points``), at the end of every detect-anomalies run: the API never
deletes them in its transaction, and the job's per-detector writes never wait on a delete.

Two kinds of points go, in bounded batches, each batch its own transaction:

* **dropped**: a detector's points below its ``generation``. A new query, new settings or interval (a baseline
  reset) and a delete bump the detector's generation in the API's transaction; the reads show a detector's points
  of its current generation only, so the older ones are invisible at once. The sweep deletes them a batch at a time
  (through the ``(detector_id, time)`` index) and, once none is left, records ``swept_generation``.
* **expired**: points older than ``RETENTION`` (30 days) of every detector, enabled or not, deleted or not.

Bounded (``max_batches`` batches of ``batch_size`` rows, no batch started after ``max_seconds``), resumable (what is
left is found again by the next run), idempotent (a row is deleted by its key, and only while it still qualifies:
a point a reset's backfill rewrote at the new generation is never deleted), and overlap-safe (each batch takes
``pg_try_advisory_xact_lock(LOCK_KEY)``; a sweep that does not get it stops). The points of a deleted project are
the purge's (observai.retention.purge, PURGE_TABLES). See docs/anomalies-job.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from pydantic import BaseModel

from observai.db.connection import Cursor, transaction

LOCK_KEY = 0x0A40_A1E5_0045
RETENTION = timedelta(days=30)
BATCH_SIZE = 5_000
MAX_BATCHES = 20  # 100,000 rows a run at most


class SweepReport(BaseModel):
    ran: bool = True  # False: another sweep held the lock
    batches: int = 0
    deleted: int = 0
    dropped: int = 0  # of an older generation
    expired: int = 0  # older than RETENTION
    more: bool = False  # a bound was reached: the next run goes on


_STALE_SQL = (
    "select id, generation from public.anomaly_detectors where swept_generation < generation"
    " and (%(projects)s::uuid[] is null or project_id = any(%(projects)s)) order by updated_at, id limit 1"
)
_DROP_SQL = (
    "with old as (select series_id, time from public.anomaly_points where detector_id = %(detector)s"
    " and generation < %(generation)s limit %(limit)s),"
    " gone as (delete from public.anomaly_points a using old where a.series_id = old.series_id"
    " and a.time = old.time and a.detector_id = %(detector)s and a.generation < %(generation)s returning 1)"
    " select (select count(*) from old) as picked, (select count(*) from gone) as deleted"
)
_SWEPT_SQL = (
    "update public.anomaly_detectors set swept_generation = %(generation)s"
    " where id = %(detector)s and swept_generation < %(generation)s"
)
# One index probe per detector ((detector_id, time)): cheap when it has nothing that old.
_EXPIRE_SQL = (
    "with old as (select p.series_id, p.time from public.anomaly_detectors d cross join lateral ("
    " select series_id, time from public.anomaly_points where detector_id = d.id and time < %(cutoff)s"
    " limit %(limit)s) p where (%(projects)s::uuid[] is null or d.project_id = any(%(projects)s)) limit %(limit)s),"
    " gone as (delete from public.anomaly_points a using old where a.series_id = old.series_id"
    " and a.time = old.time and a.time < %(cutoff)s returning 1)"
    " select (select count(*) from old) as picked, (select count(*) from gone) as deleted"
)


def _locked(cur: Cursor) -> bool:
    cur.execute("select pg_try_advisory_xact_lock(%s) as got", (LOCK_KEY,))
    row = cur.fetchone()
    return bool(row and row["got"])


def sweep(
    now: datetime,
    *,
    project_ids: Sequence[UUID] | None = None,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
    max_seconds: float = 20.0,
) -> SweepReport:
    """Delete dropped, then expired, scored points: at most ``max_batches`` batches (of ``project_ids``' detectors
    only, when given)."""
    clock = time.perf_counter()
    report = SweepReport()
    projects = list(project_ids) if project_ids is not None else None
    expired_done = False
    while True:
        if report.batches >= max_batches or (report.batches and time.perf_counter() - clock > max_seconds):
            report.more = True
            return report
        with transaction() as cur:
            if not _locked(cur):
                report.ran = False
                return report
            cur.execute(_STALE_SQL, {"projects": projects})
            stale = cur.fetchone()
            if stale is not None:
                params = {"detector": stale["id"], "generation": stale["generation"], "limit": batch_size}
                cur.execute(_DROP_SQL, params)
                row = cur.fetchone()
                assert row is not None
                report.dropped += int(row["deleted"])
                if int(row["picked"]) < batch_size:
                    cur.execute(_SWEPT_SQL, params)
            elif not expired_done:
                cur.execute(_EXPIRE_SQL, {"cutoff": now - RETENTION, "limit": batch_size, "projects": projects})
                row = cur.fetchone()
                assert row is not None
                report.expired += int(row["deleted"])
                expired_done = int(row["picked"]) < batch_size
            else:
                return report
        report.batches += 1
        report.deleted = report.dropped + report.expired
