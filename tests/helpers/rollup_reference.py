"""The aggregation job as it was before issue 17 (observai.metrics.rollup and observai.metrics.groups at that time):
the reference the equivalence tests compare the faster job with. Test code only; never imported by the product.

Per-series rollups (1m recomputed from the raw points with the sketches' entries aggregated in SQL, coarser levels
from the finer rows with the sketches merged in Python, ``merge_encoded``) and group rollups (merged in Python), in
the caller's transaction, with the same advisory lock and watermark as the job (run one or the other, never both).
"""

# ruff: noqa: E501
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from observai.db.connection import Cursor, transaction
from observai.metrics.distributions import ANCHOR_LOOKBACK, distribution_buckets
from observai.metrics.sketch import LOG_GAMMA, MAX_BUCKETS, ZERO_THRESHOLD, encoded_quantile, merge_encoded
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

# --- group rollups (observai.metrics.groups before issue 17) -------------------------------------------------------
GROUP_RESOLUTIONS: dict[int, str] = {60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}
# Attribute keys with at most this many distinct values get groups, at most GROUP_MAX_KEYS per metric.
GROUP_MAX_CARDINALITY = 200
GROUP_MAX_KEYS = 16
# Per-series 1m rows per chunk, and per run, and the run's time budget for the group step (checked between chunks;
# a chunk takes a few seconds at most, so a run stays well inside the Lambda's 60 s).
CHUNK_ROWS = 100_000
RUN_MAX_ROWS = 1_000_000
RUN_BUDGET_S = 15.0
# Resolutions whose group rows carry precomputed quantiles.
QUANTILE_GROUP_RESOLUTIONS = (3600, 86400)
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
GROUP_ORIGIN = "2000-01-01 00:00:00+00"  # as observai.metrics.rollup.GROUP_ORIGIN: a 1d bucket is a UTC day


class GroupReport(BaseModel):
    minutes: int = 0  # (metric, 1m bucket) pairs recomputed
    rows_read: int = 0  # per-series 1m rows merged
    # Per resolution ("1m", "5m", "1h", "1d"): group rows inserted or changed.
    written: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(GROUP_RESOLUTIONS.values(), 0))
    more_pending: bool = False


def roll_groups(cur: Cursor, *, touched: bool) -> GroupReport:
    """Queue what the run touched (``touched``: the temp table rollup_touched exists), then work the queue off
    within the run's bounds."""
    report = GroupReport()
    if touched:
        _enqueue(cur)
    cur.execute("drop table if exists group_rows")
    cur.execute(
        "create temp table group_rows (gid bigserial, project_id uuid, name text, group_key text, group_value text,"
        " bucket_start timestamptz, org_id uuid, series integer, count bigint, sum float8, min float8, max float8,"
        " last float8, last_time timestamptz, increase float8, sketches text) on commit drop"
    )
    started = time.perf_counter()
    while report.rows_read < RUN_MAX_ROWS and time.perf_counter() - started < RUN_BUDGET_S:
        if not _take_chunk(cur, min(CHUNK_ROWS, RUN_MAX_ROWS - report.rows_read)):
            break
        minutes, rows = _roll_chunk(cur, report.written)
        report.minutes += minutes
        report.rows_read += rows
    cur.execute("select exists (select 1 from public.metric_group_pending) as more")
    row = cur.fetchone()
    report.more_pending = bool(row and row["more"])
    return report


# --- the queue and the keys --------------------------------------------------------------------------------------


