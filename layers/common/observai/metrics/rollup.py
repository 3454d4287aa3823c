"""The aggregate-metrics job: raw points → 1-minute rollups → 5m → 1h → 1d, incremental by ingest time.

Every minute (EventBridge Scheduler), ``run_aggregation`` rolls up the points stored since the last run:

1. Under ``pg_try_advisory_xact_lock(LOCK_KEY)`` (an overlapping run skips), it reads the watermark
   (``metric_rollup_state``; first run: just before the oldest ``ingested_at``, or now − 8 days when there
   is no point) and takes the window (watermark, min(now() − lag_s, the bound that keeps it under
   max_points)]. ``ingested_at`` is the ingest transaction's start time (column default now()), and a
   transaction becomes visible at its commit: a point can appear with an ``ingested_at`` already behind
   the watermark if its transaction was open when the window was read. ``lag_s`` (120 s) is the bound:
   ingest transactions are far shorter (the statement timeout is 5 s and the idle-in-transaction timeout
   10 s, so an ingest transaction that stays open for 120 s is effectively impossible), and the window
   never reaches into the last ``lag_s`` seconds.
   A window never splits one ``ingested_at`` value (one ingest transaction): a single transaction larger than
   ``max_points`` is rolled up whole. A backlog's transactions are counted in one scan (``_Backlog``), and the
   windows of the runs that work through it are cut from that count.
2. The (series, 1-minute bucket) pairs touched by the window's points (late points included, whatever
   their time: they re-roll the old buckets they fall in) are found in numpy from the window's points, read with
   the BRIN index on ``ingested_at`` (``observai.metrics.touched``).
3. Every touched 1m bucket is recomputed FROM THE RAW POINTS: recomputing is idempotent, so a bucket rolled
   twice holds the same row (an unchanged row is not even rewritten). Contiguous touched buckets of a series form
   one range read with the series' index (the points are read once); the latest point before a range (within
   ANCHOR_LOOKBACK) anchors cumulative counters and histograms. A range with no 1m row yet (``fresh``: the usual
   case) is inserted plainly; the others (late points into rolled minutes) are upserted.
   - gauges and non-monotonic sums: count, sum, min, max, last (value of the latest point), sketch of the values;
   - monotonic sums: the same without sketch, plus ``increase``: delta temporality → the sum of the values;
     cumulative → the sum over consecutive points of (v − prev), or v when the counter reset (v < prev, or
     the point's start_time moved forward). The first point of a series with no point in the lookback
     counts whole when its start_time lies within the lookback (a new counter), else 0 (unknown baseline);
   - histograms, exponential histograms and summaries (in Python, ``observai.metrics.distributions``: the rule
     the query engine applies to raw points too): count, sum, min, max of the observations (delta: the points'
     own; cumulative: the difference from the previous point, reset-aware), and a sketch built from the buckets;
     summaries: count and sum only. They are written first.
   Gauges and sums take the vectorised pass (``observai.metrics.rollup_pass``): their points leave Postgres in one
   binary COPY, every level is computed in numpy, and the rows come back in one COPY and one statement per level.
4. The 5m, 1h and 1d buckets that contain a touched 1m bucket are recomputed from the next finer level only: the
   rows this pass just computed, plus the stored rows of the other slots of the coarse bucket (one primary-key probe
   each, their sketches parsed): count, sum and increase add (in bucket order), min/max, last of the latest;
   sketches by adding entries, collapsed once. A coarse row none of whose finer rows was stored before is inserted
   plainly too. For a group step of the run's own, the 1m sketch entries stay in the temp table rollup_e1.
5. Group rollups (``observai.metrics.groups``): the touched (metric, minute) pairs are queued, and the queue is
   worked off within the group step's own bound (rows and seconds per run; what is left waits for the next run):
   cross-series rows per metric and per value of its low-cardinality attributes, from the per-series 1m rows. The
   scheduled job leaves this to a group stage beside the per-series runs (``groups=False``,
   ``observai.metrics.pipeline``).
6. The watermark advances in the same transaction as the upserts: a crash loses nothing and doubles nothing.
   The report says whether more is pending (points after the window, or queued group work): the next run, or a
   loop in the caller, continues.

Why numpy (issue 17): in SQL the same work took a dozen statements over temp tables, each a few microseconds a row,
and the run was bound by Postgres' CPU. The rows are the same (tests/integration/test_rollup_equivalence.py compares
them with the job before issue 17, column by column).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from observai.db.connection import Cursor, transaction
from observai.metrics import rollup_pass, sketch_sql
from observai.metrics.distributions import ANCHOR_LOOKBACK, distribution_buckets
from observai.metrics.groups import GroupReport, roll_groups
from observai.metrics.touched import touched

# pg_try_advisory_xact_lock key of the aggregation (any fixed bigint, distinct from the other jobs').
LOCK_KEY = 0x0B5A1_0004  # distinct from usage.ROLLUP_LOCK_KEY (0003): the two jobs must not skip each other
# The group step's (step 5's queue work): a group run beside the per-series runs takes it, and so does a run's own
# group step; two never work the queue at once.
GROUP_LOCK_KEY = 0x0B5A1_0018
STATE_NAME = "metrics"
RESOLUTIONS: dict[int, str] = {60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}
DEFAULT_MAX_POINTS = 200_000
DEFAULT_LAG_S = 120
# The first run starts here when there is no point at all.
INITIAL_LOOKBACK = timedelta(days=8)
# Buckets are aligned on this origin (UTC midnight): a 1d bucket is a UTC day.
ORIGIN = "2000-01-01 00:00:00+00"
# The job's statements may run longer than the API's 5 s (the Lambda timeout is 60 s).
STATEMENT_TIMEOUT = "50s"
IDLE_IN_TRANSACTION_TIMEOUT = "30s"
# Sorts and hashes of a run (up to max_points points) stay in memory instead of spilling to disk.
WORK_MEM = "64MB"
# The run's temp tables (a few hundred thousand rows each) stay in the session's memory: at the default 8MB they
# spill to the file system, which cost 13 % of the run's server CPU. Postgres takes it only before the session's
# first temp table (``_session_temp_buffers``).
TEMP_BUFFERS = "256MB"


class AggregationReport(BaseModel):
    ran: bool  # False: another run held the lock
    points_read: int = 0
    buckets_touched: int = 0  # 1m buckets re-rolled
    # Per resolution ("1m", "5m", "1h", "1d"): rows inserted or changed.
    buckets_written: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(RESOLUTIONS.values(), 0))
    # Group rollups, per resolution: rows inserted or changed; (metric, minute) pairs recomputed.
    group_buckets_written: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(RESOLUTIONS.values(), 0))
    group_minutes: int = 0
    window_start: datetime | None = None
    watermark: datetime | None = None
    more_pending: bool = False
    seconds: float = 0.0


def run_aggregation(
    max_points: int = DEFAULT_MAX_POINTS, lag_s: float = DEFAULT_LAG_S, *, groups: bool = True
) -> AggregationReport:
    """One bounded run of the aggregation, in one transaction on the current connection."""
    with transaction() as cur:
        return aggregate(cur, max_points=max_points, lag_s=lag_s, groups=groups)


def run_group_rollups() -> GroupReport:
    """One bounded run of the group step alone (step 5: the queue worked off), in a transaction of its own: how the
    scheduled job runs it beside the per-series runs (``observai.metrics.pipeline``)."""
    with transaction() as cur:
        return roll_group_queue(cur)


def roll_group_queue(cur: Cursor) -> GroupReport:
    """The group step's run in the caller's transaction, under GROUP_LOCK_KEY (an overlapping one skips: ran=False):
    one chunk of the queue, so that the queue rows it holds are locked in one statement, in key order (a
    per-series run beside it locks them in the same order). The per-series sketches are parsed from the stored rows
    (no run's rollup_e1 here)."""
    _session_temp_buffers(cur)
    if not _begin(cur, GROUP_LOCK_KEY)["got"]:
        return GroupReport(ran=False)
    return roll_groups(cur, touched=False, max_chunks=1)


def aggregate(
    cur: Cursor, *, max_points: int = DEFAULT_MAX_POINTS, lag_s: float = DEFAULT_LAG_S, groups: bool = True
) -> AggregationReport:
    """The run, in the caller's transaction (commit it to keep the work; roll it back to drop it whole).
    ``groups=False``: step 5 only queues the touched minutes, for a group run beside this one
    (``run_group_rollups``); so does a run whose group step another session holds (GROUP_LOCK_KEY)."""
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    started = time.perf_counter()
    _session_temp_buffers(cur)
    row = _begin(cur, LOCK_KEY)
    if not row["got"]:
        return AggregationReport(ran=False)
    now: datetime = row["now"]
    watermark = _watermark(cur, now)
    report = AggregationReport(ran=True, window_start=watermark, watermark=watermark)
    upper = now - timedelta(seconds=lag_s)
    # The group step's lock first: the pass writes its 1m sketch entries (rollup_e1) only for a group step of its own.
    work = groups and _try_lock(cur, GROUP_LOCK_KEY)
    if watermark < upper:
        new_watermark, report.more_pending = _window_end(cur, watermark, upper, max_points)
        window = touched(cur, watermark, new_watermark)
        report.points_read, report.buckets_touched = window.points, window.minutes
        written = dict.fromkeys(RESOLUTIONS.values(), 0)
        if report.buckets_touched:
            # Histograms first (their 1m rows in Python), so that their coarse rows find them stored.
            distribution_minutes = _roll_distribution_minutes(cur)
            rows = rollup_pass.roll(cur, lookback_us=ANCHOR_LOOKBACK // timedelta(microseconds=1), entries=work)
            for resolution, label in RESOLUTIONS.items():
                written[label] = rows.get(resolution, 0)
            written["1m"] += distribution_minutes
            if work:
                _distribution_entries(cur)
                cur.execute("analyze rollup_e1")  # joined by the group rollups
        report.buckets_written = written
        cur.execute(
            "insert into public.metric_rollup_state as s (name, watermark, updated_at) values (%s, %s, now())"
            " on conflict (name) do update set watermark = excluded.watermark, updated_at = excluded.updated_at",
            (STATE_NAME, new_watermark),
        )
        report.watermark = new_watermark
    group_report = roll_groups(cur, touched=report.buckets_touched > 0, work=work)
    report.group_buckets_written, report.group_minutes = group_report.written, group_report.minutes
    report.more_pending = report.more_pending or group_report.more_pending
    report.seconds = time.perf_counter() - started
    return report


def _begin(cur: Cursor, lock_key: int) -> DictRow:
    """Try the run's advisory lock and set the run's limits (statement and idle timeouts, work_mem) for the
    transaction: ``got`` and ``now``."""
    cur.execute(
        "select pg_try_advisory_xact_lock(%s) as got, set_config('statement_timeout', %s, true),"
        " set_config('idle_in_transaction_session_timeout', %s, true), set_config('work_mem', %s, true),"
        " now() as now",
        (lock_key, STATEMENT_TIMEOUT, IDLE_IN_TRANSACTION_TIMEOUT, WORK_MEM),
    )
    row = cur.fetchone()
    assert row is not None
    return row


def _try_lock(cur: Cursor, lock_key: int) -> bool:
    cur.execute("select pg_try_advisory_xact_lock(%s) as got", (lock_key,))
    row = cur.fetchone()
    return bool(row and row["got"])


def _session_temp_buffers(cur: Cursor) -> None:
    """Raise the session's temp_buffers to TEMP_BUFFERS (memory is taken only as temp tables need it), in a
    savepoint: Postgres refuses once the session has used a temp table (an earlier run on this connection already
    set it; another client's session behind a pooler keeps its own), and the run goes on either way."""
    try:
        with cur.connection.transaction():
            cur.execute("select set_config('temp_buffers', %s, false)", (TEMP_BUFFERS,))
    except psycopg.errors.InvalidParameterValue:
        pass  # the session's temp tables exist already: the setting stays what it is


# --- 1. the window ---------------------------------------------------------------------------------------------


def _watermark(cur: Cursor, now: datetime) -> datetime:
    cur.execute("select watermark from public.metric_rollup_state where name = %s", (STATE_NAME,))
    row = cur.fetchone()
    if row is not None:
        return row["watermark"]
    # First run: one full scan of ingested_at (BRIN cannot answer min()); never again afterwards.
    cur.execute("select min(ingested_at) - interval '1 microsecond' as first from public.metric_points")
    first = cur.fetchone()
    if first is None or first["first"] is None:
        return now - INITIAL_LOOKBACK
    return first["first"]


@dataclass
class _Backlog:
    """The ingest transactions (ingested_at, points) in (lower, upper] of one database, in order, as one scan saw
    them."""

    database: tuple[Any, ...]
    lower: datetime
    upper: datetime
    transactions: list[tuple[datetime, int]]


# The last scan's backlog: while a run after run works through a backlog, each window's end comes from it, instead of
# a scan of the whole remaining backlog per window (quadratic in its size: a week of points caught up took a fifth
# of the job's time). Sound because no transaction appears at or before a bound the job has used (the lag bound,
# above); points deleted since only make a window smaller.
_backlog: _Backlog | None = None
# At most this many transactions are kept (the scan's upper bound is then the last one's ingested_at).
BACKLOG_TRANSACTIONS = 100_000


def _window_end(cur: Cursor, watermark: datetime, upper: datetime, max_points: int) -> tuple[datetime, bool]:
    """The end of the window and whether points remain after it: the largest ingested_at that keeps the window
    at max_points or fewer (never splitting one ingested_at value: one transaction of more than max_points points
    is taken whole), else ``upper``. From the last backlog scan when it covers the window, else from a new one."""
    global _backlog
    info = cur.connection.info
    database = (info.host, info.port, info.dbname)
    known = _backlog
    if known is not None and (known.database != database or watermark < known.lower):
        known = None  # another database's, or from after this watermark (the state was reset)
    end = None if known is None else _cut(known.transactions, watermark, min(upper, known.upper), max_points)
    if known is None or (end is None and known.upper < upper):
        known = _backlog = _scan_backlog(cur, database, watermark, upper)
        end = _cut(known.transactions, watermark, min(upper, known.upper), max_points)
    if end is not None:
        return end, True
    if known.upper < upper:  # the scan stopped at BACKLOG_TRANSACTIONS: the rest waits for the next run
        return known.upper, True
    return upper, False


def _scan_backlog(cur: Cursor, database: tuple[Any, ...], watermark: datetime, upper: datetime) -> _Backlog:
    """The ingest transactions in (watermark, upper], the first BACKLOG_TRANSACTIONS of them."""
    cur.execute(
        "select ingested_at, count(*) as points from public.metric_points"
        " where ingested_at > %(watermark)s and ingested_at <= %(upper)s"
        " group by ingested_at order by ingested_at limit %(limit)s",
        {"watermark": watermark, "upper": upper, "limit": BACKLOG_TRANSACTIONS + 1},
    )
    transactions = [(row["ingested_at"], int(row["points"])) for row in cur.fetchall()]
    if len(transactions) > BACKLOG_TRANSACTIONS:
        transactions = transactions[:BACKLOG_TRANSACTIONS]
        return _Backlog(database, watermark, transactions[-1][0], transactions)
    return _Backlog(database, watermark, upper, transactions)


def _cut(transactions: list[tuple[datetime, int]], watermark: datetime, upper: datetime, max_points: int
         ) -> datetime | None:  # fmt: skip
    """Where a window from ``watermark`` ends when its transactions up to ``upper`` hold more than max_points
    points (the last transaction that keeps it at max_points, or the first one whole); None when they do not."""
    total = 0
    previous: datetime | None = None
    for ingested_at, points in transactions[bisect.bisect_right(transactions, (watermark, 2**63)) :]:
        if ingested_at > upper:
            return None
        total += points
        if total > max_points:
            return previous or ingested_at
        previous = ingested_at
    return None


# --- 3. and 4. the rows of every level ---------------------------------------------------------------------------

# A rollup row's upsert (``{select}``: the rows); an unchanged row is not rewritten. Also the vectorised pass's.
UPSERT_SQL = """
insert into public.metric_rollups as r
    (org_id, project_id, series_id, resolution, bucket_start, count, sum, min, max, last, last_time, increase,
     sketch, updated_at)
{select}
on conflict (project_id, series_id, resolution, bucket_start) do update set
    org_id = excluded.org_id, count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max,
    last = excluded.last, last_time = excluded.last_time, increase = excluded.increase, sketch = excluded.sketch,
    updated_at = excluded.updated_at
where (r.org_id, r.count, r.sum, r.min, r.max, r.last, r.last_time, r.increase, r.sketch)
    is distinct from (excluded.org_id, excluded.count, excluded.sum, excluded.min, excluded.max, excluded.last,
                      excluded.last_time, excluded.increase, excluded.sketch)
"""


_DISTRIBUTION_POINTS_SQL = """
select g.org_id, g.project_id, g.series_id, g.range_start, g.type, g.temporality,
    p.time, p.start_time, p.count, p.sum, p.min, p.max, p.distribution, false as anchor
from rollup_ranges g
cross join lateral (
    select p.time, p.start_time, p.count, p.sum, p.min, p.max, p.distribution from public.metric_points p
    where p.project_id = g.project_id and p.series_id = g.series_id
        and p.time >= g.range_start and p.time < g.range_end
    offset 0  -- never flattened: one index range read per series range
) p
where g.kind = 'distribution'
union all
select g.org_id, g.project_id, g.series_id, g.range_start, g.type, g.temporality,
    a.time, a.start_time, a.count, a.sum, a.min, a.max, a.distribution, true
from rollup_ranges g
cross join lateral (
    select p.time, p.start_time, p.count, p.sum, p.min, p.max, p.distribution from public.metric_points p
    where p.project_id = g.project_id and p.series_id = g.series_id
        and p.time < g.range_start and p.time >= g.range_start - %(lookback)s
    order by p.time desc limit 1
) a
where g.kind = 'distribution' and (g.type = 'summary' or g.temporality is distinct from 'delta')
order by project_id, series_id, range_start, time, anchor
"""

_DISTRIBUTION_UPSERT_SQL = UPSERT_SQL.format(
    select="""
select u.org_id, u.project_id, u.series_id, 60, u.bucket_start, u.count, u.sum, u.min, u.max, null, u.last_time,
    null, u.sketch, now()
from unnest(%(org_id)s::uuid[], %(project_id)s::uuid[], %(series_id)s::bigint[], %(bucket_start)s::timestamptz[],
    %(count)s::bigint[], %(sum)s::float8[], %(min)s::float8[], %(max)s::float8[], %(last_time)s::timestamptz[],
    %(sketch)s::jsonb[]) as u(org_id, project_id, series_id, bucket_start, count, sum, min, max, last_time, sketch)
"""
)


def _roll_distribution_minutes(cur: Cursor) -> int:
    """Histograms, exponential histograms and summaries: bucket arithmetic in Python, one upsert."""
    cur.execute(_DISTRIBUTION_POINTS_SQL, {"lookback": ANCHOR_LOOKBACK})
    buckets = distribution_buckets(cur.fetchall())
    if not buckets:
        return 0
    cur.execute(
        _DISTRIBUTION_UPSERT_SQL,
        {
            "org_id": [b.org_id for b in buckets],
            "project_id": [b.project_id for b in buckets],
            "series_id": [b.series_id for b in buckets],
            "bucket_start": [b.bucket_start for b in buckets],
            "count": [b.count for b in buckets],
            "sum": [b.sum for b in buckets],
            "min": [b.min for b in buckets],
            "max": [b.max for b in buckets],
            "last_time": [b.last_time for b in buckets],
            "sketch": [Jsonb(b.sketch.to_json()) if b.sketch.count else None for b in buckets],
        },
    )
    return max(cur.rowcount, 0)


def _distribution_entries(cur: Cursor) -> None:
    """The sketch entries of the distribution buckets just written, added to rollup_e1 (few: histograms)."""
    cur.execute(
        f"""
        insert into rollup_e1 (project_id, series_id, bucket_start, store, idx, n)
        select r.project_id, r.series_id, r.bucket_start, k.store, k.idx, k.n
        from rollup_distribution_minutes t
        join public.metric_rollups r on r.project_id = t.project_id and r.series_id = t.series_id
            and r.resolution = 60 and r.bucket_start = t.bucket_start
        {sketch_sql.entries_of("r")}
        where r.sketch is not null
        """
    )
