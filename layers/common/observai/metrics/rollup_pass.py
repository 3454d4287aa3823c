"""The aggregation's vectorised pass (issue 17): gauges and sums, raw points → 1m, 5m, 1h and 1d rows in one pass
outside Postgres.

Step 3 and 4 of ``observai.metrics.rollup`` for the scalar kinds, computed in numpy instead of a dozen SQL statements
over temp tables (each a few microseconds a row: most of the job's server time):

1. the points of the run's touched ranges (``rollup_ranges``: ``no`` and ``sid`` number the ranges and the series),
   with the anchor point of each counter range, leave Postgres as one bytea of fixed-width binary rows
   (``packed_rows``, read with ``numpy.frombuffer``);
2. per (series, minute): count, sum (in time order, added one by one as Postgres' ``sum`` does: the very same
   float), min, max, last, last_time, increase (counters reset-aware, delta counters their sum), and the DDSketch
   entries of gauge values (``sketch.Sketch.add``'s index rule, with Postgres' own ``ln`` where a value lies on a
   bucket's edge);
3. per coarser level, from the finer rows of this pass and the stored finer rows of the other slots of each touched
   coarse bucket (one primary-key probe each, their sketches parsed): count, sum and increase added in bucket order,
   min/max, last of the latest, sketch entries added and collapsed (each store keeps its top MAX_BUCKETS indexes);
4. every row goes back in one binary COPY (a sketch of one entry is written by SQL from its three numbers, the
   others' JSON in a second, text COPY), then one INSERT for 1m rows of fresh ranges and one upsert per level for
   the rest (an unchanged row is not rewritten); the 1m sketch entries go to ``rollup_e1`` (binary COPY) for the
   group rollups.

The rows are the ones the SQL job wrote (tests/integration/test_rollup_equivalence.py compares them column by
column). numpy is imported at the first run, never at cold start.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from observai.db.connection import Cursor
from observai.metrics import sketch_text
from observai.metrics.sketch import LOG_GAMMA, MAX_BUCKETS, ZERO_THRESHOLD

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

US = 1_000_000
MINUTE_US = 60 * US
LEVELS = (300, 3600, 86400)  # coarse resolutions in seconds, each rolled from the one before (60 first)
# Store codes of sketch entries: 1 'p', 2 'n', 3 'z' (idx 0).
STORES = ("", "p", "n", "z")
KINDS = {"gauge": 0, "counter": 1, "delta_counter": 2}
NULL_TS = -(2**63)  # binary COPY of timestamptz '-infinity': the null start_time
# Bits of rollup_out.nulls: a null sum, min, max, last, increase, last_time.
NULL_SUM, NULL_MIN, NULL_MAX, NULL_LAST, NULL_INCREASE, NULL_LAST_TIME = 1, 2, 4, 8, 16, 32
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


@dataclass
class Level:
    """The rows of one resolution computed by the pass (sorted by sid, bucket), with their sketch entries (sorted
    by row, store, idx; collapsed)."""

    resolution: int
    sid: NDArray[np.int64]
    bucket: NDArray[np.int64]  # µs since 2000-01-01 UTC (Postgres' epoch)
    count: NDArray[np.int64]
    sum: NDArray[np.float64]
    min: NDArray[np.float64]
    max: NDArray[np.float64]
    last: NDArray[np.float64]
    last_time: NDArray[np.int64]
    increase: NDArray[np.float64]
    nulls: NDArray[np.int32]
    fresh: NDArray[np.bool_]
    e_row: NDArray[np.int64]
    e_store: NDArray[np.int8]
    e_idx: NDArray[np.int64]
    e_n: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.sid)


def roll(cur: Cursor, *, lookback_us: int, entries: bool = True) -> dict[int, int]:
    """The scalar kinds' rows of every level for the run's touched ranges; returns rows inserted or changed per
    resolution (seconds). Creates rollup_sids (sid → series) and, with ``entries`` (the run's own group step follows),
    rollup_e1 (the 1m sketch entries)."""
    import numpy as np

    cur.execute(
        "create temp table rollup_sids on commit drop as"
        " select distinct sid, org_id, project_id, series_id from rollup_ranges"
    )
    cur.execute("select no, sid, kind, fresh, range_start, range_end from rollup_ranges order by no")
    ranges = cur.fetchall()
    cur.execute("select sid, org_id, project_id, series_id from rollup_sids order by sid")
    series = cur.fetchall()
    r_sid = np.array([r["sid"] for r in ranges], dtype=np.int64)
    r_kind = np.array([KINDS.get(r["kind"], -1) for r in ranges], dtype=np.int8)
    r_fresh = np.array([r["fresh"] for r in ranges], dtype=np.bool_)
    r_start = np.array([_us(r["range_start"]) for r in ranges], dtype=np.int64)
    r_end = np.array([_us(r["range_end"]) for r in ranges], dtype=np.int64)

    minutes = _minutes(cur, r_sid, r_kind, r_fresh, lookback_us)
    if entries:
        _write_entries(cur, minutes, series)
    levels = [minutes]
    fine = minutes
    for coarse in LEVELS:
        fine = _coarse(cur, fine, coarse, r_sid, r_start, r_end)
        levels.append(fine)
    written: dict[int, int] = {}
    for i, level in enumerate(levels):
        if _copy_fresh(cur, level, series):
            written[level.resolution] = int(level.fresh.sum())
            levels[i] = _subset(level, ~level.fresh)
    for resolution, rows in _write_rows(cur, levels).items():
        written[resolution] = written.get(resolution, 0) + rows
    return written


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # Postgres' epoch: binary timestamps count microseconds from it


def _us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


# --- 1. the points ---------------------------------------------------------------------------------------------

_POINTS_SQL = """
select g.no, p.time, coalesce(p.start_time, '-infinity') as start, coalesce(p.value, 0) as value,
    p.value is null as vnull, false as anchor
from rollup_ranges g
cross join lateral (
    select p.time, p.start_time, p.value from public.metric_points p
    where p.project_id = g.project_id and p.series_id = g.series_id
        and p.time >= g.range_start and p.time < g.range_end
    offset 0  -- never flattened: one index range read per series range
) p
where g.kind in ('gauge', 'counter', 'delta_counter')
union all
select g.no, a.time, coalesce(a.start_time, '-infinity'), coalesce(a.value, 0), a.value is null, true
from rollup_ranges g
cross join lateral (
    select p.time, p.start_time, p.value from public.metric_points p
    where p.project_id = g.project_id and p.series_id = g.series_id
        and p.time < g.range_start and p.time >= g.range_start - %(lookback)s
    order by p.time desc limit 1
) a
where g.kind = 'counter'
"""
_POINTS_COLUMNS = [("no", "int4"), ("time", "timestamptz"), ("start", "timestamptz"), ("value", "float8"),
                   ("vnull", "bool"), ("anchor", "bool")]  # fmt: skip

# Postgres' binary send function and the numpy type of each column type packed_rows reads.
_SEND = {
    "uuid": ("uuid_send", "V16"),
    "int2": ("int2send", ">i2"),
    "int4": ("int4send", ">i4"),
    "int8": ("int8send", ">i8"),
    "float8": ("float8send", ">f8"),
    "timestamptz": ("timestamptz_send", ">i8"),
    "bool": ("boolsend", "?"),
}


def packed_rows(cur: Cursor, query: str, columns: list[tuple[str, str]], params: dict[str, Any]) -> Any:
    """The rows of ``query`` (columns named and typed as ``columns``, never null) as a numpy record array: each
    row's columns in their binary form, concatenated server-side into one bytea (``string_agg``), read with
    ``numpy.frombuffer``. A COPY would send one message per row, and reading them costs more than the rest of the
    pass."""
    import numpy as np

    cur.execute(f"select string_agg({packed_row(columns)}, ''::bytea) as packed from ({query}) q", params, binary=True)
    found = cur.fetchone()
    packed = found["packed"] if found is not None and found["packed"] is not None else b""
    return np.frombuffer(packed, dtype=packed_dtype(columns))


def packed_row(columns: list[tuple[str, str]], alias: str = "q") -> str:
    """SQL of one row of ``columns`` (of ``alias``) in binary form: each column's send function, concatenated."""
    return " || ".join(f"{_SEND[kind][0]}({alias}.{name})" for name, kind in columns)


def null_bits(alias: str) -> str:
    """SQL of ``alias``'s null columns (sum, min, max, last, increase, last_time) as one integer of NULL_* bits
    (Postgres' | and << share one precedence: each shift in parentheses)."""
    return (
        f"(({alias}.sum is null)::integer | (({alias}.min is null)::integer << 1)"
        f" | (({alias}.max is null)::integer << 2) | (({alias}.last is null)::integer << 3)"
        f" | (({alias}.increase is null)::integer << 4) | (({alias}.last_time is null)::integer << 5))"
    )


def packed_dtype(columns: list[tuple[str, str]]) -> Any:
    """The numpy record type of ``packed_rows`` for ``columns``."""
    import numpy as np

    return np.dtype([(name, _SEND[kind][1]) for name, kind in columns])


def _minutes(cur: Cursor, r_sid: Any, r_kind: Any, r_fresh: Any, lookback_us: int) -> Level:
    import numpy as np

    rows = packed_rows(cur, _POINTS_SQL, _POINTS_COLUMNS, {"lookback": timedelta(microseconds=lookback_us)})
    no = rows["no"].astype(np.int64)
    t = rows["time"].astype(np.int64)
    order = sort_order((t, no))
    no, t = no[order], t[order]
    start = rows["start"].astype(np.int64)[order]
    v = rows["value"].astype(np.float64)[order]
    vnull = rows["vnull"][order]
    anchor = rows["anchor"][order]
    kind = r_kind[no] if len(no) else np.zeros(0, dtype=np.int8)
    finite = ~vnull & np.isfinite(v)

    # Counters: the increase of each point over the one before it in its range (the anchor included), reset-aware.
    n = len(no)
    has_prev = np.zeros(n, dtype=np.bool_)
    if n > 1:
        has_prev[1:] = no[1:] == no[:-1]
    prev_v = np.empty(n, dtype=np.float64)
    prev_null = np.ones(n, dtype=np.bool_)
    prev_start = np.full(n, NULL_TS, dtype=np.int64)
    if n > 1:
        prev_v[1:] = v[:-1]
        prev_null[1:] = ~has_prev[1:] | vnull[:-1]
        prev_start[1:] = np.where(has_prev[1:], start[:-1], NULL_TS)
    start_known = start != NULL_TS
    with np.errstate(invalid="ignore", over="ignore"):
        # Postgres orders NaN above every number: v < NaN holds for any finite v.
        dropped = np.isnan(prev_v) | (v < prev_v)
        restarted = start_known & (prev_start != NULL_TS) & (start > prev_start)
        delta = np.where(
            prev_null,
            np.where(start_known & (start >= t - lookback_us), v, 0.0),
            np.where(dropped | restarted, v, v - prev_v),
        )
    delta_known = (kind == KINDS["counter"]) & ~anchor & finite

    # Minutes (anchors excluded): contiguous in (range, time) order.
    keep = ~anchor
    no, t, v, vnull, finite, kind = no[keep], t[keep], v[keep], vnull[keep], finite[keep], kind[keep]
    delta, delta_known = delta[keep], delta_known[keep]
    bucket = t - np.mod(t, MINUTE_US)
    n = len(no)
    starts, seg = segments(no, bucket)
    count = np.diff(np.append(starts, n)).astype(np.int64)
    ends = np.append(starts[1:], n)[: len(starts)] - 1
    nseg = len(starts)
    seg_no = no[starts]
    seg_kind = kind[starts]

    nulls = np.zeros(nseg, dtype=np.int32)
    total, has = ordered_sum(v[finite], seg[finite], nseg)
    nulls |= np.where(has, 0, NULL_SUM).astype(np.int32)
    low, high = min_max(v[finite], seg[finite], nseg)
    nulls |= np.where(has, 0, NULL_MIN | NULL_MAX).astype(np.int32)
    last = v[ends].copy()
    nulls |= np.where(vnull[ends], NULL_LAST, 0).astype(np.int32)
    increase = np.full(nseg, np.nan)
    counter_sum, counter_has = ordered_sum(delta[delta_known], seg[delta_known], nseg)
    increase = np.where(seg_kind == KINDS["counter"], np.where(counter_has, counter_sum, 0.0), increase)
    increase = np.where(seg_kind == KINDS["delta_counter"], np.where(has, total, 0.0), increase)
    nulls |= np.where(seg_kind == KINDS["gauge"], NULL_INCREASE, 0).astype(np.int32)

    gauge = finite & (kind == KINDS["gauge"])
    e_row, e_store, e_idx, e_n = _entries(seg[gauge], v[gauge])
    return Level(
        resolution=60, sid=r_sid[seg_no], bucket=bucket[starts], count=count, sum=total, min=low, max=high,
        last=last, last_time=t[ends], increase=increase, nulls=nulls, fresh=r_fresh[seg_no],
        e_row=e_row, e_store=e_store, e_idx=e_idx, e_n=e_n,
    )  # fmt: skip


def sort_order(keys: Sequence[Any]) -> Any:
    """``numpy.lexsort(keys)`` (the last key primary; ties in input order) for integer keys: when their ranges fit
    in 63 bits together, one stable argsort of the keys packed into one int64 (two to three times faster than
    lexsort's sort per key), else lexsort itself."""
    import numpy as np

    if not len(keys) or len(keys[0]) < 2:
        return np.lexsort(keys) if len(keys) else np.zeros(0, dtype=np.int64)
    spans = []
    for k in keys:
        if k.dtype.kind not in "iub":
            return np.lexsort(keys)
        lo, hi = int(k.min()), int(k.max())
        spans.append((lo, (hi - lo).bit_length()))
    if sum(bits for _, bits in spans) > 63:
        return np.lexsort(keys)
    packed = np.zeros(len(keys[0]), dtype=np.int64)
    shift = 0
    for k, (lo, bits) in zip(keys, spans, strict=True):
        if bits:
            packed |= (k.astype(np.int64) - lo) << shift
        shift += bits
    return np.argsort(packed, kind="stable")


def segment_last(starts: Any, seg: Any, keys: Sequence[Any]) -> Any:
    """Per segment (rows grouped contiguously: each segment's first row ``starts``, each row's segment ``seg``), the
    row ``numpy.lexsort((*keys, seg))`` puts last: the largest by ``keys`` (the last key primary; floats without NaN),
    ties to the latest row. Successive maxima per segment (a pass per key), no sort."""
    import numpy as np

    n = len(seg)
    if not n:
        return np.zeros(0, dtype=np.int64)
    alive = np.ones(n, dtype=np.bool_)
    for k in reversed(keys):
        k = k.astype(np.int8) if k.dtype == np.bool_ else k
        lowest = -np.inf if k.dtype.kind == "f" else np.iinfo(k.dtype).min
        masked = np.where(alive, k, lowest)
        alive &= masked == np.maximum.reduceat(masked, starts)[seg]
    return np.maximum.reduceat(np.where(alive, np.arange(n), -1), starts)


def segments(a: Any, b: Any) -> tuple[Any, Any]:
    """Rows sorted by (a, b) cut where either changes: each segment's first row, and each row's segment."""
    import numpy as np

    head = np.ones(len(a), dtype=np.bool_)
    if len(a) > 1:
        head[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return np.flatnonzero(head), np.cumsum(head) - 1


def ordered_sum(x: Any, seg: Any, nseg: int) -> tuple[Any, Any]:
    """Per segment (``seg`` sorted), the sum of its values added one by one in order (Postgres' float8 sum: the
    very same float, not numpy's pairwise sum), and whether it had any value."""
    import numpy as np

    out = np.zeros(nseg, dtype=np.float64)
    has = np.zeros(nseg, dtype=np.bool_)
    if not len(x):
        return out, has
    first = np.ones(len(seg), dtype=np.bool_)
    first[1:] = seg[1:] != seg[:-1]
    starts = np.flatnonzero(first)
    lengths = np.diff(np.append(starts, len(seg)))
    ids = seg[starts]
    has[ids] = True
    acc = x[starts].copy()
    long = lengths > 32
    for k in range(1, min(int(lengths.max()), 33)):
        active = (lengths > k) & ~long
        if not active.any():
            break
        acc[active] += x[starts[active] + k]
    for i in np.flatnonzero(long):  # a long minute: a running sum (np.cumsum adds one by one)
        acc[i] = np.cumsum(x[starts[i] : starts[i] + lengths[i]])[-1]
    out[ids] = acc
    return out, has


def merge_scalars(
    seg: Any, nseg: int, total: Any, low: Any, high: Any, increase: Any, nulls: Any
) -> tuple[Any, Any, Any, Any, Any]:
    """Rows (``seg`` sorted, each row's place in its order) merged per segment, nulls left out: sum and increase
    added in order, min, max; and the null bits of the results (NULL_LAST and NULL_LAST_TIME left to the caller)."""
    import numpy as np

    out_nulls = np.zeros(nseg, dtype=np.int32)
    known = (nulls & NULL_SUM) == 0
    out_sum, has = ordered_sum(total[known], seg[known], nseg)
    out_nulls |= np.where(has, 0, NULL_SUM).astype(np.int32)
    known = (nulls & NULL_MIN) == 0
    out_min, _ = min_max(low[known], seg[known], nseg)
    out_nulls |= np.where(present(seg[known], nseg), 0, NULL_MIN).astype(np.int32)
    known = (nulls & NULL_MAX) == 0
    _, out_max = min_max(high[known], seg[known], nseg)
    out_nulls |= np.where(present(seg[known], nseg), 0, NULL_MAX).astype(np.int32)
    known = (nulls & NULL_INCREASE) == 0
    out_increase, has = ordered_sum(increase[known], seg[known], nseg)
    out_nulls |= np.where(has, 0, NULL_INCREASE).astype(np.int32)
    return out_sum, out_min, out_max, out_increase, out_nulls


def present(seg: Any, nseg: int) -> Any:
    """Per segment, whether ``seg`` names it."""
    import numpy as np

    present = np.zeros(nseg, dtype=np.bool_)
    present[seg] = True
    return present


def min_max(x: Any, seg: Any, nseg: int) -> tuple[Any, Any]:
    import numpy as np

    low = np.full(nseg, np.nan)
    high = np.full(nseg, np.nan)
    if len(x):
        first = np.ones(len(seg), dtype=np.bool_)
        first[1:] = seg[1:] != seg[:-1]
        starts = np.flatnonzero(first)
        low[seg[starts]] = np.minimum.reduceat(x, starts)
        high[seg[starts]] = np.maximum.reduceat(x, starts)
    return low, high


def sketch_index(a: Any) -> Any:
    """``ceil(ln(|x|) / LOG_GAMMA)`` for |x| ≥ ZERO_THRESHOLD, as Postgres computes it: numpy's log may differ from
    the C library's by an ulp, which matters only on a bucket's edge; those few values take math.log."""
    import numpy as np

    q = np.log(a) / LOG_GAMMA
    idx = np.ceil(q)
    edge = np.flatnonzero(np.abs(q - np.rint(q)) < 1e-7)
    for i in edge:
        idx[i] = math.ceil(math.log(float(a[i])) / LOG_GAMMA)
    return idx.astype(np.int64)


def value_entries(v: Any) -> tuple[Any, Any]:
    """Each finite value's sketch entry: (store, idx), as ``Sketch.add`` files it."""
    import numpy as np

    a = np.abs(v)
    zero = a < ZERO_THRESHOLD
    store = np.where(zero, 3, np.where(v > 0, 1, 2)).astype(np.int8)
    idx = np.zeros(len(v), dtype=np.int64)
    if (~zero).any():
        idx[~zero] = sketch_index(a[~zero])
    return store, idx


def _entries(seg: Any, v: Any) -> tuple[Any, Any, Any, Any]:
    """The sketch entries (row, store, idx, n) of gauge values per row, sorted, collapsed."""
    import numpy as np

    store, idx = value_entries(v)
    return sum_entries(seg.astype(np.int64), store, idx, np.ones(len(v), dtype=np.int64))


def sum_entries(row: Any, store: Any, idx: Any, n: Any) -> tuple[Any, Any, Any, Any]:
    """Entries added up per (row, store, idx), each store collapsed below its top index − (MAX_BUCKETS − 1)."""
    import numpy as np

    if not len(row):
        return row, store, idx, n
    # Collapse: the top index per (row, store) bounds the kept ones.
    order = sort_order((idx, store, row))
    row, store, idx, n = row[order], store[order], idx[order], n[order]
    group_first = np.ones(len(row), dtype=np.bool_)
    group_first[1:] = (row[1:] != row[:-1]) | (store[1:] != store[:-1])
    starts = np.flatnonzero(group_first)
    top = np.maximum.reduceat(idx, starts)
    group = np.cumsum(group_first) - 1
    floor = top[group] - (MAX_BUCKETS - 1)
    idx = np.maximum(idx, floor)
    first = np.ones(len(row), dtype=np.bool_)
    first[1:] = group_first[1:] | (idx[1:] != idx[:-1])
    starts = np.flatnonzero(first)
    return row[starts], store[starts], idx[starts], np.add.reduceat(n, starts)


def entry_quantiles(
    e_row: Any, e_store: Any, e_idx: Any, e_n: Any, qs: Sequence[float]
) -> tuple[list[int], list[list[float]]]:
    """Quantiles ``qs`` of each row having entries (collapsed, as ``sum_entries`` leaves them): the rows, and per
    quantile one value per row; what ``sketch.encoded_quantile`` answers on the row's encoded sketch, without
    encoding or parsing it. The values walk from the most negative (the n store, highest index first) through the
    zeros to the positive store (lowest index first), sorted once for every quantile; the rank is
    ``nearest_rank``'s and the value ``bucket_value``'s, both in Python for the one entry per row that holds it."""
    import numpy as np

    from observai.metrics.sketch import bucket_value, nearest_rank

    keep = e_n > 0  # as the encoded sketch's parsing drops counts that are not positive
    e_row, e_store, e_idx, e_n = e_row[keep], e_store[keep], e_idx[keep], e_n[keep]
    if not len(e_row):
        return [], [[] for _ in qs]
    # The walk's order within a row: n by index descending, then z, then p by index ascending.
    section = np.select([e_store == 2, e_store == 3], [0, 1], 2)
    order = sort_order((np.where(e_store == 2, -e_idx, e_idx), section, e_row))
    row, store, idx = e_row[order], e_store[order], e_idx[order]
    cum = np.cumsum(e_n[order])
    first = np.flatnonzero(np.concatenate([[True], row[1:] != row[:-1]]))
    last = np.append(first[1:], len(row)) - 1
    before = np.concatenate([[0], cum[last[:-1]]]).tolist()
    totals = (cum[last] - before).tolist()
    values = []
    for q in qs:
        targets = np.array([b + nearest_rank(q, t) for b, t in zip(before, totals, strict=True)], dtype=cum.dtype)
        at = np.searchsorted(cum, targets, side="left")
        values.append([
            0.0 if s == 3 else (bucket_value(i) if s == 1 else -bucket_value(i))
            for s, i in zip(store[at].tolist(), idx[at].tolist(), strict=True)
        ])  # fmt: skip
    return row[first].tolist(), values


# --- 2. coarser levels ----------------------------------------------------------------------------------------

# The probed rows: their numbers as packed rows (``packed_rows``' form; a null is 0 with its bit in ``nulls``), their
# sketches as (i, JSON) arrays.
_PROBE_COLUMNS = [("i", "int4"), ("count", "int8"), ("sum", "float8"), ("min", "float8"), ("max", "float8"),
                  ("last", "float8"), ("increase", "float8"), ("last_time", "int8"), ("nulls", "int4")]  # fmt: skip
_PROBE_SQL = f"""
select string_agg({packed_row(_PROBE_COLUMNS)}, ''::bytea) as packed,
    array_agg(q.i) filter (where q.sketch is not null) as sketch_rows,
    array_agg(q.sketch) filter (where q.sketch is not null) as sketches
from (
select u.i, r.count, coalesce(r.sum, 0) as sum, coalesce(r.min, 0) as min, coalesce(r.max, 0) as max,
    coalesce(r.last, 0) as last, coalesce(r.increase, 0) as increase, {null_bits("r")} as nulls,
    r.sketch::text as sketch,
    coalesce((extract(epoch from r.last_time - timestamptz '2000-01-01 00:00:00+00') * 1000000)::bigint, 0)
        as last_time
from rollup_probe u
join rollup_sids s on s.sid = u.sid
cross join lateral (
    select * from public.metric_rollups r
    where r.project_id = s.project_id and r.series_id = s.series_id and r.resolution = %(fine)s
        and r.bucket_start = u.bucket_start
    offset 0  -- one probe per other slot, never a scan of the level joined to them
) r
) q
"""


def _coarse(cur: Cursor, fine: Level, coarse: int, r_sid: Any, r_start: Any, r_end: Any) -> Level:
    """The coarse rows of every coarse bucket containing a touched minute, from ``fine`` (this pass's rows of the
    level below) and the stored rows of the level below in the other slots."""
    import numpy as np

    width, fine_width = coarse * US, fine.resolution * US
    # The touched coarse buckets: every minute of every range (all kinds: histograms' coarse rows too).
    first = r_start - np.mod(r_start, width)
    last = (r_end - 1) - np.mod(r_end - 1, width)
    spans = (last - first) // width + 1
    owner = np.repeat(np.arange(len(r_sid)), spans)
    offset = np.arange(int(spans.sum())) - np.repeat(np.cumsum(spans) - spans, spans)
    keys = np.unique(key(r_sid[owner], first[owner] // width + offset))
    c_sid, c_bucket = keys >> 32, (keys & 0xFFFFFFFF) * width
    # The other slots: each coarse bucket's fine slots that this pass did not compute.
    slots = coarse // fine.resolution
    o_sid = np.repeat(c_sid, slots)
    o_bucket = np.repeat(c_bucket, slots) + np.tile(np.arange(slots, dtype=np.int64) * fine_width, len(c_sid))
    others = ~_among(key(o_sid, o_bucket // fine_width), key(fine.sid, fine.bucket // fine_width))
    o_sid, o_bucket = o_sid[others], o_bucket[others]
    stored = _stored(cur, o_sid, o_bucket, fine.resolution)

    # Every finer row of the coarse buckets: this pass's, then the stored ones; sorted by (sid, fine bucket).
    sid = np.concatenate([fine.sid, stored.sid])
    bucket = np.concatenate([fine.bucket, stored.bucket])
    order = sort_order((bucket, sid))
    sid, bucket = sid[order], bucket[order]
    # A coarse row is fresh (none is stored) when every finer row of its bucket is this pass's and fresh: the job
    # writes a bucket's levels together, and a partition drops them together (``_copy_fresh`` checks all the same).
    fresh_fine = np.concatenate([fine.fresh, np.zeros(len(stored), dtype=np.bool_)])[order]
    count = np.concatenate([fine.count, stored.count])[order]
    total = np.concatenate([fine.sum, stored.sum])[order]
    low = np.concatenate([fine.min, stored.min])[order]
    high = np.concatenate([fine.max, stored.max])[order]
    last = np.concatenate([fine.last, stored.last])[order]
    last_time = np.concatenate([fine.last_time, stored.last_time])[order]
    increase = np.concatenate([fine.increase, stored.increase])[order]
    nulls = np.concatenate([fine.nulls, stored.nulls])[order]
    where = np.empty(len(order), dtype=np.int64)
    where[order] = np.arange(len(order))  # a finer row's position after sorting

    c_of = bucket - np.mod(bucket, width)
    n = len(sid)
    starts, seg = segments(sid, c_of)
    nseg = len(starts)
    out_sum, out_min, out_max, out_increase, out_nulls = merge_scalars(seg, nseg, total, low, high, increase, nulls)
    # last: the row with the latest last_time (nulls last), simultaneous ones: the latest slot.
    time_known = (nulls & NULL_LAST_TIME) == 0
    pick = segment_last(starts, seg, (bucket, np.where(time_known, last_time, np.iinfo(np.int64).min), time_known))
    out_last = last[pick]
    out_nulls |= np.where((nulls[pick] & NULL_LAST) != 0, NULL_LAST, 0).astype(np.int32)
    any_time = np.maximum.reduceat(time_known.astype(np.int8), starts).astype(np.bool_)
    out_last_time = np.where(any_time, last_time[pick], 0)
    out_nulls |= np.where(any_time, 0, NULL_LAST_TIME).astype(np.int32)
    out_count = np.add.reduceat(count, starts) if n else np.zeros(0, dtype=np.int64)

    # Sketch entries: the finer rows' (this pass's by row number, the stored ones' parsed), re-keyed by coarse row.
    e_row = np.concatenate([seg[where[fine.e_row]], seg[where[len(fine) + stored.e_row]]]) if n else fine.e_row
    e_store = np.concatenate([fine.e_store, stored.e_store])
    e_idx = np.concatenate([fine.e_idx, stored.e_idx])
    e_n = np.concatenate([fine.e_n, stored.e_n])
    e_row, e_store, e_idx, e_n = sum_entries(e_row, e_store, e_idx, e_n)
    return Level(
        resolution=coarse, sid=sid[starts], bucket=c_of[starts], count=out_count, sum=out_sum, min=out_min,
        max=out_max, last=out_last, last_time=out_last_time, increase=out_increase, nulls=out_nulls,
        fresh=np.logical_and.reduceat(fresh_fine, starts) if n else np.zeros(0, dtype=np.bool_),
        e_row=e_row, e_store=e_store, e_idx=e_idx, e_n=e_n,
    )  # fmt: skip


def _among(wanted: Any, keys: Any) -> Any:
    """``numpy.isin(wanted, keys)`` for ``keys`` ascending (a Level's rows, sorted by sid and bucket): a binary search
    each, no sort of either."""
    import numpy as np

    if not len(keys) or not (keys[1:] >= keys[:-1]).all():
        return np.isin(wanted, keys)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return keys[at] == wanted


def key(sid: Any, slot: Any) -> Any:
    """One sortable int64 of a (number under 2^31, slot number under 2^32) pair."""
    return (sid.astype("int64") << 32) | slot.astype("int64")


class _EncodedSketch(msgspec.Struct):
    """The stored encoding (``observai.metrics.sketch``), its indexes and counts decoded to integers in C."""

    p: dict[int, int] | None = None
    n: dict[int, int] | None = None
    z: int | None = None


_SKETCH_DECODER = msgspec.json.Decoder(_EncodedSketch)


def _stored(cur: Cursor, sid: Any, bucket: Any, resolution: int) -> Level:
    """The stored rows of ``resolution`` at (sid, bucket), those that exist, as a Level (entries parsed)."""
    import numpy as np

    rows = np.zeros(0, dtype=packed_dtype(_PROBE_COLUMNS))
    sketched: dict[int, str] = {}
    if len(sid):
        cur.execute("drop table if exists rollup_probe")
        cur.execute("create temp table rollup_probe (i integer, sid integer, bucket_start timestamptz) on commit drop")
        copy_in(
            cur,
            "copy rollup_probe (i, sid, bucket_start) from stdin (format binary)",
            [("i", np.arange(len(sid), dtype=np.int32)), ("sid", sid.astype(np.int32)), ("bucket", bucket)],
        )
        cur.execute(_PROBE_SQL, {"fine": resolution}, binary=True)
        found = cur.fetchone()
        if found is not None and found["packed"] is not None:
            rows = np.frombuffer(found["packed"], dtype=packed_dtype(_PROBE_COLUMNS))
            sketched = dict(zip(found["sketch_rows"] or [], found["sketches"] or [], strict=True))
    i = rows["i"].astype(np.int64)
    nulls = rows["nulls"].astype(np.int32)
    columns = {
        name: np.where(nulls & bit, math.nan, rows[name].astype(np.float64))
        for name, bit in (("sum", NULL_SUM), ("min", NULL_MIN), ("max", NULL_MAX), ("last", NULL_LAST),
                          ("increase", NULL_INCREASE))
    }  # fmt: skip
    # A row's number is its position here: the sketches come keyed by the probe's i.
    probes = i.tolist()
    has_sketch = np.fromiter((probe in sketched for probe in probes), dtype=np.bool_, count=len(probes))
    e_row, e_store, e_idx, e_n = parse_sketches(
        (number, sketched[probes[number]]) for number in np.flatnonzero(has_sketch).tolist()
    )
    count = rows["count"].astype(np.int64)
    if resolution == 60 and len(rows):
        # A minute of one value stores no sketch (``one_value``): its one entry, from min.
        single = np.flatnonzero(~has_sketch & one_value(count, columns["min"], nulls))
        s_store, s_idx = value_entries(columns["min"][single])
        e_row, e_store, e_idx, e_n = (
            np.concatenate([e_row, single]), np.concatenate([e_store, s_store]), np.concatenate([e_idx, s_idx]),
            np.concatenate([e_n, np.ones(len(single), dtype=np.int64)]),
        )  # fmt: skip
        order = sort_order((e_idx, e_store, e_row))
        e_row, e_store, e_idx, e_n = e_row[order], e_store[order], e_idx[order], e_n[order]
    return Level(
        resolution=resolution, sid=sid[i] if len(i) else np.zeros(0, dtype=np.int64),
        bucket=bucket[i] if len(i) else np.zeros(0, dtype=np.int64),
        count=count, sum=columns["sum"], min=columns["min"],
        max=columns["max"], last=columns["last"], last_time=rows["last_time"].astype(np.int64),
        increase=columns["increase"], nulls=nulls, fresh=np.zeros(len(rows), dtype=np.bool_),
        e_row=e_row, e_store=e_store, e_idx=e_idx, e_n=e_n,
    )  # fmt: skip


def parse_sketches(sketches: Iterable[tuple[int, str]]) -> tuple[Any, Any, Any, Any]:
    """The entries (row, store, idx, n) of encoded sketches given as (row, JSON text), in their order."""
    import numpy as np

    e_row: list[int] = []
    e_store: list[int] = []
    e_idx: list[int] = []
    e_n: list[int] = []
    for number, text in sketches:
        sketch = _SKETCH_DECODER.decode(text)
        for code, entries in ((1, sketch.p), (2, sketch.n)):
            if entries:
                e_row.extend([number] * len(entries))
                e_store.extend([code] * len(entries))
                e_idx.extend(entries)
                e_n.extend(entries.values())
        if sketch.z is not None and sketch.z > 0:
            e_row.append(number)
            e_store.append(3)
            e_idx.append(0)
            e_n.append(sketch.z)
    return (
        np.array(e_row, dtype=np.int64), np.array(e_store, dtype=np.int8), np.array(e_idx, dtype=np.int64),
        np.array(e_n, dtype=np.int64),
    )  # fmt: skip


# --- 3. writing -----------------------------------------------------------------------------------------------


def copy_in(cur: Cursor, sql: str, columns: list[tuple[str, Any]]) -> None:
    """A binary COPY of fixed-width, non-null columns (int2/int4/int8/float8/bool/16-byte uuid numpy arrays)."""
    with cur.copy(sql) as copy:
        copy.write(_COPY_HEADER)
        copy.write(binary_rows(columns).tobytes())
        copy.write(_COPY_TRAILER)


def binary_rows(fields: list[tuple[str, Any]], *, appended: int = 0) -> Any:
    """Binary COPY rows (a numpy record array) of ``fields``: each a numpy array of fixed-width values, or None for
    a column null in every row; ``appended``: fields the caller writes after each row (counted in its header)."""
    import numpy as np

    n = next(len(a) for _, a in fields if a is not None)
    layout: list[tuple[str, str]] = [("nf", ">i2")]
    for name, array in fields:
        layout.append((f"l_{name}", ">i4"))
        if array is not None:
            layout.append((name, array.dtype.newbyteorder(">").str if array.dtype.kind in "iuf" else array.dtype.str))
    rows = np.zeros(n, dtype=np.dtype(layout))
    rows["nf"] = len(fields) + appended
    for name, array in fields:
        rows[f"l_{name}"] = -1 if array is None else array.dtype.itemsize
        if array is not None:
            rows[name] = array
    return rows


def _write_entries(cur: Cursor, minutes: Level, series: list[Any]) -> None:
    """rollup_e1: the 1m sketch entries (project_id, series_id, bucket_start, store, idx, n), for the group rollups."""
    import numpy as np

    cur.execute(
        "create temp table rollup_e1 (project_id uuid, series_id bigint, bucket_start timestamptz, store text,"
        " idx integer, n bigint) on commit drop"
    )
    project = np.array([s["project_id"].bytes for s in series], dtype="V16")
    series_id = np.array([s["series_id"] for s in series], dtype=np.int64)
    sid = minutes.sid[minutes.e_row]
    copy_in(
        cur,
        "copy rollup_e1 from stdin (format binary)",
        [
            ("project", project[sid] if len(sid) else np.zeros(0, dtype="V16")),
            ("series", series_id[sid] if len(sid) else np.zeros(0, dtype=np.int64)),
            ("bucket", minutes.bucket[minutes.e_row]),
            ("store", np.array([store.encode() for store in STORES], dtype="S1")[minutes.e_store]),
            ("idx", minutes.e_idx.astype(np.int32)),
            ("n", minutes.e_n),
        ],
    )


_OUT_TABLE = """
create temp table rollup_out (
    row_no integer, sid integer, resolution integer, bucket_start timestamptz, count bigint, sum float8, min float8,
    max float8, last float8, last_time timestamptz, increase float8, nulls integer
) on commit drop;
create temp table rollup_sk (row_no integer, sketch text) on commit drop
"""

_ROWS = """
select s.org_id, s.project_id, s.series_id, o.resolution, o.bucket_start, o.count,
    case when o.nulls & 1 = 0 then o.sum end, case when o.nulls & 2 = 0 then o.min end,
    case when o.nulls & 4 = 0 then o.max end, case when o.nulls & 8 = 0 then o.last end,
    case when o.nulls & 32 = 0 then o.last_time end, case when o.nulls & 16 = 0 then o.increase end,
    k.sketch::jsonb,
    now()
from rollup_out o
join rollup_sids s on s.sid = o.sid
left join rollup_sk k on k.row_no = o.row_no
where o.resolution = %(resolution)s
"""


def _write_rows(cur: Cursor, levels: list[Level]) -> dict[int, int]:
    import numpy as np

    from observai.metrics.rollup import UPSERT_SQL

    cur.execute(_OUT_TABLE)
    sketches: list[str] = []
    base = 0
    columns: dict[str, list[Any]] = {name: [] for name in ("row_no", "sid", "resolution", "bucket", "count", "sum",
                                                          "min", "max", "last", "last_time", "increase",
                                                          "nulls")}  # fmt: skip
    for level in levels:
        n = len(level)
        sketches.extend(f"{base + row}\t{text.decode()}\n" for row, text in _sketch_texts(level).items())
        columns["row_no"].append(np.arange(base, base + n, dtype=np.int32))
        columns["sid"].append(level.sid.astype(np.int32))
        columns["resolution"].append(np.full(n, level.resolution, dtype=np.int32))
        columns["bucket"].append(level.bucket)
        columns["count"].append(level.count)
        columns["sum"].append(level.sum)
        columns["min"].append(level.min)
        columns["max"].append(level.max)
        columns["last"].append(level.last)
        columns["last_time"].append(level.last_time)
        columns["increase"].append(level.increase)
        columns["nulls"].append(level.nulls)
        base += n
    copy_in(
        cur,
        "copy rollup_out from stdin (format binary)",
        [(name, np.concatenate(parts)) for name, parts in columns.items()],
    )
    if sketches:
        with cur.copy("copy rollup_sk (row_no, sketch) from stdin") as copy:
            copy.write("".join(sketches))
    written: dict[int, int] = {}
    for level in levels:
        cur.execute(UPSERT_SQL.format(select=_ROWS),
                    {"resolution": level.resolution})  # fmt: skip
        written[level.resolution] = written.get(level.resolution, 0) + max(cur.rowcount, 0)
    cur.execute("drop table rollup_out, rollup_sk")
    return written


_COPY_ROWS = (
    "copy public.metric_rollups (org_id, project_id, series_id, resolution, bucket_start, count, sum, min, max, last,"
    " last_time, increase, sketch) from stdin (format binary)"
)


def _copy_fresh(cur: Cursor, level: Level, series: list[Any]) -> bool:
    """The level's fresh rows (no row can exist there: see ``_coarse``) straight into metric_rollups in one binary
    COPY, in a savepoint. True when they went in; False when there were none, or when one existed after all (the
    COPY fails on the primary key, is rolled back, and the caller upserts them with the others)."""
    import psycopg

    if not level.fresh.any():
        return False
    try:
        with cur.connection.transaction():
            _copy_rows(cur, level, series)
    except psycopg.errors.UniqueViolation:
        return False
    return True


def _copy_rows(cur: Cursor, level: Level, series: list[Any]) -> None:
    """The fresh rows of a level: rows of the same null columns and sketch width (``_jsonb_sketches``) share one
    fixed-width layout, the sketch (jsonb) in it padded to that width."""
    import numpy as np

    fresh = np.flatnonzero(level.fresh)
    org = np.array([s["org_id"].bytes for s in series], dtype="V16")
    project = np.array([s["project_id"].bytes for s in series], dtype="V16")
    series_id = np.array([s["series_id"] for s in series], dtype=np.int64)
    blob, offsets, text_of, widths = _jsonb_sketches(level)
    pattern = level.nulls.astype(np.int64) | (widths << 6)  # the null bits take 6 bits
    pieces: list[bytes] = []
    for code in np.unique(pattern[fresh]).tolist():
        rows = fresh[pattern[fresh] == code]
        sid = level.sid[rows]
        fields: list[tuple[str, Any]] = [
            ("org", org[sid]), ("project", project[sid]), ("series", series_id[sid]),
            ("resolution", np.full(len(rows), level.resolution, dtype=np.int32)), ("bucket", level.bucket[rows]),
            ("count", level.count[rows]),
        ]  # fmt: skip
        for name, bit in (("sum", NULL_SUM), ("min", NULL_MIN), ("max", NULL_MAX), ("last", NULL_LAST),
                          ("last_time", NULL_LAST_TIME), ("increase", NULL_INCREASE)):  # fmt: skip
            fields.append((name, None if code & bit else getattr(level, name)[rows]))
        width = code >> 6
        sketches = sketch_text.padded(blob, offsets, text_of[rows], width, b"\x01") if width else None
        fields.append(("sketch", sketches))
        pieces.append(binary_rows(fields).tobytes())
    with cur.copy(_COPY_ROWS) as copy:
        copy.write(_COPY_HEADER)
        copy.write(b"".join(pieces))
        copy.write(_COPY_TRAILER)


def _jsonb_sketches(level: Level) -> tuple[bytes, Any, Any, Any]:
    """The rows' sketch JSON (``sketch_text.texts``: blob and offsets), each row's text number (-1 without a
    sketch), and the width a row's sketch in jsonb's binary form (the version byte 1, then the JSON) is padded to in
    a binary COPY's fixed-width layout: a power of two from 32 (0 without a sketch), so that rows of similar sketches
    share a layout and padding at most doubles a row."""
    import numpy as np

    rows, blob, offsets = sketch_text.texts(*_written_entries(level))
    text_of = np.full(len(level), -1, dtype=np.int64)
    text_of[rows] = np.arange(len(rows))
    widths = np.zeros(len(level), dtype=np.int64)
    lengths = np.diff(offsets) + 1
    widths[rows] = np.left_shift(1, np.ceil(np.log2(np.maximum(lengths, 32))).astype(np.int64))
    return blob, offsets, text_of, widths


def one_value(count: Any, low: Any, nulls: Any) -> Any:
    """The 1m rows whose sketch is not stored (null): a gauge's minute of one finite value (count 1, no increase,
    a finite min), whose sketch is that value's one entry (``value_entries(min)``). Readers take it from ``min``."""
    import numpy as np

    with np.errstate(invalid="ignore"):
        return (count == 1) & ((nulls & (NULL_INCREASE | NULL_MIN)) == NULL_INCREASE) & np.isfinite(low)


def _written_entries(level: Level) -> tuple[Any, Any, Any, Any]:
    """The entries of the sketches ``level`` stores: at 1m, none for ``one_value`` rows."""
    entries = (level.e_row, level.e_store, level.e_idx, level.e_n)
    if level.resolution != 60 or not len(level.e_row):
        return entries
    keep = ~one_value(level.count, level.min, level.nulls)[level.e_row]
    return tuple(e[keep] for e in entries)


def _sketch_texts(level: Level) -> dict[int, bytes]:
    """Each row's encoded sketch (rows with entries only)."""
    rows, blob, offsets = sketch_text.texts(*_written_entries(level))
    bounds = offsets.tolist()
    return {row: blob[bounds[k] : bounds[k + 1]] for k, row in enumerate(rows.tolist())}


def _subset(level: Level, keep: Any) -> Level:
    """The rows of ``level`` where ``keep``, with their entries (renumbered)."""
    import numpy as np

    number = np.cumsum(keep) - 1
    wanted = keep[level.e_row] if len(level.e_row) else np.zeros(0, dtype=np.bool_)
    return Level(
        resolution=level.resolution, sid=level.sid[keep], bucket=level.bucket[keep], count=level.count[keep],
        sum=level.sum[keep], min=level.min[keep], max=level.max[keep], last=level.last[keep],
        last_time=level.last_time[keep], increase=level.increase[keep], nulls=level.nulls[keep],
        fresh=level.fresh[keep], e_row=number[level.e_row[wanted]], e_store=level.e_store[wanted],
        e_idx=level.e_idx[wanted], e_n=level.e_n[wanted],
    )  # fmt: skip