def _enqueue(cur: Cursor) -> None:
    """Refresh metric_group_keys for the touched metrics and queue their touched minutes (and, for a key new to a
    metric that already had rollups, the metric's minutes from the run's first touched one on)."""
    cur.execute(
        """
        insert into public.metric_group_pending (org_id, project_id, name, bucket_start)
        select min(org_id::text)::uuid, project_id, name, bucket_start from rollup_touched
        group by project_id, name, bucket_start
        on conflict do nothing
        """
    )
    cur.execute(
        """
        select t.org_id, t.project_id, t.name, t.first, k.key, k.values
        from (
            select min(org_id::text)::uuid as org_id, project_id, name, min(bucket_start) as first
            from rollup_touched group by project_id, name
        ) t
        left join lateral (
            select e.key, count(distinct e.value) as values
            from public.metric_series s cross join lateral jsonb_each(s.attributes) e
            where s.project_id = t.project_id and s.name = t.name and e.key <> ''
            group by e.key
        ) k on true
        """
    )
    metrics: dict[tuple[Any, str], tuple[Any, datetime, dict[str, int]]] = {}
    for row in cur.fetchall():
        org_id, _, keys = metrics.setdefault((row["project_id"], row["name"]), (row["org_id"], row["first"], {}))
        if row["key"] is not None and row["values"] <= GROUP_MAX_CARDINALITY:
            keys[row["key"]] = int(row["values"])
    cur.execute(
        "select k.project_id, k.name, k.group_key, k.cardinality from public.metric_group_keys k"
        " where (k.project_id, k.name) in (select distinct project_id, name from rollup_touched)"
    )
    registered: dict[tuple[Any, str], dict[str, int]] = {}
    for row in cur.fetchall():
        registered.setdefault((row["project_id"], row["name"]), {})[row["group_key"]] = row["cardinality"]

    drop: list[tuple[Any, str, str]] = []
    upsert: list[tuple[Any, Any, str, str, int, datetime | None]] = []
    for (project_id, name), (org_id, first, keys) in metrics.items():
        chosen = dict(sorted(keys.items(), key=lambda kv: (kv[1], kv[0]))[:GROUP_MAX_KEYS])
        chosen[""] = 0
        existing = registered.get((project_id, name), {})
        drop += [(project_id, name, key) for key in existing if key not in chosen]
        new = [key for key in chosen if key not in existing]
        upsert += [
            (org_id, project_id, name, key, n, None)
            for key, n in chosen.items()
            if key in existing and existing[key] != n
        ]
        if not new:
            continue
        # Complete from the start when the metric had no rollup before this run's first touched bucket; else from
        # that bucket on. Either way its minutes from there to its latest rollup are queued: rolled by earlier runs,
        # they lack the new key's groups.
        cur.execute(
            """
            select
                exists (
                    select 1 from public.metric_series s cross join lateral (
                        select 1 from public.metric_rollups r
                        where r.project_id = s.project_id and r.series_id = s.series_id and r.resolution = 60
                            and r.bucket_start < %(first)s limit 1
                    ) r
                    where s.project_id = %(project)s and s.name = %(name)s
                ) as older,
                (
                    select max(r.bucket_start) from public.metric_series s cross join lateral (
                        select r.bucket_start from public.metric_rollups r
                        where r.project_id = s.project_id and r.series_id = s.series_id and r.resolution = 60
                        order by r.bucket_start desc limit 1
                    ) r
                    where s.project_id = %(project)s and s.name = %(name)s
                ) as latest
            """,
            {"project": project_id, "name": name, "first": first},
        )
        found = cur.fetchone()
        assert found is not None
        upsert += [(org_id, project_id, name, key, chosen[key], first if found["older"] else None) for key in new]
        if found["latest"] is not None and found["latest"] > first:
            cur.execute(
                "insert into public.metric_group_pending (org_id, project_id, name, bucket_start)"
                " select %(org)s, %(project)s, %(name)s, m"
                " from generate_series(%(first)s::timestamptz, %(latest)s::timestamptz, interval '1 minute') m"
                " on conflict do nothing",
                {"org": org_id, "project": project_id, "name": name, "first": first, "latest": found["latest"]},
            )
    if drop:
        cur.execute(
            "delete from public.metric_group_keys k using unnest(%s::uuid[], %s::text[], %s::text[]) d(p, n, g)"
            " where k.project_id = d.p and k.name = d.n and k.group_key = d.g",
            ([d[0] for d in drop], [d[1] for d in drop], [d[2] for d in drop]),
        )
    if upsert:
        # complete_from null: an existing key (cardinality update only), or '-infinity' for a new one.
        cur.execute(
            """
            insert into public.metric_group_keys as k
                (org_id, project_id, name, group_key, cardinality, complete_from, updated_at)
            select u.org_id, u.project_id, u.name, u.group_key, u.cardinality,
                coalesce(u.complete_from, '-infinity'), now()
            from unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::integer[], %s::timestamptz[])
                as u(org_id, project_id, name, group_key, cardinality, complete_from)
            on conflict (project_id, name, group_key) do update set
                cardinality = excluded.cardinality, updated_at = excluded.updated_at
            """,
            tuple([u[i] for u in upsert] for i in range(6)),
        )


