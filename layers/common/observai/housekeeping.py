"""Hourly housekeeping: prune idle rate-limit buckets, long-dead API keys and long-deleted alert rules.

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
# Deleted alert rules are kept (soft-deleted) while the router may still need them, and this long for the
# listings of history; then the rule and its alert instances go. Their versions stay: incidents show them.
DELETED_RULE_AGE = "30 days"


class HousekeepingReport(BaseModel):
    ran: bool
    buckets_deleted: int = 0
    keys_deleted: int = 0
    rules_deleted: int = 0
    more_pending: bool = False


def _delete_batch(sql: str) -> tuple[bool, int]:
    with transaction() as cur:
        cur.execute("select pg_try_advisory_xact_lock(%s) as got", (LOCK_KEY,))
        row = cur.fetchone()
        if not row or not row["got"]:
            return False, 0
        cur.execute(sql, {"limit": BATCH_SIZE})
        return True, cur.rowcount


# Each batch's rows are picked in a materialized CTE (evaluated once) and deleted by join: the batch is those rows
# and no more, whatever the plan (``id in (select ... limit n for update skip locked)`` was seen deleting more).
_BUCKETS_SQL = f"""
with picked as materialized (
    select key from public.rate_limit_buckets where updated_at < now() - interval '{IDLE_BUCKET_AGE}'
    order by updated_at limit %(limit)s for update skip locked
)
delete from public.rate_limit_buckets b using picked p where b.key = p.key
"""
_KEYS_SQL = f"""
with picked as materialized (
    select id from public.api_keys
    where coalesce(revoked_at, expires_at) < now() - interval '{DEAD_KEY_AGE}'
    order by coalesce(revoked_at, expires_at) limit %(limit)s for update skip locked
)
delete from public.api_keys k using picked p where k.id = p.id
"""

# Only once every transition of the rule has been routed: its resolved notifications were decided.
_RULES_SQL = f"""
with picked as materialized (
    select r.id from public.alert_rules r
    where r.deleted_at < now() - interval '{DELETED_RULE_AGE}'
      and not exists (select 1 from public.alert_transitions t where t.rule_id = r.id and t.routed_at is null)
    order by r.deleted_at limit %(limit)s for update skip locked
)
delete from public.alert_rules r using picked p where r.id = p.id
"""


def run_housekeeping() -> HousekeepingReport:
    report = HousekeepingReport(ran=True)
    jobs = ((_BUCKETS_SQL, "buckets_deleted"), (_KEYS_SQL, "keys_deleted"), (_RULES_SQL, "rules_deleted"))
    for sql, field in jobs:
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
