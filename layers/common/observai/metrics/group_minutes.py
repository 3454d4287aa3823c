"""The 1m group rows of a chunk, merged in numpy (issue 17): step 2 of the group rollups (``observai.metrics.groups``)
outside Postgres.

The chunk's per-series 1m rows and their sketch entries (the run's own from rollup_e1, or parsed from the stored
sketch) leave Postgres as packed binary rows (``rollup_pass.packed_rows``); each row joins one group per key of its
metric (``group_members``), and per (group, minute): series, count, sum (added one by one in series_id order, as
Postgres' ordered ``sum``), min, max, last of the latest (simultaneous ones: the largest, NaN above every number as
Postgres orders it), increase, and the sketch entries added up and collapsed. The whole metric is merged from the
groups of its key with the fewest values (sums in the order of their values, as Postgres sorts them). The rows go
back into ``group_rows`` and ``group_row_sketches`` with one binary and one text COPY, for ``groups._finish`` to
upsert as before.

In SQL this took four statements sorting and hashing three rows per series row (one per key) and half the job's
server time; the rows are the same (tests/integration/test_rollup_equivalence.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from observai.db.connection import Cursor
from observai.metrics import rollup_pass, sketch_sql, sketch_text
from observai.metrics.rollup_pass import (
    MINUTE_US,
    NULL_LAST,
    NULL_LAST_TIME,
)


@dataclass
class Carried:
    """The sketch entries of the group rows just written (row = gid − 1), for the next level to take instead of
    parsing the sketches it reads back (``group_carry`` in SQL names the rows)."""

    e_row: Any
    e_store: Any
    e_idx: Any
    e_n: Any


_CARRY_SQL = """
create temp table group_carry on commit drop as
select gid, project_id, name, group_key, group_value, bucket_start from group_rows
"""


def carry(cur: Cursor, entries: Carried) -> Carried:
    """Name the rows of ``entries`` (group_rows, just upserted) in group_carry for the next level."""
    cur.execute("drop table if exists group_carry")
    cur.execute(_CARRY_SQL)
    return entries


_ROWS_SQL = f"""
select r.no, r.bucket_start, r.count, coalesce(r.sum, 0) as sum, coalesce(r.min, 0) as min,
    coalesce(r.max, 0) as max, coalesce(r.last, 0) as last, coalesce(r.last_time, '-infinity') as last_time,
    coalesce(r.increase, 0) as increase,
    -- the null columns as bits, and two flags above them: SINGLE (a minute of one value), SKETCHED (a stored sketch)
    {rollup_pass.null_bits("r")} | (r.single::integer << 6) | ((r.sketch is not null)::integer << 7) as nulls
from {{source}} r
"""
_ROWS_COLUMNS = [("no", "int4"), ("bucket_start", "timestamptz"), ("count", "int8"), ("sum", "float8"),
                 ("min", "float8"), ("max", "float8"), ("last", "float8"), ("last_time", "timestamptz"),
                 ("increase", "float8"), ("nulls", "int4")]  # fmt: skip
SINGLE, SKETCHED = 64, 128

_STORE_CODE = "(case {store} when 'p' then 1 when 'n' then 2 else 3 end)::smallint"
_RUN_ENTRIES = f"""
select r.no, e.bucket_start, {_STORE_CODE.format(store="e.store")} as store, e.idx, e.n
from {{source}} r
join rollup_e1 e on e.project_id = r.project_id and e.series_id = r.series_id and e.bucket_start = r.bucket_start
where r.sketch is null and not r.single
union all
"""
_ENTRIES_SQL = f"""
{{from_run}}
select r.no, r.bucket_start, {_STORE_CODE.format(store="k.store")} as store, k.idx, k.n
from {{source}} r
{sketch_sql.entries_of("r")}
where r.sketch is not null
"""
_ENTRIES_COLUMNS = [("no", "int4"), ("bucket_start", "timestamptz"), ("store", "int2"), ("idx", "int4"),
                    ("n", "int8")]  # fmt: skip

# Each group: its metric (a number), whether its key is the one the whole metric is merged from, and the rank of its
# value among its key's (the order Postgres sorts the values in: the whole metric's sums follow it).
_GROUPS_SQL = """
select i.gid, m.metric, coalesce(k.whole_source, false) as whole_source,
    (rank() over (partition by i.project_id, i.name, i.group_key order by i.group_value))::integer as value_rank