def _take_chunk(cur: Cursor, max_rows: int) -> bool:
    """Move the oldest queued pairs, about ``max_rows`` per-series rows' worth (at least one pair), from the queue
    to the temp table group_chunk (project_id, name, bucket_start). False when the queue is empty."""
    cur.execute("drop table if exists group_chunk")
    cur.execute(
        """
        create temp table group_chunk on commit drop as
        with p as (
            select project_id, name, bucket_start from public.metric_group_pending
            order by bucket_start, project_id, name limit 10000
        ),
        m as (
            select d.project_id, d.name,
                greatest((select count(*) from public.metric_series s
                          where s.project_id = d.project_id and s.name = d.name), 1) as n
            from (select distinct project_id, name from p) d
        ),
        c as (
            select p.project_id, p.name, p.bucket_start, m.n,
                sum(m.n) over (order by p.bucket_start, p.project_id, p.name rows unbounded preceding) as cum
            from p join m on m.project_id = p.project_id and m.name = p.name
        )
        select project_id, name, bucket_start from c where cum - n < %(rows)s
        """,
        {"rows": max_rows},
    )
    if cur.rowcount <= 0:
        return False
    cur.execute(
        "delete from public.metric_group_pending p using group_chunk c"
        " where p.project_id = c.project_id and p.name = c.name and p.bucket_start = c.bucket_start"
    )
    cur.execute("analyze group_chunk")
    return True


# --- merging -----------------------------------------------------------------------------------------------------

# The columns of a group row from the rows below it, ``c``: count, sum and increase add (in ``ord`` order, so that
# a row rolled again gets the very same sums); min/max; last of the latest (simultaneous ones: the largest, as the
# query API's "last"); the sketches as one text list, merged in Python (``_merged_sketches``).
_MERGE_COLUMNS = """
    min(org_id::text)::uuid as org_id, {series} as series, sum(count)::bigint as count, sum(sum order by ord) as sum,
    min(min) as min, max(max) as max,
    (array_agg(last order by last_time desc nulls last, last desc) filter (where last is not null))[1] as last,
    coalesce(max(last_time) filter (where last is not null), max(last_time)) as last_time,
    sum(increase order by ord) as increase, {sketches} as sketches
"""
_ROW_COLUMNS = (
    "project_id, name, group_key, group_value, bucket_start, org_id, series, count, sum, min, max, last, last_time,"
    " increase, sketches"
)

_GROUP_MINUTES_SQL = f"""
insert into group_rows ({_ROW_COLUMNS})
with b as (
    select distinct project_id, bucket_start from group_chunk
),
-- Each project's minutes in contiguous ranges: one range read each of the (project_id, resolution, bucket_start)
-- index (offset 0: never flattened into a join over every partition, whatever the fresh rows' statistics say).
g as (
    select project_id, min(bucket_start) as range_start, max(bucket_start) + interval '60 seconds' as range_end
    from (
        select *, bucket_start - interval '60 seconds'
            * row_number() over (partition by project_id order by bucket_start) as island
        from b
    ) x
    group by project_id, island
),
c as materialized (
    select m.gid, r.org_id, r.bucket_start, r.series_id as ord, r.count, r.sum, r.min, r.max, r.last, r.last_time,
        r.increase, r.sketch
    from g
    cross join lateral (
        select * from public.metric_rollups r
        where r.project_id = g.project_id and r.resolution = 60
            and r.bucket_start >= g.range_start and r.bucket_start < g.range_end
        offset 0
    ) r
    join group_members m on m.project_id = r.project_id and m.series_id = r.series_id
    join group_chunk t on t.project_id = r.project_id and t.name = m.name and t.bucket_start = r.bucket_start
),
-- Scalars (ordered: a sort of narrow rows by an integer group id) and sketches (hashed) apart.
a as (
    select gid, bucket_start,
        {_MERGE_COLUMNS.format(series="count(*)::integer", sketches="null::text").strip()}
    from (select gid, org_id, bucket_start, ord, count, sum, min, max, last, last_time, increase from c) c
    group by gid, bucket_start
),
k as (
    select gid, bucket_start, string_agg(sketch::text, ',') as sketches from c where sketch is not null
    group by gid, bucket_start
)
select i.project_id, i.name, i.group_key, i.group_value, a.bucket_start, a.org_id, a.series, a.count, a.sum, a.min,
    a.max, a.last, a.last_time, a.increase, k.sketches
from a
join group_ids i on i.gid = a.gid
left join k on k.gid = a.gid and k.bucket_start = a.bucket_start
"""

