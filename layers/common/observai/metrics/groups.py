"""Group rollups: cross-series rollups per metric name (what recording rules are to Prometheus), step 5 of the
aggregate-metrics job (``observai.metrics.rollup``): queued by the per-series run, in its transaction, and worked
off by the same run or by a group run beside it (``observai.metrics.pipeline``), under a lock of its own.

A dashboard query over every series of a metric, or grouped by one low-cardinality attribute, then reads one row
per group per slot (``metric_group_rollups``) instead of one per series (and one sketch per series).

Groups, per metric name: the whole metric (group_key '', group_value '') and one group per value of each attribute
key with at most GROUP_MAX_CARDINALITY distinct values among the metric's series (at most GROUP_MAX_KEYS keys, the
lowest cardinalities first; ``metric_group_keys`` records them, dropping a key that outgrew the bound).
group_value is the attribute's jsonb text ((attributes -> key)::text: '"h01"', '200'), 'null' for a series
without it.

Work queue: every (metric, 1m bucket) pair whose per-series rollups the run re-rolled goes to
``metric_group_pending``; the step then works the queue off, oldest minutes first, in chunks of about CHUNK_ROWS
per-series rows (estimated from the metrics' series counts), and stops after RUN_MAX_ROWS rows or RUN_BUDGET_S
seconds: a backlog (a backfill, a new key) never makes a run hit the statement timeout, and the next run resumes
it. A chunk:

1. reads the per-series 1m rows of its (metric, minute) pairs (each metric's minutes as contiguous ranges, one
   primary-key range read per series and range, whatever the planner thinks of freshly written rows' statistics);
2. merges them per group in numpy (``observai.metrics.group_minutes``: count, sum, increase add; min/max; last of
   the latest, simultaneous ones: the largest, as the query API's "last"; sketches as entries: the run's own
   per-series entries or the stored sketch parsed, added up per group and collapsed as ``Sketch`` does); the whole
   metric is the merge of the groups of its key with the fewest values (every series is in exactly one of them),
   or of the series when the metric has no key;
3. upserts the 1m group rows (unchanged rows are not rewritten), then recomputes the 5m, 1h and 1d group rows
   containing them from the next finer group rows, the same way; 1h and 1d rows also get their sketch's
   p50/p90/p95/p99 (a query whose step is the resolution reads one number per group and slot), and 1d rows the
   day's 24 hourly ones from the 1h rows just written (hourly_p50..hourly_p99: a query at a 1h step reads one row
   per group per whole day); a 1d row is rewritten whenever one of its day's 1h rows may have changed;
4. deletes its pairs from the queue.

Everything is recomputed from the rows below it: idempotent, and a late point's re-rolled minute simply comes
back through the queue. The query API reads group rows only where they are complete: the key registered
(complete_from) before the range, and no pending minute of the metric inside it.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from observai.db.connection import Cursor
from observai.metrics import group_minutes, rollup_pass, sketch_sql

RESOLUTIONS: dict[int, str] = {60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}
# Attribute keys with at most this many distinct values get groups, at most GROUP_MAX_KEYS per metric.
GROUP_MAX_CARDINALITY = 200
GROUP_MAX_KEYS = 16
# Per-series 1m rows per chunk, and per run, and the run's time budget for the group step (checked between chunks;
# a chunk takes a few seconds at most, so a run stays well inside the Lambda's 60 s).
CHUNK_ROWS = 100_000
RUN_MAX_ROWS = 1_000_000
RUN_BUDGET_S = 15.0
# Resolutions whose group rows carry precomputed quantiles.
QUANTILE_RESOLUTIONS = (3600, 86400)
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
ORIGIN = "2000-01-01 00:00:00+00"  # as observai.metrics.rollup.ORIGIN: a 1d bucket is a UTC day


class GroupReport(BaseModel):
    model_config = ConfigDict(defer_build=True)
    ran: bool = True  # False: another session was working the queue off
    minutes: int = 0  # (metric, 1m bucket) pairs recomputed
    rows_read: int = 0  # per-series 1m rows merged
    # Per resolution ("1m", "5m", "1h", "1d"): group rows inserted or changed.
    written: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(RESOLUTIONS.values(), 0))
    more_pending: bool = False
    seconds: float = 0.0  # the run's time (the queue and the chunks; with ``work`` only)


def roll_groups(cur: Cursor, *, touched: bool, work: bool = True, max_chunks: int | None = None) -> GroupReport:
    """Queue what the run touched (``touched``: the temp table rollup_touched_metrics exists), then, with ``work``
    (the caller holds the group step's lock), work the queue off within the run's bounds (and ``max_chunks``)."""
    report = GroupReport()
    if touched:
        _enqueue(cur)
    if not work:
        return report
    cur.execute("drop table if exists group_rows")
    cur.execute(
        "create temp table group_rows (gid bigserial, ggid bigint, project_id uuid, name text, group_key text,"
        " group_value text, bucket_start timestamptz, org_id uuid, series integer, count bigint, sum float8,"
        " min float8, max float8, last float8, last_time timestamptz, increase float8) on commit drop"
    )
    started = time.perf_counter()
    chunks = 0
    while (
        (max_chunks is None or chunks < max_chunks)
        and report.rows_read < RUN_MAX_ROWS
        and time.perf_counter() - started < RUN_BUDGET_S
    ):
        if not _take_chunk(cur, min(CHUNK_ROWS, RUN_MAX_ROWS - report.rows_read)):
            break
        chunks += 1
        minutes, rows = _roll_chunk(cur, report.written, run_entries=touched)
        report.minutes += minutes
        report.rows_read += rows
    cur.execute("select exists (select 1 from public.metric_group_pending) as more")
    row = cur.fetchone()
    report.more_pending = bool(row and row["more"])
    report.seconds = time.perf_counter() - started
    return report


# --- the queue and the keys --------------------------------------------------------------------------------------


# The run's touched (metric, minute) pairs and the back-filled minutes of metrics with a new key, queued in one
# statement, in key order (the group stage locks the rows it takes in the same order: the two never wait on each
# other in a cycle). A minute queued already gets a new version: the group stage keeps it if it took the old one.
_QUEUE_SQL = """
insert into public.metric_group_pending as p (org_id, project_id, name, bucket_start)
select min(org_id::text)::uuid, project_id, name, bucket_start from (
    select org_id, project_id, name, bucket_start from rollup_touched_metrics
    union all
    select b.org_id, b.project_id, b.name, m
    from unnest(%(org)s::uuid[], %(project)s::uuid[], %(name)s::text[], %(first)s::timestamptz[],
        %(latest)s::timestamptz[]) as b(org_id, project_id, name, first, latest)
    cross join lateral generate_series(b.first, b.latest, interval '1 minute') m
) q
group by project_id, name, bucket_start
order by project_id, name, bucket_start
on conflict (project_id, name, bucket_start) do update set version = p.version + 1
"""
_BACKFILL_COLUMNS = ("org", "project", "name", "first", "latest")


def _enqueue(cur: Cursor) -> None:
    """Refresh metric_group_keys for the touched metrics and queue their touched minutes (and, for a key new to a
    metric that already had rollups, the metric's minutes from the run's first touched one on), in one statement that
    locks the queue rows in key order (``_QUEUE_SQL``)."""
    cur.execute(
        """
        select t.org_id, t.project_id, t.name, t.first, k.key, k.values
        from (
            select min(org_id::text)::uuid as org_id, project_id, name, min(bucket_start) as first
            from rollup_touched_metrics group by project_id, name
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
        " where (k.project_id, k.name) in (select distinct project_id, name from rollup_touched_metrics)"
    )
    registered: dict[tuple[Any, str], dict[str, int]] = {}
    for row in cur.fetchall():
        registered.setdefault((row["project_id"], row["name"]), {})[row["group_key"]] = row["cardinality"]

    drop: list[tuple[Any, str, str]] = []
    upsert: list[tuple[Any, Any, str, str, int, datetime | None]] = []
    backfill: list[tuple[Any, Any, str, datetime, datetime]] = []
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
            backfill.append((org_id, project_id, name, first, found["latest"]))
    cur.execute(_QUEUE_SQL, {column: [b[i] for b in backfill] for i, column in enumerate(_BACKFILL_COLUMNS)})
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
            select project_id, name, bucket_start, version from public.metric_group_pending
            order by bucket_start, project_id, name limit 10000
        ),
        m as materialized (  -- each metric's series counted once, not once per queued minute
            select d.project_id, d.name,
                greatest((select count(*) from public.metric_series s
                          where s.project_id = d.project_id and s.name = d.name), 1) as n
            from (select distinct project_id, name from p) d
        ),
        c as (
            select p.project_id, p.name, p.bucket_start, p.version, m.n,
                sum(m.n) over (order by p.bucket_start, p.project_id, p.name rows unbounded preceding) as cum
            from p join m on m.project_id = p.project_id and m.name = p.name
        )
        select project_id, name, bucket_start, version from c where cum - n < %(rows)s
        """,
        {"rows": max_rows},
    )
    if cur.rowcount <= 0:
        return False
    # Deleted only at the version taken: a per-series run beside this one that queues a taken minute again bumps
    # its version, and the minute stays queued (this chunk may not see that run's rows). The rows are locked first,
    # in key order, the order the per-series runs queue them in (so the two never wait on each other in a cycle);
    # the delete then sees every bump committed before it.
    cur.execute(
        "select 1 from public.metric_group_pending q join group_chunk c"
        " on c.project_id = q.project_id and c.name = q.name and c.bucket_start = q.bucket_start"
        " order by q.project_id, q.name, q.bucket_start for update of q"
    )
    cur.execute(
        "delete from public.metric_group_pending p using group_chunk c"
        " where p.project_id = c.project_id and p.name = c.name and p.bucket_start = c.bucket_start"
        " and p.version = c.version"
    )
    cur.execute("analyze group_chunk")
    return True


# --- merging -----------------------------------------------------------------------------------------------------

# The chunk's per-series 1m rows: for each series of the chunk's metrics, its metric's queued minutes as contiguous
# ranges, one primary-key range read each (offset 0: never flattened into a join over every partition, whatever the
# fresh rows' statistics say). A row's stored sketch is kept only when its entries are known otherwise, without
# parsing the JSON: ``single``, a gauge's minute of one finite value (its sketch is that value's one entry, computed
# from ``min``; the job stores none for it: ``rollup_pass.one_value``), or this run's own entries (rollup_e1, when
# the run touched anything). Read where they are merged (``group_minutes.roll_minutes``), or first copied into a temp
# table when a run's own entries join them.
_SERIES_ROWS_SQL = """
with g as (
    select project_id, name, min(bucket_start) as range_start, max(bucket_start) + interval '60 seconds' as range_end
    from (
        select *, bucket_start - interval '60 seconds'
            * row_number() over (partition by project_id, name order by bucket_start) as island
        from group_chunk
    ) x
    group by project_id, name, island
)
select s.no, r.org_id, r.project_id, r.series_id, r.bucket_start, r.count, r.sum, r.min, r.max, r.last,
    r.last_time, r.increase,
    s.scalar and {one_value} as single,
    case when not (s.scalar and r.count = 1) then {sketch} end as sketch