from group_ids i
join group_chunk_keys k on k.project_id = i.project_id and k.name = i.name and k.group_key = i.group_key
join group_metric_no m on m.project_id = i.project_id and m.name = i.name
"""

_OUT_TABLE = """
create temp table group_out (
    gid bigint, ggid bigint, metric integer, bucket_start timestamptz, series integer, count bigint, sum float8,
    min float8, max float8, last float8, last_time timestamptz, increase float8, nulls integer
) on commit drop;
create temp table group_row_sketches (gid bigint, sketch jsonb, overflow boolean) on commit drop
"""

_INSERT_ROWS_SQL = """
insert into group_rows (gid, ggid, project_id, name, group_key, group_value, bucket_start, org_id, series, count, sum,
    min, max, last, last_time, increase)
select o.gid, nullif(o.ggid, -1), m.project_id, m.name, coalesce(i.group_key, ''), coalesce(i.group_value, ''),
    o.bucket_start, g.org_id, o.series, o.count,
    case when o.nulls & 1 = 0 then o.sum end, case when o.nulls & 2 = 0 then o.min end,
    case when o.nulls & 4 = 0 then o.max end, case when o.nulls & 8 = 0 then o.last end,
    case when o.nulls & 32 = 0 then o.last_time end, case when o.nulls & 16 = 0 then o.increase end
