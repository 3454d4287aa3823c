"""Hourly housekeeping: prune idle rate-limit buckets and long-dead API keys.

Idempotent (deleting what is already gone is a no-op), safe when two runs overlap (a transaction-level
advisory lock: the second run skips), bounded per run (batches of BATCH_SIZE, at most MAX_BATCHES),
and it resumes next run where it stopped because it always deletes the oldest rows first.
"""

from __future__ import annotations

from pydantic import BaseModel

from observai.db.connection import transaction

LOCK_KEY = 0x0B5A1_0001
BATCH_SIZE = 5000
MAX_BATCHES = 20
# A bucket idle this long has refilled completely: deleting it changes nothing for its owner.
IDLE_BUCKET_AGE = "1 hour"
# Revoked or expired keys are kept this long for the audit trail and listings, then removed.
DEAD_KEY_AGE = "90 days"


class HousekeepingReport(BaseModel):
    ran: bool
    buckets_deleted: int = 0
    keys_deleted: int = 0
    more_pending: bool = False


def _delete_batch(sql: str) -> tuple[bool, int]:
    with transaction() as cur:
        cur.execute("select pg_try_advisory_xact_lock(%s) as got", (LOCK_KEY,))
        row = cur.fetchone()
        if not row or not row["got"]:
            return False, 0
        cur.execute(sql, {"limit": BATCH_SIZE})
        return True, cur.rowcount


_BUCKETS_SQL = f"""
delete from public.rate_limit_buckets where key in (
    select key from public.rate_limit_buckets where updated_at < now() - interval '{IDLE_BUCKET_AGE}'
    order by updated_at limit %(limit)s for update skip locked)
"""
_KEYS_SQL = f"""
delete from public.api_keys where id in (
    select id from public.api_keys
    where coalesce(revoked_at, expires_at) < now() - interval '{DEAD_KEY_AGE}'
    order by coalesce(revoked_at, expires_at) limit %(limit)s for update skip locked)
"""


def run_housekeeping() -> HousekeepingReport:
    report = HousekeepingReport(ran=True)
    for sql, field in ((_BUCKETS_SQL, "buckets_deleted"), (_KEYS_SQL, "keys_deleted")):
        for _ in range(MAX_BATCHES):
            got_lock, deleted = _delete_batch(sql)
            if not got_lock:
                return HousekeepingReport(ran=False)
            setattr(report, field, getattr(report, field) + deleted)
            if deleted < BATCH_SIZE:
                break
        else:
            report.more_pending = True
    return report