# The whole metric, from the groups of one key (every series is in exactly one of them); its sketch: in Python.
_WHOLE_SQL = f"""
insert into group_rows ({_ROW_COLUMNS})
select project_id, name, '', '', bucket_start,
    {_MERGE_COLUMNS.format(series="sum(series)::integer", sketches="null")}
from (
    select g.*, g.group_value as ord from group_rows g
    join group_chunk_keys k on k.project_id = g.project_id and k.name = g.name and k.group_key = g.group_key
    where k.whole_source
) c
group by project_id, name, bucket_start
"""

_GROUP_COARSE_SQL = f"""
insert into group_rows ({_ROW_COLUMNS})
with t as (
    select distinct project_id, name, date_bin(%(width)s, bucket_start, timestamptz '{GROUP_ORIGIN}') as bucket_start
    from group_chunk
),
g as (
    select project_id, name, min(bucket_start) as range_start, max(bucket_start) + %(width)s as range_end
    from (
        select *, bucket_start - %(width)s
            * row_number() over (partition by project_id, name order by bucket_start) as island
        from t
    ) x
    group by project_id, name, island
),
c as (
    select r.org_id, r.project_id, r.name, r.group_key, r.group_value,
        date_bin(%(width)s, r.bucket_start, timestamptz '{GROUP_ORIGIN}') as bucket_start, r.bucket_start as ord, r.series,
        r.count, r.sum, r.min, r.max, r.last, r.last_time, r.increase, r.sketch
    from g
    join group_chunk_keys k on k.project_id = g.project_id and k.name = g.name
    cross join lateral (
        select * from public.metric_group_rollups r
        where r.project_id = g.project_id and r.name = g.name and r.group_key = k.group_key
            and r.resolution = %(fine)s and r.bucket_start >= g.range_start and r.bucket_start < g.range_end
        offset 0  -- not flattened: one index range read per group key
    ) r
)
select project_id, name, group_key, group_value, bucket_start,
    {_MERGE_COLUMNS.format(series="max(series)", sketches="string_agg(sketch::text, ',')")}
from c group by project_id, name, group_key, group_value, bucket_start
"""

# The 1d rows' hourly quantiles (migration 0015): element h + 1 the pNN of the group's 1h row of hour h of the day
# (null without one), from the 1h rows upserted just before (``_roll_chunk`` writes 1h, then 1d).
_HOURLY_SQL = """
left join lateral (
    select array_agg(h.p50 order by i) as p50, array_agg(h.p90 order by i) as p90,
        array_agg(h.p95 order by i) as p95, array_agg(h.p99 order by i) as p99
    from generate_series(0, 23) i
    left join public.metric_group_rollups h
        on h.project_id = g.project_id and h.name = g.name and h.group_key = g.group_key
        and h.group_value = g.group_value and h.resolution = 3600
        and h.bucket_start = g.bucket_start + i * interval '1 hour'
) a on true
"""