from g
join group_series s on s.project_id = g.project_id and s.name = g.name
cross join lateral (
    select * from public.metric_rollups r
    where r.project_id = s.project_id and r.series_id = s.series_id and r.resolution = 60
        and r.bucket_start >= g.range_start and r.bucket_start < g.range_end
    offset 0
) r
""".replace("{one_value}", sketch_sql.one_value("r"))
_STORED_SKETCH = "r.sketch"
_SKETCH_UNLESS_ENTRIES = """case when r.sketch is not null and not exists (
        select 1 from rollup_e1 e
        where e.project_id = r.project_id and e.series_id = r.series_id and e.bucket_start = r.bucket_start
    ) then r.sketch end"""

# Coarser group rows from the finer ones of their keys (stored: just upserted, or from earlier runs).
_COARSE_FINE_SQL = f"""
create temp table group_fine on commit drop as
with t as (
    select distinct project_id, name, date_bin(%(width)s, bucket_start, timestamptz '{ORIGIN}') as bucket_start
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
)
select r.org_id, r.project_id, r.name, r.group_key, r.group_value,
    date_bin(%(width)s, r.bucket_start, timestamptz '{ORIGIN}') as bucket_start, r.bucket_start as ord, r.series,
    r.count, r.sum, r.min, r.max, r.last, r.last_time, r.increase, r.sketch
