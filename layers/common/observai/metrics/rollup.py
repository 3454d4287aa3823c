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
   ``max_points`` is rolled up whole.
2. The (series, 1-minute bucket) pairs touched by the window's points (late points included, whatever
   their time: they re-roll the old buckets they fall in) are collected, with the BRIN index on
   ``ingested_at``.
3. Every touched 1m bucket is recomputed FROM THE RAW POINTS: recomputing is idempotent, so a bucket rolled
   twice holds the same row (an unchanged row is not even rewritten). Contiguous touched buckets of a series form
   one range read with the series' index (rollup_pts: the points are read once); the latest point before a range
   (within ANCHOR_LOOKBACK) anchors cumulative counters and histograms. A range with no 1m row yet (``fresh``: the
   usual case) is inserted plainly; the others (late points into rolled minutes) are upserted.
   - gauges and non-monotonic sums: count, sum, min, max, last (value of the latest point), sketch of the values;
   - monotonic sums: the same without sketch, plus ``increase``: delta temporality → the sum of the values;
     cumulative → the sum over consecutive points of (v − prev), or v when the counter reset (v < prev, or
     the point's start_time moved forward). The first point of a series with no point in the lookback
     counts whole when its start_time lies within the lookback (a new counter), else 0 (unknown baseline);
   - histograms, exponential histograms and summaries (in Python, ``observai.metrics.distributions``: the rule
     the query engine applies to raw points too): count, sum, min, max of the observations (delta: the points'
     own; cumulative: the difference from the previous point, reset-aware), and a sketch built from the buckets;
     summaries: count and sum only.
   Sketches are built and merged in SQL as rows of entries (``observai.metrics.sketch_sql``): rollup_e1 holds the
   entries of every 1m bucket the run recomputed; a bucket whose values share one sketch bucket (a point a minute)
   gets its sketch straight from the scalar pass.
4. The 5m, 1h and 1d buckets that contain a touched 1m bucket are recomputed from the next finer level only: the
   rows this run just computed (rollup_m1, rollup_c<res>) and their entries, plus the stored rows of the other slots
   of the coarse bucket (one primary-key probe each; their sketches parsed in SQL): count, sum and increase add (in
   bucket order), min/max, last of the latest; sketches by adding entries, collapsed once.
5. Group rollups (``observai.metrics.groups``): the touched (metric, minute) pairs are queued, and the queue is
   worked off within the group step's own bound (rows and seconds per run; what is left waits for the next run):
   cross-series rows per metric and per value of its low-cardinality attributes, from the per-series 1m rows.
6. The watermark advances in the same transaction as the upserts: a crash loses nothing and doubles nothing.
   The report says whether more is pending (points after the window, or queued group work): the next run, or a
   loop in the caller, continues.

Everything but the histogram arithmetic is in SQL, in the run's transaction: the sketches never travel to Python
(until issue 17 the coarser levels and the groups merged them there, parsing JSON and adding dicts: a fifth of the
job's CPU; the answers are the same, tests/integration/test_rollup_equivalence.py compares the two jobs).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from observai.db.connection import Cursor, transaction
from observai.metrics import sketch_sql
from observai.metrics.distributions import ANCHOR_LOOKBACK, distribution_buckets
from observai.metrics.groups import roll_groups
from observai.metrics.sketch import LOG_GAMMA, ZERO_THRESHOLD

# pg_try_advisory_xact_lock key of the aggregation (any fixed bigint, distinct from the other jobs').
LOCK_KEY = 0x0B5A1_0004  # distinct from usage.ROLLUP_LOCK_KEY (0003): the two jobs must not skip each other
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


def run_aggregation(max_points: int = DEFAULT_MAX_POINTS, lag_s: float = DEFAULT_LAG_S) -> AggregationReport:
    """One bounded run of the aggregation, in one transaction on the container's connection."""
    with transaction() as cur:
        return aggregate(cur, max_points=max_points, lag_s=lag_s)


def aggregate(cur: Cursor, *, max_points: int = DEFAULT_MAX_POINTS, lag_s: float = DEFAULT_LAG_S) -> AggregationReport:
    """The run, in the caller's transaction (commit it to keep the work; roll it back to drop it whole)."""
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    started = time.perf_counter()
    cur.execute(
        "select pg_try_advisory_xact_lock(%s) as got, set_config('statement_timeout', %s, true),"
        " set_config('idle_in_transaction_session_timeout', %s, true), set_config('work_mem', %s, true),"
        " now() as now",
        (LOCK_KEY, STATEMENT_TIMEOUT, IDLE_IN_TRANSACTION_TIMEOUT, WORK_MEM),
    )
    row = cur.fetchone()
    assert row is not None
    if not row["got"]:
        return AggregationReport(ran=False)
    now: datetime = row["now"]
    watermark = _watermark(cur, now)
    report = AggregationReport(ran=True, window_start=watermark, watermark=watermark)
    upper = now - timedelta(seconds=lag_s)
    if watermark < upper:
        new_watermark, report.more_pending = _window_end(cur, watermark, upper, max_points)
        report.points_read, report.buckets_touched = _touched(cur, watermark, new_watermark)
        written = dict.fromkeys(RESOLUTIONS.values(), 0)
        if report.buckets_touched:
            written["1m"] = _roll_scalar_minutes(cur) + _roll_distribution_minutes(cur)
            _distribution_entries(cur)
            cur.execute("analyze rollup_e1")  # joined by the coarser levels and the group rollups
            fine = 60
            for coarse in (300, 3600, 86400):
                written[RESOLUTIONS[coarse]] = _roll_coarse(cur, fine, coarse)
                fine = coarse
        report.buckets_written = written
        cur.execute(
            "insert into public.metric_rollup_state as s (name, watermark, updated_at) values (%s, %s, now())"
            " on conflict (name) do update set watermark = excluded.watermark, updated_at = excluded.updated_at",
            (STATE_NAME, new_watermark),
        )
        report.watermark = new_watermark
    groups = roll_groups(cur, touched=report.buckets_touched > 0)
    report.group_buckets_written, report.group_minutes = groups.written, groups.minutes
    report.more_pending = report.more_pending or groups.more_pending
    report.seconds = time.perf_counter() - started
    return report


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


def _window_end(cur: Cursor, watermark: datetime, upper: datetime, max_points: int) -> tuple[datetime, bool]:
    """The end of the window and whether points remain after it: the largest ingested_at that keeps the window
    at max_points or fewer (never splitting one ingested_at value), else ``upper``."""
    cur.execute(
        """
        with firsts as (
            select ingested_at from public.metric_points
            where ingested_at > %(watermark)s and ingested_at <= %(upper)s
            order by ingested_at limit %(limit)s
        ), summary as (
            select count(*) as n, max(ingested_at) as last from firsts
        )
        select n, last, (select max(f.ingested_at) from firsts f where f.ingested_at < summary.last) as before_last
        from summary
        """,
        {"watermark": watermark, "upper": upper, "limit": max_points + 1},
    )
    row = cur.fetchone()
    assert row is not None
    if row["n"] <= max_points:
        return upper, False
    # The (max_points+1)-th point's ingested_at is left for the next run, unless it is the only value
    # (one transaction of more than max_points points is taken whole).
    return (row["before_last"] or row["last"]), True


# --- 2. what the window touched --------------------------------------------------------------------------------


def _touched(cur: Cursor, watermark: datetime, new_watermark: datetime) -> tuple[int, int]:
    """Temp tables of the touched 1m buckets (with the series' kind) and of their contiguous ranges."""
    cur.execute(
        f"""
        create temp table rollup_touched on commit drop as
        select t.org_id, t.project_id, t.series_id, t.bucket_start, t.points, s.name, s.type, s.temporality,
            case
                when s.type = 'sum' and s.monotonic and s.temporality = 'delta' then 'delta_counter'
                when s.type = 'sum' and s.monotonic then 'counter'
                when s.type in ('gauge', 'sum') then 'gauge'
                else 'distribution'
            end as kind
        from (
            select p.org_id, p.project_id, p.series_id,
                date_bin(interval '60 seconds', p.time, timestamptz '{ORIGIN}') as bucket_start, count(*) as points
            from public.metric_points p
            where p.ingested_at > %(watermark)s and p.ingested_at <= %(new_watermark)s
            group by 1, 2, 3, 4
        ) t
        join public.metric_series s on s.project_id = t.project_id and s.series_id = t.series_id
        """,
        {"watermark": watermark, "new_watermark": new_watermark},
    )
    # Contiguous runs of touched minutes per series (gaps and islands): one index range read each.
    cur.execute(
        """
        create temp table rollup_ranges on commit drop as
        select r.*, not exists (
            select 1 from public.metric_rollups m
            where m.project_id = r.project_id and m.series_id = r.series_id and m.resolution = 60
                and m.bucket_start >= r.range_start and m.bucket_start < r.range_end
        ) as fresh
        from (
            select org_id, project_id, series_id, kind, type, temporality,
                min(bucket_start) as range_start, max(bucket_start) + interval '60 seconds' as range_end
            from (
                select *, bucket_start - interval '60 seconds'
                    * row_number() over (partition by project_id, series_id order by bucket_start) as island
                from rollup_touched
            ) t
            group by org_id, project_id, series_id, kind, type, temporality, island
        ) r
        """
    )
    cur.execute("analyze rollup_touched")
    cur.execute("analyze rollup_ranges")
    # Points read: those of the window (including any whose series is missing, which roll into nothing).
    cur.execute(
        "select count(*) as buckets, coalesce(sum(points), 0)::bigint as points from rollup_touched",
    )
    row = cur.fetchone()
    assert row is not None
    return int(row["points"]), int(row["buckets"])


# --- 3. 1-minute buckets from the raw points -------------------------------------------------------------------

_FINITE = "(v.value is not null and v.value <> 'NaN' and v.value <> 'Infinity' and v.value <> '-Infinity')"
# A gauge value's sketch entry (store and index; sketch.Sketch.add's rule, with the same float formula).
_STORE = f"case when abs(v.value) < {ZERO_THRESHOLD!r} then 'z' when v.value > 0 then 'p' else 'n' end"
_INDEX = f"case when abs(v.value) < {ZERO_THRESHOLD!r} then 0 else ceil(ln(abs(v.value)) / {LOG_GAMMA!r})::integer end"

# The points of the touched ranges (scalar kinds), read once: one index range read per series range (offset 0:
# never flattened, whatever the statistics say), and for counters the latest point before each range (the anchor).
_POINTS_SQL = f"""
create temp table rollup_pts on commit drop as
select g.org_id, g.project_id, g.series_id, g.range_start, g.kind, g.fresh,
    date_bin(interval '60 seconds', p.time, timestamptz '{ORIGIN}') as bucket_start,
    p.time, p.start_time, p.value, false as anchor
from rollup_ranges g
cross join lateral (
    select p.time, p.start_time, p.value from public.metric_points p
    where p.project_id = g.project_id and p.series_id = g.series_id
        and p.time >= g.range_start and p.time < g.range_end
    offset 0
) p
where g.kind <> 'distribution'
union all
select g.org_id, g.project_id, g.series_id, g.range_start, g.kind, g.fresh, g.range_start, a.time, a.start_time,
    a.value, true
from rollup_ranges g
cross join lateral (
    select p.time, p.start_time, p.value from public.metric_points p
    where p.project_id = g.project_id and p.series_id = g.series_id
        and p.time < g.range_start and p.time >= g.range_start - %(lookback)s
    order by p.time desc limit 1
) a
where g.kind = 'counter'
"""

# Per touched 1m bucket: the scalars (sums in time order, as ever), and the sketch when all its values share one
# (store, index) (a single point, or equal ones: the common case), else the mark that rollup_s1 holds it. Only
# counters need the previous point (lag): the other kinds skip that sort.
_MINUTES_SQL = f"""
create temp table rollup_m1 on commit drop as
with v as (
    select p.*, lag(p.value) over w as prev_value, lag(p.start_time) over w as prev_start
    from rollup_pts p
    where p.kind = 'counter'
    window w as (partition by p.project_id, p.series_id, p.range_start order by p.time, p.anchor)
    union all
    select p.*, null::float8, null::timestamptz from rollup_pts p where p.kind <> 'counter'
),
inc as (
    select v.*,
        case
            when v.kind <> 'counter' or v.anchor or not {_FINITE} then null
            when v.prev_value is null then
                case when v.start_time is not null and v.start_time >= v.time - %(lookback)s then v.value else 0 end
            when v.value < v.prev_value
                or (v.start_time is not null and v.prev_start is not null and v.start_time > v.prev_start)
                then v.value
            else v.value - v.prev_value
        end as delta,
        case when v.kind = 'gauge' and {_FINITE} then {_STORE} end as sk_store,
        case when v.kind = 'gauge' and {_FINITE} then {_INDEX} end as sk_idx
    from v
)
select org_id, project_id, series_id, bucket_start, kind, fresh,
    count(*) as count,
    sum(value order by time) filter (where {_FINITE}) as sum,
    min(value) filter (where {_FINITE}) as min,
    max(value) filter (where {_FINITE}) as max,
    -- Every ordered aggregate in time order: the input is sorted once, not per bucket.
    (array_agg(value order by time))[count(*)] as last,
    max(time) as last_time,
    case kind
        when 'counter' then coalesce(sum(delta order by time), 0)
        when 'delta_counter' then coalesce(sum(value order by time) filter (where {_FINITE}), 0)
    end as increase,
    count(sk_store)::bigint as sk_n,
    min(sk_store) as sk_store,
    min(sk_store) is not distinct from max(sk_store) and min(sk_idx) is not distinct from max(sk_idx) as sk_single,
    min(sk_idx) as sk_idx
from inc v
where not anchor
group by org_id, project_id, series_id, bucket_start, kind, fresh
"""

# The sketch entries of every touched gauge bucket (the coarser levels and the group rollups start from them).
_ENTRIES_1M_SQL = f"""
create temp table rollup_e1 on commit drop as
select v.project_id, v.series_id, v.bucket_start, {_STORE} as store, {_INDEX} as idx, count(*)::bigint as n
from rollup_pts v
where v.kind = 'gauge' and not v.anchor and {_FINITE}
group by 1, 2, 3, 4, 5
"""

# The sketches of the buckets with more than one (store, index).
_SKETCHES_1M_SQL = f"""
create temp table rollup_s1 on commit drop as
select project_id, series_id, bucket_start, {sketch_sql.BUILD} as sketch, {sketch_sql.OVERFLOW} as overflow
from rollup_e1
group by project_id, series_id, bucket_start
having count(*) > 1
"""

_UPSERT = """
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

# A single-entry sketch written straight from the bucket's row (no aggregation of entries).
_SINGLE_SKETCH = """('{"p":{' || case when m.sk_store = 'p' then '"' || m.sk_idx || '":' || m.sk_n else '' end
    || '},"n":{' || case when m.sk_store = 'n' then '"' || m.sk_idx || '":' || m.sk_n else '' end
    || '},"z":' || case when m.sk_store = 'z' then m.sk_n else 0 end || '}')::jsonb"""

_MINUTE_ROWS = f"""
select m.org_id, m.project_id, m.series_id, 60, m.bucket_start, m.count, m.sum, m.min, m.max, m.last, m.last_time,
    m.increase,
    case when m.sk_n = 0 then null when m.sk_single then {_SINGLE_SKETCH} else s.sketch end,
    now()
from rollup_m1 m
left join rollup_s1 s on s.project_id = m.project_id and s.series_id = m.series_id and s.bucket_start = m.bucket_start
where {{where}}
"""

# Ranges with no 1m row yet (``fresh``: the usual case, points of the last minutes) are plainly inserted: no row can
# conflict (the advisory lock keeps other runs out); the others (late points into rolled minutes) are upserted.
_INSERT_FRESH_MINUTES_SQL = (
    "insert into public.metric_rollups as r (org_id, project_id, series_id, resolution, bucket_start, count, sum,"
    " min, max, last, last_time, increase, sketch, updated_at)" + _MINUTE_ROWS.replace("{where}", "m.fresh")
)
_UPSERT_MINUTES_SQL = _UPSERT.format(select=_MINUTE_ROWS.replace("{where}", "not m.fresh"))


def _roll_scalar_minutes(cur: Cursor) -> int:
    """Gauges and sums: the 1m rows of the touched buckets, and their sketch entries (temp table rollup_e1)."""
    cur.execute(_POINTS_SQL, {"lookback": ANCHOR_LOOKBACK})
    cur.execute(_MINUTES_SQL, {"lookback": ANCHOR_LOOKBACK})
    cur.execute(_ENTRIES_1M_SQL)
    cur.execute(_SKETCHES_1M_SQL)
    sketch_sql.collapse_overflowing(
        cur, entries="rollup_e1", sketches="rollup_s1", keys=("project_id", "series_id", "bucket_start")
    )
    cur.execute(_INSERT_FRESH_MINUTES_SQL)
    written = max(cur.rowcount, 0)
    cur.execute(_UPSERT_MINUTES_SQL)
    written += max(cur.rowcount, 0)
    cur.execute("drop table rollup_pts, rollup_s1")  # rollup_m1: the 5m level reads its rows
    return written


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

_DISTRIBUTION_UPSERT_SQL = _UPSERT.format(
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
        from rollup_touched t
        join public.metric_rollups r on r.project_id = t.project_id and r.series_id = t.series_id
            and r.resolution = 60 and r.bucket_start = t.bucket_start
        {sketch_sql.entries_of("r")}
        where t.kind = 'distribution' and r.sketch is not null
        """
    )


# --- 4. coarser buckets from the finer ones --------------------------------------------------------------------

# The finer rows of the touched coarse buckets: those this run just computed (``{in_run}``: rollup_m1, or the level
# below's rollup_c<res>), and the stored ones of the other slots of the coarse buckets (earlier runs' rows, and the
# distribution rows, written apart), each found with one primary-key probe. A stored row's sketch is kept only when
# its entries are not at hand (rollup_e<fine>).
_FINE_ROWS_SQL = f"""
create temp table rollup_fine on commit drop as
with t as (
    select distinct project_id, series_id, date_bin(%(width)s, bucket_start, timestamptz '{ORIGIN}') as bucket_start
    from rollup_touched
),
others as materialized (  -- a set difference: hashed, whatever the (absent) statistics of the temp tables say
    select t.project_id, t.series_id, s.fine_start
    from t
    cross join lateral generate_series(t.bucket_start, t.bucket_start + %(width)s - %(fine_width)s, %(fine_width)s)
        as s(fine_start)
    except
    select project_id, series_id, bucket_start from {{in_run}}
)
select i.org_id, i.project_id, i.series_id, date_bin(%(width)s, i.bucket_start, timestamptz '{ORIGIN}') as bucket_start,
    i.bucket_start as fine_start, i.count, i.sum, i.min, i.max, i.last, i.last_time, i.increase, null::jsonb as sketch
from {{in_run}} i
union all
select r.org_id, r.project_id, r.series_id, date_bin(%(width)s, r.bucket_start, timestamptz '{ORIGIN}'),
    r.bucket_start, r.count, r.sum, r.min, r.max, r.last,
    r.last_time, r.increase,
    case when r.sketch is not null and not exists (
        select 1 from {{fine_entries}} e
        where e.project_id = r.project_id and e.series_id = r.series_id and e.bucket_start = r.bucket_start
    ) then r.sketch end
from others o
cross join lateral (
    select * from public.metric_rollups r
    where r.project_id = o.project_id and r.series_id = o.series_id and r.resolution = %(fine)s
        and r.bucket_start = o.fine_start
    offset 0  -- one probe per other slot, never a scan of the level joined to them
) r
"""

# The coarse sketches' entries: the recomputed finer buckets' entries, and the stored sketches of the others.
_COARSE_ENTRIES_SQL = f"""
create temp table {{entries}} on commit drop as
select project_id, series_id, bucket_start, store, idx, sum(n)::bigint as n
from (
    select e.project_id, e.series_id, date_bin(%(width)s, e.bucket_start, timestamptz '{ORIGIN}') as bucket_start,
        e.store, e.idx, e.n
    from {{fine_entries}} e
    union all
    select f.project_id, f.series_id, f.bucket_start, k.store, k.idx, k.n
    from rollup_fine f
    {sketch_sql.entries_of("f")}
    where f.sketch is not null
) e
group by project_id, series_id, bucket_start, store, idx
"""

_COARSE_SKETCHES_SQL = f"""
create temp table rollup_sc on commit drop as
select project_id, series_id, bucket_start, {sketch_sql.BUILD} as sketch, {sketch_sql.OVERFLOW} as overflow
from {{entries}}
group by project_id, series_id, bucket_start
"""

# The coarse rows' scalars (sums in bucket order: a bucket rolled again gets the very same sums), kept for the next
# level (rollup_c<res>), then upserted with their sketch.
_COARSE_ROWS_SQL = """
create temp table {rows} on commit drop as
select min(org_id::text)::uuid as org_id, project_id, series_id, bucket_start,
    sum(count)::bigint as count,
    sum(sum order by fine_start) as sum,
    min(min) as min,
    max(max) as max,
    (array_agg(last order by last_time desc nulls last, fine_start desc))[1] as last,
    max(last_time) as last_time,
    sum(increase order by fine_start) as increase
from rollup_fine
group by project_id, series_id, bucket_start
"""

_COARSE_UPSERT_SQL = _UPSERT.format(
    select="""
select a.org_id, a.project_id, a.series_id, %(coarse)s, a.bucket_start, a.count, a.sum, a.min, a.max, a.last,
    a.last_time, a.increase, s.sketch, now()
from {rows} a
left join rollup_sc s on s.project_id = a.project_id and s.series_id = a.series_id and s.bucket_start = a.bucket_start
"""
)

_ENTRIES_TABLES = {60: "rollup_e1", 300: "rollup_e5", 3600: "rollup_e60", 86400: "rollup_e1440"}


_ROWS_TABLES = {60: "rollup_m1", 300: "rollup_c5", 3600: "rollup_c60", 86400: "rollup_c1440"}


def _roll_coarse(cur: Cursor, fine: int, coarse: int) -> int:
    params = {
        "fine": fine,
        "coarse": coarse,
        "width": timedelta(seconds=coarse),
        "fine_width": timedelta(seconds=fine),
    }
    fine_entries, entries = _ENTRIES_TABLES[fine], _ENTRIES_TABLES[coarse]
    in_run, rows = _ROWS_TABLES[fine], _ROWS_TABLES[coarse]
    cur.execute(_FINE_ROWS_SQL.replace("{fine_entries}", fine_entries).replace("{in_run}", in_run), params)
    cur.execute(_COARSE_ENTRIES_SQL.replace("{entries}", entries).replace("{fine_entries}", fine_entries), params)
    cur.execute(_COARSE_SKETCHES_SQL.replace("{entries}", entries))
    sketch_sql.collapse_overflowing(
        cur, entries=entries, sketches="rollup_sc", keys=("project_id", "series_id", "bucket_start")
    )
    cur.execute(_COARSE_ROWS_SQL.replace("{rows}", rows))
    cur.execute(_COARSE_UPSERT_SQL.replace("{rows}", rows), params)
    written = max(cur.rowcount, 0)
    # rollup_e1 stays for the group rollups; the finer rows and entries are done with once this level has them.
    cur.execute(f"drop table rollup_fine, rollup_sc, {in_run}" + ("" if fine == 60 else f", {fine_entries}"))
    return written