_GROUP_UPSERT_SQL = """
insert into public.metric_group_rollups as r
    (org_id, project_id, name, group_key, group_value, resolution, bucket_start, series, count, sum, min, max,
     last, last_time, increase, sketch, p50, p90, p95, p99, hourly_p50, hourly_p90, hourly_p95, hourly_p99,
     updated_at)
select g.org_id, g.project_id, g.name, g.group_key, g.group_value, %(resolution)s, g.bucket_start, g.series, g.count,
    g.sum, g.min, g.max, g.last, g.last_time, g.increase, k.sketch, s.p50, s.p90, s.p95, s.p99, {hourly}, now()
from group_rows g
-- The merged sketches, one JSON object {{gid: sketch}} (one text to send, parsed once; no array of texts to escape).
left join jsonb_each(%(sketches)s::jsonb) as k(gid, sketch) on k.gid::bigint = g.gid
left join unnest(%(gid)s::bigint[], %(p50)s::float8[], %(p90)s::float8[], %(p95)s::float8[], %(p99)s::float8[])
    as s(gid, p50, p90, p95, p99) on s.gid = g.gid
{hourly_join}
on conflict (project_id, name, group_key, group_value, resolution, bucket_start) do update set
    org_id = excluded.org_id, series = excluded.series, count = excluded.count, sum = excluded.sum,
    min = excluded.min, max = excluded.max, last = excluded.last, last_time = excluded.last_time,
    increase = excluded.increase, sketch = excluded.sketch, p50 = excluded.p50, p90 = excluded.p90,
    p95 = excluded.p95, p99 = excluded.p99, hourly_p50 = excluded.hourly_p50, hourly_p90 = excluded.hourly_p90,
    hourly_p95 = excluded.hourly_p95, hourly_p99 = excluded.hourly_p99, updated_at = excluded.updated_at
where (r.org_id, r.series, r.count, r.sum, r.min, r.max, r.last, r.last_time, r.increase, r.sketch, r.hourly_p50,
       r.hourly_p90, r.hourly_p95, r.hourly_p99)
    is distinct from (excluded.org_id, excluded.series, excluded.count, excluded.sum, excluded.min, excluded.max,
                      excluded.last, excluded.last_time, excluded.increase, excluded.sketch, excluded.hourly_p50,
                      excluded.hourly_p90, excluded.hourly_p95, excluded.hourly_p99)
"""
_GROUP_UPSERT_SQLS = {
    resolution: _GROUP_UPSERT_SQL.format(
        hourly="a.p50, a.p90, a.p95, a.p99" if resolution == 86400 else "null, null, null, null",
        hourly_join=_HOURLY_SQL if resolution == 86400 else "",
    )
    for resolution in GROUP_RESOLUTIONS
}


def _roll_chunk(cur: Cursor, written: dict[str, int]) -> tuple[int, int]:
    """The chunk's 1m group rows from the per-series rows, then the coarser ones; returns (pairs, rows read)."""
    # The chunk's metrics' keys (whole_source: the key the whole metric is merged from, the one with the fewest
    # values), and every series' group of each key (its value as jsonb text, 'null' when absent); a metric without
    # keys: the whole metric straight from its series.
    cur.execute(
        """
        create temp table group_chunk_keys on commit drop as
        select k.project_id, k.name, k.group_key,
            k.group_key = (
                select w.group_key from public.metric_group_keys w
                where w.project_id = k.project_id and w.name = k.name and w.group_key <> ''
                order by w.cardinality, w.group_key limit 1
            ) as whole_source
        from public.metric_group_keys k
        where (k.project_id, k.name) in (select distinct project_id, name from group_chunk)
        """
    )
    cur.execute(
        """
        create temp table group_members on commit drop as
        select s.project_id, s.series_id, s.name, k.group_key,
            case when k.group_key = '' then '' else coalesce((s.attributes -> k.group_key)::text, 'null') end
                as group_value
        from group_chunk_keys k
        join public.metric_series s on s.project_id = k.project_id and s.name = k.name
        where k.group_key <> '' or not exists (
            select 1 from group_chunk_keys o where o.project_id = k.project_id and o.name = k.name and o.group_key <> ''
        )
        """
    )
    # An integer per group: the aggregation sorts and hashes on it rather than on (uuid, text, text, text).
    cur.execute(
        """
        create temp table group_ids on commit drop as
        select row_number() over () as gid, project_id, name, group_key, group_value
        from (select distinct project_id, name, group_key, group_value from group_members) d
        """
    )
    cur.execute(
        """
        alter table group_members add column gid bigint;
        update group_members m set gid = i.gid from group_ids i
        where i.project_id = m.project_id and i.name = m.name and i.group_key = m.group_key
            and i.group_value = m.group_value
        """
    )
    cur.execute("analyze group_members")
    cur.execute("truncate group_rows")
    cur.execute(_GROUP_MINUTES_SQL)
    cur.execute(_WHOLE_SQL)
    cur.execute("select coalesce(sum(series), 0)::bigint as rows from group_rows where group_key = ''")
    row = cur.fetchone()
    rows = int(row["rows"]) if row else 0
    written["1m"] += _finish(cur, 60)
    fine = 60
    for coarse in (300, 3600, 86400):
        cur.execute("truncate group_rows")
        cur.execute(_GROUP_COARSE_SQL, {"fine": fine, "width": timedelta(seconds=coarse)})
        written[GROUP_RESOLUTIONS[coarse]] += _finish(cur, coarse)
        fine = coarse
    cur.execute("select count(*) as n from group_chunk")
    row = cur.fetchone()
    cur.execute("drop table group_chunk_keys, group_members, group_ids")
    return (int(row["n"]) if row else 0), rows