from group_out o
join group_metric_no m on m.metric = o.metric
join group_orgs g on g.project_id = m.project_id
left join group_ids i on i.gid = o.ggid
"""


def roll_minutes(cur: Cursor, source: str, *, run_entries: bool) -> Carried:
    """group_rows (the chunk's 1m group rows, gid numbered from 1) and group_row_sketches, from ``source`` (the
    chunk's per-series rows: ``groups._SERIES_ROWS_SQL`` as a subquery, or the temp table made of it). The sketch
    entries are read only when a row has a sketch to parse (or ``run_entries``: the run's own, in rollup_e1)."""
    import numpy as np

    cur.execute(
        "create temp table group_metric_no on commit drop as"
        " select project_id, name, (row_number() over (order by project_id, name) - 1)::integer as metric"
        " from (select distinct project_id, name from group_ids) d"
    )
    cur.execute(
        "create temp table group_orgs on commit drop as"
        " select s.project_id, min(s.org_id::text)::uuid as org_id from group_series g"
        " join public.metric_series s on s.project_id = g.project_id and s.series_id = g.series_id"
        " group by s.project_id"
    )
    cur.execute(
        "select s.no, m.gid from group_members m"
        " join group_series s on s.project_id = m.project_id and s.series_id = m.series_id order by s.no, m.gid"
    )
    members = cur.fetchall()
    m_no = np.array([r["no"] for r in members], dtype=np.int64)
    m_gid = np.array([r["gid"] for r in members], dtype=np.int64)
    cur.execute(_GROUPS_SQL)
    groups = cur.fetchall()
    size = max([g["gid"] for g in groups], default=0) + 1
    g_metric = np.zeros(size, dtype=np.int64)
    g_whole = np.zeros(size, dtype=np.bool_)
    g_rank = np.zeros(size, dtype=np.int64)
    for g in groups:
        g_metric[g["gid"]], g_whole[g["gid"]], g_rank[g["gid"]] = g["metric"], g["whole_source"], g["value_rank"]

    rows = rollup_pass.packed_rows(cur, _ROWS_SQL.replace("{source}", source), _ROWS_COLUMNS, {})
    flags = rows["nulls"].astype(np.int32)
    nulls = flags & (SINGLE - 1)
    if run_entries or (flags & SKETCHED).any():
        entries_sql = _ENTRIES_SQL.replace("{from_run}", _RUN_ENTRIES if run_entries else "")
        entries = rollup_pass.packed_rows(cur, entries_sql.replace("{source}", source), _ENTRIES_COLUMNS, {})
    else:  # every row a minute of one value (the usual case for a gauge exported once a minute)
        entries = np.zeros(0, dtype=rollup_pass.packed_dtype(_ENTRIES_COLUMNS))
    nseries = int(m_no.max()) + 1 if len(m_no) else 0
    m_count = np.bincount(m_no, minlength=nseries)
    m_start = np.concatenate([[0], np.cumsum(m_count)[:-1]]) if nseries else m_count

    # Every series row once per group it is in.
    row_no = rows["no"].astype(np.int64)
    take, gid = _expand(row_no, m_count, m_start, m_gid)
    bucket = rows["bucket_start"].astype(np.int64)[take]
    # Series numbers follow series_id within a project (group_series.no): a group's sums add in series_id order.
    order = rollup_pass.sort_order((row_no[take], bucket, gid))
    take, gid, bucket = take[order], gid[order], bucket[order]
    members_rows = _merged(
        gid, bucket, np.ones(len(take), dtype=np.int64), rows["count"].astype(np.int64)[take],
        rows["sum"].astype(np.float64)[take], rows["min"].astype(np.float64)[take],
        rows["max"].astype(np.float64)[take], rows["last"].astype(np.float64)[take],
        rows["last_time"].astype(np.int64)[take], rows["increase"].astype(np.float64)[take],
        nulls[take],
    )  # fmt: skip
    key_gid, key_bucket = members_rows["key"], members_rows["bucket"]
    # Their entries, keyed by group row: the read ones, and those of the minutes of one value (from the value).
    single = np.flatnonzero(flags & SINGLE)
    s_store, s_idx = rollup_pass.value_entries(rows["min"].astype(np.float64)[single])
    e_no = np.concatenate([entries["no"].astype(np.int64), row_no[single]])
    e_take, e_gid = _expand(e_no, m_count, m_start, m_gid)
    e_bucket = np.concatenate([entries["bucket_start"].astype(np.int64), rows["bucket_start"].astype(np.int64)[single]])
    e_row = np.searchsorted(
        rollup_pass.key(key_gid, key_bucket // MINUTE_US), rollup_pass.key(e_gid, e_bucket[e_take] // MINUTE_US)
    )
    e_row, e_store, e_idx, e_n = rollup_pass.sum_entries(
        e_row, np.concatenate([entries["store"].astype(np.int8), s_store])[e_take],
        np.concatenate([entries["idx"].astype(np.int64), s_idx])[e_take],
        np.concatenate([entries["n"].astype(np.int64), np.ones(len(single), dtype=np.int64)])[e_take],
    )  # fmt: skip

    # The whole metric from its whole-source key's groups, in the order of their values.
    source = g_whole[key_gid]
    w_metric = g_metric[key_gid[source]]
    w_bucket = key_bucket[source]
    w_rank = g_rank[key_gid[source]]
    w_pos = np.flatnonzero(source)
    order = rollup_pass.sort_order((w_rank, w_bucket, w_metric))
    w_pos, w_metric, w_bucket = w_pos[order], w_metric[order], w_bucket[order]
    whole_rows = _merged(
        w_metric, w_bucket, members_rows["series"][w_pos], members_rows["count"][w_pos], members_rows["sum"][w_pos],
        members_rows["min"][w_pos], members_rows["max"][w_pos], members_rows["last"][w_pos],
        members_rows["last_time"][w_pos], members_rows["increase"][w_pos], members_rows["nulls"][w_pos],
    )  # fmt: skip
    position = np.full(len(key_gid), -1, dtype=np.int64)  # a group row's place among the whole metric's sources
    position[w_pos] = np.arange(len(w_pos))
    whole_of = whole_rows["segment"]  # a source's whole-metric row
    in_whole = position[e_row] >= 0
    w_e_row, w_e_store, w_e_idx, w_e_n = rollup_pass.sum_entries(
        whole_of[position[e_row[in_whole]]], e_store[in_whole], e_idx[in_whole], e_n[in_whole]
    )

    members_count, whole_count = len(key_gid), len(whole_rows["key"])
    cur.execute(_OUT_TABLE)
    rollup_pass.copy_in(
        cur,
        "copy group_out from stdin (format binary)",
        [
            ("gid", np.arange(1, members_count + whole_count + 1, dtype=np.int64)),
            ("ggid", np.concatenate([key_gid, np.full(whole_count, -1, dtype=np.int64)])),
            ("metric", np.concatenate([g_metric[key_gid], whole_rows["key"]]).astype(np.int32)),
            ("bucket", np.concatenate([key_bucket, whole_rows["bucket"]])),
            *[
                (name, np.concatenate([members_rows[name], whole_rows[name]]).astype(dtype))
                for name, dtype in (
                    ("series", np.int32),
                    ("count", np.int64),
                    ("sum", np.float64),
                    ("min", np.float64),
                    ("max", np.float64),
                    ("last", np.float64),
                    ("last_time", np.int64),
                    ("increase", np.float64),
                    ("nulls", np.int32),
                )
            ],
        ],
    )
    lines = sketch_text.lines(e_row, e_store, e_idx, e_n, 1)
    lines += sketch_text.lines(w_e_row, w_e_store, w_e_idx, w_e_n, members_count + 1)
    if lines:
        with cur.copy("copy group_row_sketches (gid, sketch, overflow) from stdin") as copy:
            copy.write(lines)
    cur.execute(_INSERT_ROWS_SQL)
    cur.execute("drop table group_out, group_metric_no, group_orgs")
    return Carried(
        np.concatenate([e_row, w_e_row + members_count]), np.concatenate([e_store, w_e_store]),
        np.concatenate([e_idx, w_e_idx]), np.concatenate([e_n, w_e_n]),
    )  # fmt: skip


def _expand(no: Any, m_count: Any, m_start: Any, m_gid: Any) -> tuple[Any, Any]:
    """Each element of ``no`` (a series number) repeated once per group of the series: (positions, group ids)."""
    import numpy as np

    if not len(no):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    count = m_count[no]
    take = np.repeat(np.arange(len(no)), count)
    offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return take, m_gid[m_start[no][take] + offset]


def _merged(key: Any, bucket: Any, series: Any, count: Any, total: Any, low: Any, high: Any, last: Any,
            last_time: Any, increase: Any, nulls: Any, *, series_max: bool = False) -> dict[str, Any]:  # fmt: skip
    """Rows sorted by (key, bucket, order) merged per (key, bucket): series and count add, sum and increase added
    in order, min/max, last of the latest (simultaneous ones: the largest; NaN the largest of all) among rows with
    a last, and last_time the latest of those (else of all)."""
    import numpy as np

    n = len(key)
    starts, seg = rollup_pass.segments(key, bucket)
    nseg = len(starts)
    out_sum, out_min, out_max, out_increase, out_nulls = rollup_pass.merge_scalars(
        seg, nseg, total, low, high, increase, nulls
    )
    has_last = (nulls & NULL_LAST) == 0
    time_known = (nulls & NULL_LAST_TIME) == 0
    times = np.where(time_known, last_time, np.iinfo(np.int64).min)
    nan = np.isnan(last)
    pick = rollup_pass.segment_last(starts, seg, (np.where(nan, 0.0, last), nan, times, time_known, has_last))
    picked_has_last = has_last[pick]
    out_last = last[pick]
    out_nulls |= np.where(picked_has_last, 0, NULL_LAST).astype(np.int32)
    # last_time: the latest among rows with a last when there is one (the pick's), else the latest of all.
    latest = np.maximum.reduceat(times, starts) if n else np.zeros(0, dtype=np.int64)
    any_time = np.maximum.reduceat(time_known.astype(np.int8), starts).astype(np.bool_) if n else latest > 0
    filtered = picked_has_last & time_known[pick]
    out_time = np.where(filtered, times[pick], latest)
    time_null = np.where(filtered, False, ~any_time)
    out_nulls |= np.where(time_null, NULL_LAST_TIME, 0).astype(np.int32)
    return {
        "key": key[starts], "bucket": bucket[starts], "segment": seg,
        "series": ((np.maximum if series_max else np.add).reduceat(series, starts)) if n else series[:0],
        "count": np.add.reduceat(count, starts) if n else count[:0],
        "sum": out_sum, "min": out_min, "max": out_max, "last": out_last,
        "last_time": np.where(time_null, 0, out_time), "increase": out_increase, "nulls": out_nulls,
    }  # fmt: skip


# --- coarser group rows ------------------------------------------------------------------------------------------

# group_fine (the stored finer group rows of the chunk's coarse buckets) numbered: each group (hashed, never sorted:
# the rows are wide), then each row, matched to the carried rows by a hash join.
_FINE_KEYS_SQL = """
create temp table group_fine_keys on commit drop as
select (row_number() over () - 1)::integer as grp, project_id, name, group_key, group_value, org_id
from (
    select project_id, name, group_key, group_value, min(org_id::text)::uuid as org_id
    from group_fine group by project_id, name, group_key, group_value
) k
"""
_FINE_NUMBERS_SQL = """
create temp table group_fine_no on commit drop as
select (row_number() over () - 1)::integer as i, k.grp, c.gid as carried, f.*
from group_fine f
join group_fine_keys k on k.project_id = f.project_id and k.name = f.name and k.group_key = f.group_key
    and k.group_value = f.group_value
left join group_carry c on c.project_id = f.project_id and c.name = f.name and c.group_key = f.group_key
    and c.group_value = f.group_value and c.bucket_start = f.ord
"""
_FINE_COLUMNS = [("i", "int4"), ("grp", "int4"), ("bucket_start", "timestamptz"), ("ord", "timestamptz"),
                 ("series", "int4"), ("count", "int8"), ("sum", "float8"), ("min", "float8"), ("max", "float8"),
                 ("last", "float8"), ("last_time", "timestamptz"), ("increase", "float8"),
                 ("nulls", "int4")]  # fmt: skip
_FINE_ROWS_SQL = f"""
select f.i, f.grp, f.bucket_start, f.ord, f.series, f.count, coalesce(f.sum, 0) as sum, coalesce(f.min, 0) as min,
    coalesce(f.max, 0) as max, coalesce(f.last, 0) as last, coalesce(f.last_time, '-infinity') as last_time,
    coalesce(f.increase, 0) as increase, {rollup_pass.null_bits("f")} as nulls
from group_fine_no f
"""
_COARSE_OUT_TABLE = """
create temp table group_out (
    gid bigint, grp integer, bucket_start timestamptz, series integer, count bigint, sum float8, min float8,
    max float8, last float8, last_time timestamptz, increase float8, nulls integer
) on commit drop;
create temp table group_row_sketches (gid bigint, sketch jsonb, overflow boolean) on commit drop
"""
_COARSE_INSERT_SQL = """
insert into group_rows (gid, project_id, name, group_key, group_value, bucket_start, org_id, series, count, sum, min,
    max, last, last_time, increase)
select o.gid, g.project_id, g.name, g.group_key, g.group_value, o.bucket_start, g.org_id, o.series, o.count,
    case when o.nulls & 1 = 0 then o.sum end, case when o.nulls & 2 = 0 then o.min end,
    case when o.nulls & 4 = 0 then o.max end, case when o.nulls & 8 = 0 then o.last end,
    case when o.nulls & 32 = 0 then o.last_time end, case when o.nulls & 16 = 0 then o.increase end
from group_out o
join group_fine_keys g on g.grp = o.grp
"""


@contextmanager
def _hash_joins(cur: Cursor) -> Iterator[None]:
    """Hash joins only, for the statements within (the rest of the transaction as before). The temp tables have no
    statistics: the planner would sort both (wide) sides to merge them, or loop over one for each row of the
    other (analysed, group_carry looks small enough for that: a second per level instead of milliseconds)."""
    cur.execute("select current_setting('enable_mergejoin') as merge, current_setting('enable_nestloop') as loop")
    before = cur.fetchone()
    cur.execute("select set_config('enable_mergejoin', 'off', true), set_config('enable_nestloop', 'off', true)")
    try:
        yield
    finally:
        if before is not None:
            cur.execute(
                "select set_config('enable_mergejoin', %s, true), set_config('enable_nestloop', %s, true)",
                (before["merge"], before["loop"]),
            )


def roll_coarse(cur: Cursor, carried: Carried) -> Carried:
    """group_rows and group_row_sketches of one coarser level from group_fine (``groups._COARSE_FINE_SQL``: the
    finer group rows with their coarse bucket and their own as ``ord``): count adds, series the largest, sum and
    increase added in bucket order, min/max, last of the latest; the sketches added up: the entries ``carried``
    from the level below for the rows it wrote, the stored sketch parsed for the others."""
    import numpy as np

    cur.execute(_FINE_KEYS_SQL)
    with _hash_joins(cur):
        cur.execute(_FINE_NUMBERS_SQL)
    fine = rollup_pass.packed_rows(cur, _FINE_ROWS_SQL, _FINE_COLUMNS, {})
    cur.execute("select i, sketch::text as sketch from group_fine_no where sketch is not null and carried is null")
    p_row, p_store, p_idx, p_n = rollup_pass.parse_sketches((r["i"], r["sketch"]) for r in cur.fetchall())
    cur.execute("select i, carried from group_fine_no where carried is not null order by carried")
    pairs = cur.fetchall()
    carried_rows = np.array([r["carried"] - 1 for r in pairs], dtype=np.int64)  # 1:1 (group, bucket)
    size = max(int(carried.e_row.max()) + 1 if len(carried.e_row) else 0, int(carried_rows.max(initial=-1)) + 1)
    fine_of = np.full(size, -1, dtype=np.int64)  # a carried row → the fine row it is
    fine_of[carried_rows] = np.array([r["i"] for r in pairs], dtype=np.int64)
    taken = fine_of[carried.e_row] >= 0 if len(carried.e_row) else np.zeros(0, dtype=np.bool_)
    e_row = np.concatenate([p_row, fine_of[carried.e_row[taken]]])
    e_store = np.concatenate([p_store, carried.e_store[taken]])
    e_idx = np.concatenate([p_idx, carried.e_idx[taken]])
    e_n = np.concatenate([p_n, carried.e_n[taken]])
    grp = fine["grp"].astype(np.int64)
    bucket = fine["bucket_start"].astype(np.int64)
    order = rollup_pass.sort_order((fine["ord"].astype(np.int64), bucket, grp))
    merged = _merged(
        grp[order], bucket[order], fine["series"].astype(np.int64)[order], fine["count"].astype(np.int64)[order],
        fine["sum"].astype(np.float64)[order], fine["min"].astype(np.float64)[order],
        fine["max"].astype(np.float64)[order], fine["last"].astype(np.float64)[order],
        fine["last_time"].astype(np.int64)[order], fine["increase"].astype(np.float64)[order],
        fine["nulls"].astype(np.int32)[order], series_max=True,
    )  # fmt: skip
    # A fine row (by its number i) → its coarse row.
    coarse_of = np.empty(len(order), dtype=np.int64)
    coarse_of[fine["i"].astype(np.int64)[order]] = merged["segment"]
    e_row, e_store, e_idx, e_n = rollup_pass.sum_entries(coarse_of[e_row], e_store, e_idx, e_n)
    rows = len(merged["key"])
    cur.execute(_COARSE_OUT_TABLE)
    rollup_pass.copy_in(
        cur,
        "copy group_out from stdin (format binary)",
        [
            ("gid", np.arange(1, rows + 1, dtype=np.int64)),
            ("grp", merged["key"].astype(np.int32)),
            ("bucket", merged["bucket"]),
            ("series", merged["series"].astype(np.int32)),
            *[(name, merged[name]) for name in ("count", "sum", "min", "max", "last", "last_time", "increase")],
            ("nulls", merged["nulls"]),
        ],
    )
    lines = sketch_text.lines(e_row, e_store, e_idx, e_n, 1)
    if lines:
        with cur.copy("copy group_row_sketches (gid, sketch, overflow) from stdin") as copy:
            copy.write(lines)
    cur.execute(_COARSE_INSERT_SQL)
    cur.execute("drop table group_out, group_fine_no, group_fine_keys")
    return Carried(e_row, e_store, e_idx, e_n)