from g
join group_chunk_keys k on k.project_id = g.project_id and k.name = g.name
cross join lateral (
    select * from public.metric_group_rollups r
    where r.project_id = g.project_id and r.name = g.name and r.group_key = k.group_key
        and r.resolution = %(fine)s and r.bucket_start >= g.range_start and r.bucket_start < g.range_end
    offset 0  -- not flattened: one index range read per group key
) r
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

_UPSERT_SQL = """
insert into public.metric_group_rollups as r
    (org_id, project_id, name, group_key, group_value, resolution, bucket_start, series, count, sum, min, max,
     last, last_time, increase, sketch, p50, p90, p95, p99, hourly_p50, hourly_p90, hourly_p95, hourly_p99,
     updated_at)
select g.org_id, g.project_id, g.name, g.group_key, g.group_value, %(resolution)s, g.bucket_start, g.series, g.count,
    g.sum, g.min, g.max, g.last, g.last_time, g.increase, k.sketch, s.p50, s.p90, s.p95, s.p99, {hourly}, now()
from group_rows g
left join group_row_sketches k on k.gid = g.gid
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
# The 1m rows of minutes rolled for the first time (the usual case, live or catching up) go in plainly, in a
# savepoint: no conflict check before each row's insert (the primary key checks it anyway). A minute rolled again
# (a late point) fails on the key and takes the upsert.
_INSERT_FRESH_SQL = _UPSERT_SQL[: _UPSERT_SQL.index("on conflict")].format(
    hourly="null, null, null, null", hourly_join=""
)
_UPSERT_SQLS = {
    resolution: _UPSERT_SQL.format(
        hourly="a.p50, a.p90, a.p95, a.p99" if resolution == 86400 else "null, null, null, null",
        hourly_join=_HOURLY_SQL if resolution == 86400 else "",
    )
    for resolution in RESOLUTIONS
}


def _roll_chunk(cur: Cursor, written: dict[str, int], *, run_entries: bool) -> tuple[int, int]:
    """The chunk's 1m group rows from the per-series rows, then the coarser ones; returns (pairs, rows read).
    ``run_entries``: the run's per-series 1m entries (rollup_e1) exist."""
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
                as group_value,
            s.type in ('gauge', 'sum') as scalar
        from group_chunk_keys k
        join public.metric_series s on s.project_id = k.project_id and s.name = k.name
        where k.group_key <> '' or not exists (
            select 1 from group_chunk_keys o where o.project_id = k.project_id and o.name = k.name and o.group_key <> ''
        )
        """
    )
    cur.execute(
        "create temp table group_series on commit drop as"
        " select project_id, series_id, name, scalar,"
        " (row_number() over (order by project_id, series_id) - 1)::integer as no"  # series_id order in a project
        " from (select distinct project_id, series_id, name, scalar from group_members) d"
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
    if run_entries:
        cur.execute(
            "create temp table group_series_rows on commit drop as"
            + _SERIES_ROWS_SQL.replace("{sketch}", _SKETCH_UNLESS_ENTRIES)
        )
        source = "group_series_rows"
    else:
        source = f"({_SERIES_ROWS_SQL.replace('{sketch}', _STORED_SKETCH)})"
    carried = group_minutes.roll_minutes(cur, source, run_entries=run_entries)
    cur.execute("select coalesce(sum(series), 0)::bigint as rows from group_rows where group_key = ''")
    row = cur.fetchone()
    rows = int(row["rows"]) if row else 0
    written["1m"] += _finish(cur, 60, carried)
    carried = group_minutes.carry(cur, carried)
    if run_entries:
        cur.execute("drop table group_series_rows")
    fine = 60
    for coarse in (300, 3600, 86400):
        cur.execute("truncate group_rows")
        params = {"fine": fine, "width": timedelta(seconds=coarse)}
        cur.execute(_COARSE_FINE_SQL, params)
        carried = group_minutes.roll_coarse(cur, carried)
        written[RESOLUTIONS[coarse]] += _finish(cur, coarse, carried)
        carried = group_minutes.carry(cur, carried)
        cur.execute("drop table group_fine")
        fine = coarse
    cur.execute("select count(*) as n from group_chunk")
    row = cur.fetchone()
    cur.execute("drop table group_chunk_keys, group_members, group_series, group_ids")
    return (int(row["n"]) if row else 0), rows


def _insert_fresh(cur: Cursor, params: dict[str, Any]) -> int | None:
    """The rows inserted plainly (``_INSERT_FRESH_SQL``), or None when one existed already (nothing written)."""
    try:
        with cur.connection.transaction():
            cur.execute(_INSERT_FRESH_SQL, params)
    except psycopg.errors.UniqueViolation:
        return None
    return max(cur.rowcount, 0)


def _finish(cur: Cursor, resolution: int, entries: group_minutes.Carried) -> int:
    """Upsert group_rows with their sketches (group_row_sketches, collapsed already) and, at 1h and 1d, the quantiles
    (from the rows' sketch entries, ``entries``: row = gid − 1); returns the rows inserted or changed."""
    quantiles: dict[str, list[Any]] = {c: [] for c in ("gid", *QUANTILES)}
    if resolution in QUANTILE_RESOLUTIONS:
        rows, values = rollup_pass.entry_quantiles(
            entries.e_row, entries.e_store, entries.e_idx, entries.e_n, list(QUANTILES.values())
        )
        quantiles = {"gid": [row + 1 for row in rows], **dict(zip(QUANTILES, values, strict=True))}
    params = {"resolution": resolution, **quantiles}
    written = _insert_fresh(cur, params) if resolution == 60 else None
    if written is None:
        cur.execute(_UPSERT_SQLS[resolution], params)
        written = max(cur.rowcount, 0)
    cur.execute("drop table group_row_sketches")
    return written