def _finish(cur: Cursor, resolution: int) -> int:
    """Merge the sketches of group_rows in Python (the whole-metric rows of 1m from their key's merged groups),
    with the quantiles at 1h and 1d, and upsert the rows; returns the rows inserted or changed."""
    cur.execute(
        """
        select g.gid, g.project_id, g.name, g.group_key, g.bucket_start, g.sketches, coalesce(k.whole_source, false)
            as whole_source
        from group_rows g
        left join group_chunk_keys k on k.project_id = g.project_id and k.name = g.name and k.group_key = g.group_key
        where g.sketches is not null or g.group_key = ''
        """
    )
    merged: dict[int, dict[str, Any]] = {}
    wholes: dict[tuple[Any, str, datetime], list[dict[str, Any]]] = {}
    derived: list[tuple[int, tuple[Any, str, datetime]]] = []
    for row in cur.fetchall():
        if row["sketches"] is None:
            derived.append((row["gid"], (row["project_id"], row["name"], row["bucket_start"])))
            continue
        sketch = merge_encoded(json.loads("[" + row["sketches"] + "]"))
        merged[row["gid"]] = sketch
        if row["whole_source"]:
            wholes.setdefault((row["project_id"], row["name"], row["bucket_start"]), []).append(sketch)
    for gid, whole in derived:
        if whole in wholes:
            merged[gid] = merge_encoded(wholes[whole])
    quantiles: dict[str, list[Any]] = {c: [] for c in ("gid", *QUANTILES)}
    if resolution in QUANTILE_GROUP_RESOLUTIONS:
        for gid, sketch in merged.items():
            quantiles["gid"].append(gid)
            for column, q in QUANTILES.items():
                quantiles[column].append(encoded_quantile(sketch, q))
    sketches = json.dumps({str(gid): sketch for gid, sketch in merged.items()})
    cur.execute(_GROUP_UPSERT_SQLS[resolution], {"resolution": resolution, "sketches": sketches, **quantiles})
    return max(cur.rowcount, 0)


# --- per-series rollups (observai.metrics.rollup before issue 17) -----------------------------------------------
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
        select org_id, project_id, series_id, kind, type, temporality,
            min(bucket_start) as range_start, max(bucket_start) + interval '60 seconds' as range_end
        from (
            select *, bucket_start - interval '60 seconds'
                * row_number() over (partition by project_id, series_id order by bucket_start) as island
            from rollup_touched
        ) t
        group by org_id, project_id, series_id, kind, type, temporality, island
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

# The sketch columns of a set of rows `sk_raw(project_id, series_id, bucket_start, store, idx, n)`: the counts
# per (store, index) after collapsing each store to MAX_BUCKETS indexes below its top (as Sketch does), as
# {"p": {...}, "n": {...}, "z": zeros}. sk_zero(project_id, series_id, bucket_start, z) holds the zeros and a
# row for every bucket that has a sketch.
_SKETCH_CTES = f"""
sk_sum as (
    select project_id, series_id, bucket_start, store, idx, sum(n) as n
    from sk_raw group by project_id, series_id, bucket_start, store, idx
),
sk_counts as (
    select project_id, series_id, bucket_start, store, idx, sum(n)::bigint as n
    from (
        select project_id, series_id, bucket_start, store, n,
            greatest(idx, max(idx) over (partition by project_id, series_id, bucket_start, store)
                - {MAX_BUCKETS - 1}) as idx
        from sk_sum
    ) c
    group by project_id, series_id, bucket_start, store, idx
),
sk_stores as (
    select project_id, series_id, bucket_start,
        jsonb_object_agg(idx::text, n) filter (where store = 'p') as p,
        jsonb_object_agg(idx::text, n) filter (where store = 'n') as n
    from sk_counts group by project_id, series_id, bucket_start
),
sk as (
    select z.project_id, z.series_id, z.bucket_start,
        jsonb_build_object('p', coalesce(s.p, '{{}}'::jsonb), 'n', coalesce(s.n, '{{}}'::jsonb), 'z', z.z) as sketch
    from sk_zero z
    left join sk_stores s
        on s.project_id = z.project_id and s.series_id = z.series_id and s.bucket_start = z.bucket_start
)
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

_SCALAR_MINUTES_SQL = (
    f"""
with pts as (
    select g.org_id, g.project_id, g.series_id, g.range_start, g.kind,
        date_bin(interval '60 seconds', p.time, timestamptz '{ORIGIN}') as bucket_start,
        p.time, p.start_time, p.value, false as anchor
    from rollup_ranges g
    cross join lateral (
        select p.time, p.start_time, p.value from public.metric_points p
        where p.project_id = g.project_id and p.series_id = g.series_id
            and p.time >= g.range_start and p.time < g.range_end
        offset 0  -- never flattened: one index range read per series range, whatever the statistics say
    ) p
    where g.kind <> 'distribution'
    union all
    select g.org_id, g.project_id, g.series_id, g.range_start, g.kind, g.range_start, a.time, a.start_time, a.value,
        true
    from rollup_ranges g
    cross join lateral (
        select p.time, p.start_time, p.value from public.metric_points p
        where p.project_id = g.project_id and p.series_id = g.series_id
            and p.time < g.range_start and p.time >= g.range_start - %(lookback)s
        order by p.time desc limit 1
    ) a
    where g.kind = 'counter'
),
v as (
    select pts.*,
        lag(value) over w as prev_value,
        lag(start_time) over w as prev_start
    from pts
    window w as (partition by project_id, series_id, range_start order by time, anchor)
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
        end as delta
    from v
),
agg as (
    select org_id, project_id, series_id, bucket_start, kind,
        count(*) as count,
        sum(value order by time) filter (where {_FINITE}) as sum,
        min(value) filter (where {_FINITE}) as min,
        max(value) filter (where {_FINITE}) as max,
        (array_agg(value order by time desc))[1] as last,
        max(time) as last_time,
        case kind
            when 'counter' then coalesce(sum(delta order by time), 0)
            when 'delta_counter' then coalesce(sum(value order by time) filter (where {_FINITE}), 0)
        end as increase
    from inc v
    where not anchor
    group by org_id, project_id, series_id, bucket_start, kind
),
sk_raw as (
    select project_id, series_id, bucket_start,
        case when abs(value) < {ZERO_THRESHOLD!r} then 'z' when value > 0 then 'p' else 'n' end as store,
        case when abs(value) < {ZERO_THRESHOLD!r} then 0 else ceil(ln(abs(value)) / {LOG_GAMMA!r})::integer end as idx,
        1 as n
    from pts v
    where kind = 'gauge' and not anchor and {_FINITE}
),
sk_zero as (
    select project_id, series_id, bucket_start, count(*) filter (where store = 'z') as z
    from sk_raw group by project_id, series_id, bucket_start
),
"""
    + _SKETCH_CTES
    + _UPSERT.format(
        select="""
select a.org_id, a.project_id, a.series_id, 60, a.bucket_start, a.count, a.sum, a.min, a.max, a.last, a.last_time,
    a.increase, sk.sketch, now()
from agg a
left join sk on sk.project_id = a.project_id and sk.series_id = a.series_id and sk.bucket_start = a.bucket_start
"""
    )
)


def _roll_scalar_minutes(cur: Cursor) -> int:
    cur.execute(_SCALAR_MINUTES_SQL, {"lookback": ANCHOR_LOOKBACK})
    return max(cur.rowcount, 0)


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


# --- 4. coarser buckets from the finer ones --------------------------------------------------------------------

# The coarse rows' scalars in SQL (sums in bucket order: a bucket rolled again gets the very same sums), their
# sketches as one text list each, merged in Python (``merge_encoded``: far cheaper than jsonb_each_text and
# re-aggregation in SQL).
_COARSE_ROWS_SQL = f"""
create temp table rollup_coarse on commit drop as
with t as (
    select distinct project_id, series_id, date_bin(%(width)s, bucket_start, timestamptz '{ORIGIN}') as bucket_start
    from rollup_touched
),
-- Contiguous touched coarse buckets per PROJECT: one range read each of the (project_id, resolution, bucket_start)
-- index, kept apart (offset 0) so the planner cannot flatten it into a join over every partition's rows: freshly
-- written rollups have no statistics yet, and per-series estimates were off by orders of magnitude.
g as (
    select project_id, min(bucket_start) as range_start, max(bucket_start) + %(width)s as range_end
    from (
        select *, bucket_start - %(width)s * row_number() over (partition by project_id order by bucket_start) as island
        from (select distinct project_id, bucket_start from t) b
    ) x
    group by project_id, island
),
c as materialized (
    select r.org_id, r.project_id, r.series_id, t.bucket_start, r.bucket_start as fine_start,
        r.count, r.sum, r.min, r.max, r.last, r.last_time, r.increase, r.sketch
    from g
    cross join lateral (
        select * from public.metric_rollups r
        where r.project_id = g.project_id and r.resolution = %(fine)s
            and r.bucket_start >= g.range_start and r.bucket_start < g.range_end
        offset 0
    ) r
    join t on t.project_id = r.project_id and t.series_id = r.series_id
        and t.bucket_start = date_bin(%(width)s, r.bucket_start, timestamptz '{ORIGIN}')
),
agg as (
    select min(org_id::text)::uuid as org_id, project_id, series_id, bucket_start,
        sum(count)::bigint as count,
        sum(sum order by fine_start) as sum,
        min(min) as min,
        max(max) as max,
        (array_agg(last order by last_time desc nulls last, fine_start desc))[1] as last,
        max(last_time) as last_time,
        sum(increase order by fine_start) as increase
    from (  -- narrow rows (no sketch): the sort of the ordered aggregates stays small
        select org_id, project_id, series_id, bucket_start, fine_start, count, sum, min, max, last, last_time, increase
        from c
    ) c
    group by project_id, series_id, bucket_start
),
sk as (
    select project_id, series_id, bucket_start, string_agg(sketch::text, ',') as sketches
    from c where sketch is not null group by project_id, series_id, bucket_start
)
select row_number() over () as id, a.*, sk.sketches
from agg a
left join sk on sk.project_id = a.project_id and sk.series_id = a.series_id and sk.bucket_start = a.bucket_start
"""

_COARSE_UPSERT_SQL = _UPSERT.format(
    select="""
select a.org_id, a.project_id, a.series_id, %(coarse)s, a.bucket_start, a.count, a.sum, a.min, a.max, a.last,
    a.last_time, a.increase, s.sketch, now()
from rollup_coarse a
-- The merged sketches, one JSON object {id: sketch} (one text to send, parsed once; no array of texts to escape).
left join jsonb_each(%(sketches)s::jsonb) as s(id, sketch) on s.id::bigint = a.id
"""
)


def _roll_coarse(cur: Cursor, fine: int, coarse: int) -> int:
    cur.execute(_COARSE_ROWS_SQL, {"fine": fine, "width": timedelta(seconds=coarse)})
    cur.execute("select id, sketches from rollup_coarse where sketches is not null")
    merged = {str(row["id"]): merge_encoded(json.loads("[" + row["sketches"] + "]")) for row in cur.fetchall()}
    cur.execute(_COARSE_UPSERT_SQL, {"coarse": coarse, "sketches": json.dumps(merged)})
    written = max(cur.rowcount, 0)
    cur.execute("drop table rollup_coarse")
    return written
