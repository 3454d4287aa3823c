"""The metrics query engine: one request holds up to 10 queries (a dashboard's panels), read in one transaction.

Each query is planned first (pure Python, ``plan``): the step (given, or about 300 slots rounded to
60/300/3600/86400 s from 60 s up), the range aligned to it, and the source:

* raw ``metric_points`` when the step is under 60 s or no rollup resolution divides the step;
* else the COARSEST rollup resolution (1d, 1h, 5m, 1m) dividing the step: fewest rows read. The slots that end
  within the last ``RECENT`` (from ``raw_from``; every slot when one slot holds the whole range) are read from the
  5m and 1m rollups up to the last complete minute the job has surely rolled up (``minute_from``) and from raw
  points after it, merged per slot from partial aggregates (sum and count, sketches and raw values...): a 1h step
  never reads an hour of raw points.

Group rollups: when a query reads rollups, has no filter or only ``=``/``in`` filters on its group_by attribute,
and groups by nothing or by one attribute the aggregation job keeps group rollups for (``metric_group_keys``,
complete from before the range), it reads ``metric_group_rollups`` instead: one row per group per slot instead of
one per series (``source: "group"``; else ``"series"``, or ``"raw"`` for raw points). The same aggregates apply
to the group rows (avg = Σsum / Σcount...); percentiles come from the group row's precomputed quantile when the
step is the resolution (1h, 1d; at 1h, the whole days of the range from their 1d row's 24 hourly quantiles: one row
per group per day), else from its sketches merged per slot (few: one per group and bucket). Group rows
are read only where complete: no minute of the range waits in the job's queue (``metric_group_pending``). The raw
tail is read as on the series path, but for the slots' rolled-up minutes: when none is queued and the group has no
1m row from minute_from on, a slot's own group row (1h at a 1h step) holds exactly the minutes before minute_from,
and is read instead of its 5m and 1m rows (50 rows, not 600, for p99 per host over the current hour). So it is
when the group's 1m rows from minute_from on count every point stored in their minutes (nothing left to roll): the
raw tail then starts at the minute after the last of them.

Then one SQL statement per query, as the caller (RLS on, so a forgotten filter cannot leak): the series
are matched by a sub-select on ``metric_series`` (name, attribute filters; the GIN ``jsonb_path_ops`` index
serves ``attributes @> ...``), their points or rollup buckets are read by primary key within the range, and
aggregated per (group labels, slot) in SQL. Percentiles are exact on raw gauge and sum points
(``percentile_disc``: the nearest-rank value, the rank the sketches use) and come from the group's DDSketches
merged per slot on rollups (1% relative accuracy). Raw points of histograms, exponential histograms and summaries
go through the job's own rule (``observai.metrics.distributions``: cumulative points differenced, buckets into
sketches) per series and slot, then merge like rollups: the same count, sum and percentiles at every step.
Counters (monotonic sums): ``increase`` is the reset-aware sum of increments (cumulative: value minus the
previous point, a drop or a newer start time being a reset; delta: the value itself), ``rate`` is
increase / step.

No user text is ever part of the SQL: names, attribute keys, values and regexes are bound parameters;
the statement is assembled from the constant fragments below only.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeGuard, cast
from uuid import UUID

import orjson
import psycopg
from psycopg.types.json import Jsonb

from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction
from observai.errors import InvalidInput, Unprocessable
from observai.metrics import sketch_sql
from observai.metrics.distributions import ANCHOR_LOOKBACK, Bucket, distribution_buckets
from observai.metrics.filters import filter_sql
from observai.metrics.query_models import (
    COUNTER_AGGREGATIONS,
    PERCENTILES,
    MetricQuery,
    QueryRequest,
    QueryResponse,
    QueryResult,
    SeriesPoints,
)
from observai.metrics.sketch import Sketch, merged_quantile
from observai.tenancy.access import authorize_telemetry

ORIGIN = datetime(1970, 1, 1, tzinfo=UTC)
ROLLUP_RESOLUTIONS = (86400, 3600, 300, 60)  # coarsest first
RAW_STEPS = (1, 2, 5, 10, 15, 30)
TARGET_POINTS = 300
MAX_POINTS_PER_SERIES = 11_000
MAX_SERIES = 1_000
# Raw histogram and summary points go through Python (about 50-100 µs each): a query merges at most this many,
# a few seconds, well inside the function's timeout; more is a 422 that asks for a rollup step.
MAX_RAW_DISTRIBUTION_POINTS = 50_000
# The aggregation job runs every minute and leaves the last 120 s (its lag, rollup.DEFAULT_LAG_S) for the next
# run: slots that end within the last RECENT are read from raw points (after their rolled-up minutes), whatever
# the step.
RECENT = timedelta(minutes=3)
# A cumulative counter's or histogram's first point in the range counts from its previous point, looked for this
# far back (the rollup job's anchor lookback, so raw and rollup answers agree).
COUNTER_LOOKBACK = ANCHOR_LOOKBACK

Resolution = Literal["raw", 60, 300, 3600, 86400]
Source = Literal["group", "series", "raw"]
# One read of a query's points: the statement builder, the window [start, end), its resolution.
Read = tuple[Callable[[MetricQuery, dict[str, Any]], str], datetime, datetime, Resolution]


# --- access ----------------------------------------------------------------------------------------------------


# --- planning --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    start: datetime
    end: datetime
    step: int
    resolution: Resolution
    raw_from: datetime  # slots from here on (up to end) are read from raw points: all of them for "raw"
    # Within the slots from raw_from, the complete minutes before minute_from come from the 1m rollups (merged with
    # the raw points after it per slot): a 1h step does not read up to an hour of raw points.
    minute_from: datetime
    # Slots start at origin + k * step: the Unix epoch, or the alignment the caller asked for (an alert rule's
    # window ends at its evaluation time).
    origin: datetime = ORIGIN


def auto_step(range_s: float) -> int:
    """About TARGET_POINTS slots: a short step from RAW_STEPS under a minute, else 1m/5m/1h/1d, else whole days."""
    wanted = max(1, math.ceil(range_s / TARGET_POINTS))
    for step in (*RAW_STEPS, *sorted(ROLLUP_RESOLUTIONS)):
        if wanted <= step:
            return step
    return math.ceil(wanted / 86400) * 86400


def _epoch(at: datetime) -> int:
    return math.floor((at - ORIGIN).total_seconds())


def _at(epoch_s: int) -> datetime:
    return ORIGIN + timedelta(seconds=epoch_s)


def plan(query: MetricQuery, now: datetime, *, loc: list[Any] | None = None, align: datetime | None = None) -> Plan:
    """The query's slots, resolution and sources. ``align``: slots start at ``align`` + k * step instead of the
    epoch (whole seconds); a rollup resolution is read only when it divides both the step and that offset, so its
    buckets never straddle a slot."""
    range_s = (query.to - query.from_).total_seconds()
    step = query.step or auto_step(range_s)
    origin = 0 if align is None else _epoch(align)
    start = origin + (_epoch(query.from_) - origin) // step * step
    end = origin - (-(math.ceil((query.to - ORIGIN).total_seconds()) - origin) // step) * step
    slots = (end - start) // step
    if slots > MAX_POINTS_PER_SERIES:
        raise Unprocessable(
            f"{slots} points per series at a {step} s step; at most {MAX_POINTS_PER_SERIES}: use a longer step",
            code="too_many_points",
            details={"loc": [*(loc or []), "step"], "points": slots, "limit": MAX_POINTS_PER_SERIES, "step": step},
        )
    # Slots that end before the cutoff are complete in the rollups; the others are read as the raw tail (their
    # rolled-up minutes, then raw points). A slot holding the whole range is all tail, at the same resolution.
    cutoff = min(max(origin + (_epoch(now - RECENT) - origin) // step * step, start), end)
    resolution: Resolution = "raw"
    if step >= 60:
        for candidate in ROLLUP_RESOLUTIONS:
            if step % candidate == 0 and origin % candidate == 0:
                resolution = cast(Resolution, candidate)
                break
    raw_from = start if resolution == "raw" else cutoff
    minute_from = raw_from
    if resolution != "raw" and step > 60:
        minute_from = min(max(_epoch(now - RECENT) // 60 * 60, raw_from), end)
    return Plan(
        start=_at(start),
        end=_at(end),
        step=step,
        resolution=resolution,
        raw_from=_at(raw_from),
        minute_from=_at(minute_from),
        origin=_at(origin),
    )


# --- SQL -------------------------------------------------------------------------------------------------------


_COUNTER = "s.type = 'sum' and s.monotonic is not false"
# Series whose points carry a value; the others (histograms, summaries) go through ``_distribution_partials``.
_VALUED = "s.type in ('gauge', 'sum')"
_LABELS = (
    "coalesce((select jsonb_object_agg(g.k, s.attributes -> g.k) from unnest(%(group_by)s::text[]) g(k)), '{}'::jsonb)"
)
_SLOT = "extract(epoch from date_bin(%(step_interval)s, {column}, %(origin)s))::bigint"

# Gauge and sum points (``_VALUED``): their value.
_RAW_AGGREGATES = {
    "avg": "sum(p.value) / nullif(count(p.value), 0)",
    "sum": "sum(p.value)",
    "min": "min(p.value)",
    "max": "max(p.value)",
    "count": "count(p.value)::float8",
    # The group's latest point; simultaneous points of several series: the largest value (deterministic).
    "last": "(array_agg(p.value order by p.time desc, p.value desc) filter (where p.value is not null))[1]",
    # Nearest rank, as the rollups' sketches rank (observai.metrics.sketch.nearest_rank): an observed value.
    "percentile": "percentile_disc(%(quantile)s) within group (order by p.value)",
}
_ROLLUP_AGGREGATES = {
    "avg": "sum(r.sum) / nullif(sum(r.count), 0)",
    "sum": "sum(r.sum)",
    "min": "min(r.min)",
    "max": "max(r.max)",
    "count": "sum(r.count)::float8",
    "last": "(array_agg(r.last order by r.last_time desc, r.last desc) filter (where r.last is not null))[1]",
    "increase": "sum(r.increase)",
    "rate": "sum(r.increase) / %(step)s",
    # The slot's sketches as one JSON text list (cheaper than jsonb_agg's rebuild): merged in Python.
    "percentile": f"'[' || string_agg({sketch_sql.sketch_text('r')}, ',') || ']'",
}


# Partial aggregates of the slots read from two sources (1m rollups, then raw points; ``_read_tail``), merged in
# Python by ``_combined``: float8 arrays ([sum, count] for avg, [value, epoch of its time] for last, else [value]);
# for percentiles the rollups' sketches (a jsonb list) and the raw values (a float8 array).
_ROLLUP_PARTIALS = {
    "avg": "array[sum(r.sum), sum(r.count)::float8]",
    "sum": "array[sum(r.sum)]",
    "min": "array[min(r.min)]",
    "max": "array[max(r.max)]",
    "count": "array[sum(r.count)::float8]",
    "last": f"array[{_ROLLUP_AGGREGATES['last']},"
    " extract(epoch from max(r.last_time) filter (where r.last is not null))::float8]",
    "increase": "array[sum(r.increase)]",
    "rate": "array[sum(r.increase)]",
    "percentile": _ROLLUP_AGGREGATES["percentile"],
}
_RAW_PARTIALS = {
    "avg": "array[sum(p.value), count(p.value)::float8]",
    "sum": f"array[{_RAW_AGGREGATES['sum']}]",
    "min": f"array[{_RAW_AGGREGATES['min']}]",
    "max": f"array[{_RAW_AGGREGATES['max']}]",
    "count": f"array[{_RAW_AGGREGATES['count']}]",
    "last": f"array[{_RAW_AGGREGATES['last']},"
    " extract(epoch from max(p.time) filter (where p.value is not null))::float8]",
    "percentile": "array_agg(p.value) filter (where p.value is not null)",
}


# Aggregates of raw points whose value does not depend on the rows' order (float sums do, in their last bits; the
# latest value is ordered within its aggregate; percentile_disc sorts, and the tail's values go into a sketch).
_ORDER_FREE = frozenset({"min", "max", "count", "last", "percentile"})


def _rollup_aggregate(key: str, params: dict[str, Any]) -> str:
    return (_ROLLUP_PARTIALS if params.get("partial") else _ROLLUP_AGGREGATES)[key]


# One shard of a query's result series (``Shard``): its labels hashed, so a group is never split between shards.
_IN_SHARD = f" and mod(hashtext(({_LABELS})::text)::bigint + 2147483648, %(shards)s) = %(shard)s"
# The shard's series, listed first (``_shard_series``): the planner estimates an id list well, a hash condition not
# (it took a thousand series for five and joined them to the rollups in a nested loop).
_SHARD_IDS = " and s.series_id = any(%(shard_ids)s::bigint[])"


@dataclass(frozen=True, slots=True)
class Shard:
    """Read only the result series whose labels hash into shard ``index`` of ``count`` (detect-anomalies pages
    through a detector matching more series than one query may read, a shard at a time)."""

    index: int
    count: int


def _shard_sql(params: dict[str, Any]) -> str:
    return _SHARD_IDS if params.get("shard_ids") is not None else ""


def _shard_series(cur: Cursor, project_id: UUID, query: MetricQuery, shard: Shard) -> list[int]:
    """The ids of the metric series whose result labels hash into ``shard``."""
    params: dict[str, Any] = {
        "project": project_id,
        "name": query.name,
        "group_by": list(query.group_by),
        "shard": shard.index,
        "shards": shard.count,
    }
    cur.execute(
        "select s.series_id from public.metric_series s where s.project_id = %(project)s and s.name = %(name)s"
        f"{filter_sql(query.filters, params)}{_IN_SHARD}",
        params,
    )
    return [int(row["series_id"]) for row in cur.fetchall()]


def _series_sql(query: MetricQuery, params: dict[str, Any], *, extra: str = "") -> str:
    params["name"] = query.name
    params["group_by"] = list(query.group_by)
    # gid numbers the label combinations: the big GROUP BY hashes an integer, not a jsonb document.
    return (
        "select x.*, dense_rank() over (order by x.labels) as gid from ("
        f"select s.series_id, s.type, s.temporality, {_LABELS} as labels from public.metric_series s"
        f" where s.project_id = %(project)s and s.name = %(name)s{filter_sql(query.filters, params)}{extra}"
        f"{_shard_sql(params)}) x"
    )


def _labelled(grouped: str) -> str:
    """``grouped`` yields (gid, slot, value): give each row its group's labels back (as jsonb text: one parse per
    group in Python, not one per row; equal labels have equal texts)."""
    return (
        f" select g.labels::text as labels, a.slot, a.value from ({grouped}) a"
        " join (select distinct s.gid, s.labels from s) g on g.gid = a.gid"
    )


def _aggregate_key(aggregation: str) -> str:
    return "percentile" if aggregation in PERCENTILES else aggregation


def _raw_sql(query: MetricQuery, params: dict[str, Any]) -> str:
    agg = query.aggregation
    if agg in COUNTER_AGGREGATIONS:
        series = _series_sql(query, params, extra=f" and {_COUNTER}")
        value = "sum(d.inc)" if agg == "increase" else "sum(d.inc) / %(step)s"
        if params.get("partial"):
            value = "array[sum(d.inc)]"
        # The range's points plus each series' latest point before it (its baseline), then the increments.
        return (
            f"with s as materialized ({series}),"
            " pts as ("
            " select s.series_id, s.gid, s.temporality, p.time, p.value, p.start_time"
            " from s cross join lateral (select p.time, p.value, p.start_time from public.metric_points p"
            " where p.project_id = %(project)s and p.series_id = s.series_id"
            " and p.time >= %(start)s and p.time < %(end)s offset 0) p"
            " union all"
            " select s.series_id, s.gid, s.temporality, b.time, b.value, b.start_time"
            " from s cross join lateral (select p.time, p.value, p.start_time from public.metric_points p"
            " where p.project_id = %(project)s and p.series_id = s.series_id"
            " and p.time >= %(lookback)s and p.time < %(start)s order by p.time desc limit 1) b),"
            # The job's rule (observai.metrics.rollup): a previous point counts within the anchor lookback before
            # the point's minute; without one, a counter started within it counts whole, else from 0.
            " d as (select gid, time,"
            " case when temporality = 'delta' then value"
            " when lag(time) over w is null"
            " or lag(time) over w < date_bin('60 seconds', time, %(epoch)s) - %(lookback_interval)s"
            " then case when start_time >= time - %(lookback_interval)s then value else 0 end"
            " when value < lag(value) over w or start_time > lag(start_time) over w then value"
            " else value - lag(value) over w end as inc"
            " from pts window w as (partition by series_id order by time))"
            + _labelled(
                f"select d.gid, {_SLOT.format(column='d.time')} as slot, {value} as value"
                " from d where d.time >= %(start)s group by 1, 2"
            )
        )
    series = _series_sql(query, params, extra=f" and {_VALUED}")
    key = _aggregate_key(agg)
    # One index range read per series (offset 0: never a scan of the whole day's partition filtered by time).
    points = (
        " from s cross join lateral (select p.time, p.value from public.metric_points p"
        " where p.project_id = %(project)s and p.series_id = s.series_id"
        " and p.time >= %(start)s and p.time < %(end)s offset 0) p"
    )
    if key in _ORDER_FREE:
        # The same index range reads as one scan per partition (the series' ids as an array): no executor loop per
        # series and partition, a third of the CPU when the window holds few points (the raw tail: 200 series, a
        # few minutes). The rows come in another order: only for aggregates that do not depend on it.
        points = (
            " from s join public.metric_points p on p.series_id = s.series_id"
            " where p.project_id = %(project)s and p.series_id = any(array(select s.series_id from s))"
            " and p.time >= %(start)s and p.time < %(end)s"
        )
    return f"with s as materialized ({series})" + _labelled(
        f"select s.gid, {_SLOT.format(column='p.time')} as slot,"
        f" {(_RAW_PARTIALS if params.get('partial') else _RAW_AGGREGATES)[key]} as value{points} group by 1, 2"
    )


def _rollup_sql(query: MetricQuery, params: dict[str, Any]) -> str:
    agg = query.aggregation
    extra = f" and {_COUNTER}" if agg in COUNTER_AGGREGATIONS else ""
    series = _series_sql(query, params, extra=extra)
    return f"with s as materialized ({series})" + _labelled(
        f"select s.gid, {_SLOT.format(column='r.bucket_start')} as slot,"
        f" {_rollup_aggregate(_aggregate_key(agg), params)} as value"
        " from s join public.metric_rollups r on r.project_id = %(project)s and r.series_id = s.series_id"
        " and r.resolution = %(resolution)s"
        " where r.bucket_start >= %(start)s and r.bucket_start < %(end)s group by 1, 2"
    )


def _group_rollup_sql(query: MetricQuery, params: dict[str, Any]) -> str:
    """(labels, slot, value) from metric_group_rollups: params carry group_key and one list per filter."""
    agg = query.aggregation
    key = _aggregate_key(agg)
    value = _rollup_aggregate(key, params)
    labels = (
        "(case when %(group_key)s = '' then '{}'::jsonb"
        " else jsonb_build_object(%(group_key)s::text, r.group_value::jsonb) end)::text"
    )
    conditions = "".join(
        f" and r.group_value = any(array(select v::text from unnest(%(g{i})s::jsonb[]) v))"
        for i in range(len(query.filters))
    )
    params["name"] = query.name
    where = (
        " from public.metric_group_rollups r"
        " where r.project_id = %(project)s and r.name = %(name)s and r.group_key = %(group_key)s"
        f" and r.resolution = %(resolution)s and r.bucket_start >= %(start)s and r.bucket_start < %(end)s{conditions}"
    )
    if (
        key == "percentile"
        and not params.get("partial")
        and params["step"] == params["resolution"]
        and params["resolution"] in (3600, 86400)
    ):
        # One row per group and slot: its precomputed quantile, no aggregation; one result row per group (arrays of
        # slots and values), its labels built once (a week of p99 per host per hour is 8,400 values). Values JSON
        # cannot carry (null, NaN, infinite) are left out here: the points need no check in Python (``_shape``).
        params["arrayed"] = True
        column = f"p{round(PERCENTILES[agg] * 100)}"
        hourly = (
            f"select r.group_value, extract(epoch from r.bucket_start)::bigint as slot, r.{column} as val{where}"
            f" and abs(r.{column}) < 'Infinity'::float8"
        )
        start, end = _epoch(params["start"]), _epoch(params["end"])
        day_from, day_to = -(-start // 86400) * 86400, end // 86400 * 86400
        if params["resolution"] != 3600 or day_from >= day_to:
            return (
                f"select {labels} as labels, array_agg(r.slot) as slots, array_agg(r.val) as vals,"
                f" null::bigint[] as days, null::float8[] as hourly from ({hourly}) r group by r.group_value"
            )
        # At a 1h step, the whole days from their 1d rows' hourly quantiles (migration 0015: one row per group per
        # day, 24 values, hour h at h + 1; expanded in Python, ``_day_points``), the partial days at the edges from
        # the 1h rows.
        params["day_from"], params["day_to"] = _at(day_from), _at(day_to)
        edges = [
            hourly.replace(f"%({bound})s", f"%({day})s")
            for bound, day, present in (("end", "day_from", start < day_from), ("start", "day_to", day_to < end))
            if present
        ]
        edge_rows = " union all ".join(f"({edge})" for edge in edges) or (
            "select null::text as group_value, null::bigint as slot, null::float8 as val where false"
        )
        return (
            f"select {labels} as labels, e.slots, e.vals, d.days, d.hourly from ("
            # the 1d rows' arrays as one 2-D array per group (a row without them: 24 nulls)
            " select r.group_value, array_agg(extract(epoch from r.bucket_start)::bigint) as days,"
            f" array_agg(coalesce(r.hourly_{column}, array_fill(null::float8, array[24]))) as hourly"
            " from public.metric_group_rollups r"
            " where r.project_id = %(project)s and r.name = %(name)s and r.group_key = %(group_key)s"
            f" and r.resolution = 86400 and r.bucket_start >= %(day_from)s and r.bucket_start < %(day_to)s{conditions}"
            " group by r.group_value"
            ") d full join ("
            " select x.group_value, array_agg(x.slot) as slots, array_agg(x.val) as vals"
            f" from ({edge_rows}) x group by x.group_value"
            ") e on e.group_value = d.group_value"
            " cross join lateral (select coalesce(d.group_value, e.group_value) as group_value) r"
        )
    return f"select {labels} as labels, {_SLOT.format(column='r.bucket_start')} as slot, {value} as value{where}" + (
        " group by r.group_value, 2"
    )


def _group_candidate(query: MetricQuery, query_plan: Plan) -> str | None:
    """The group_key whose group rollups could serve the query ('' for every series), by its shape alone: a rollup
    resolution, grouped by nothing or by one attribute, filters only ``=``/``in`` on it; None: the per-series
    rollups. Whether that key's groups are complete over the range is the database's to say (``_GROUP_STATE``)."""
    if query_plan.resolution == "raw" or len(query.group_by) > 1:
        return None
    key = query.group_by[0] if query.group_by else ""
    for f in query.filters:
        values = f.value if isinstance(f.value, list) else [f.value]
        # Floats are left to the series path: 200.0 and 200 are one jsonb value but two texts.
        if f.attribute != key or f.op not in ("=", "in") or any(isinstance(v, float) for v in values):
            return None
    return key


# The state of a key's group rollups over a plan's range (no row: the key has none).
# Complete: the key's groups were kept from before the range on, and no minute of the range waits in the job's
# queue (metric_group_pending) to be merged into them.
# Tail whole: besides, no minute from raw_from on waits in the queue and the group has no 1-minute row from
# minute_from on; then the group rows of the last slots hold exactly the minutes before minute_from (the job
# rewrites a minute's 1m, 5m, 1h and 1d group rows together), what their 5m and 1m rows would add up to.
# Rolled to: else, with nothing queued from raw_from on, the minute after the group's last 1-minute row from
# minute_from on, with the points the group rows count in those minutes (``rolled``) and the raw points stored there
# (``stored``): when they are as many, every stored point of those minutes is rolled up (the job counts each point
# it rolls once), and the group rows of the last slots hold exactly the minutes before rolled_to (``_group_key``).
_GROUP_STATE = (
    "select k.complete_from <= %(g_start)s and not exists ("
    " select 1 from public.metric_group_pending p where p.project_id = %(project)s and p.name = %(name)s"
    " and p.bucket_start >= %(g_start)s and p.bucket_start < %(g_end)s) as complete,"
    " q.tail_queued is null and t.rolled_to is null as tail_whole,"
    " case when q.tail_queued is null then t.rolled_to end as rolled_to, t.rolled,"
    " case when q.tail_queued is null and t.rolled_to is not null then (select count(*) from public.metric_points p"
    "  where p.project_id = %(project)s and p.series_id = any(array("
    "   select s.series_id from public.metric_series s where s.project_id = %(project)s and s.name = %(name)s))"
    "  and p.time >= %(g_end)s and p.time < t.rolled_to) end as stored"
    " from public.metric_group_keys k"
    " left join lateral ("
    " select 1 as tail_queued from public.metric_group_pending p where p.project_id = %(project)s"
    " and p.name = %(name)s and p.bucket_start >= %(g_raw_from)s and p.bucket_start < %(g_range_end)s limit 1"
    ") q on true"
    " cross join lateral ("
    " select max(r.bucket_start) + interval '1 minute' as rolled_to, coalesce(sum(r.count), 0) as rolled"
    " from public.metric_group_rollups r where r.project_id = %(project)s and r.name = %(name)s"
    " and r.group_key = %(g_key)s and r.resolution = 60"
    " and r.bucket_start >= %(g_end)s and r.bucket_start < %(g_range_end)s"
    ") t"
    " where k.project_id = %(project)s and k.name = %(name)s and k.group_key = %(g_key)s"
)


@dataclass(frozen=True, slots=True)
class _Matched:
    """The series a query matches, each count up to MAX_SERIES + 1; and the state of the candidate key's group
    rollups (``_GROUP_STATE``; both false without a candidate)."""

    series: int
    counters: int
    distributions: int  # histograms, exponential histograms and summaries
    group_complete: bool = False
    tail_whole: bool = False
    # The minute after the group's last 1-minute row from minute_from on, when nothing from raw_from on is queued;
    # with the points those rows count and the raw points stored in those minutes (``_GROUP_STATE``).
    rolled_to: datetime | None = None
    rolled: int = 0
    stored: int = 0


def _count_series(
    cur: Cursor,
    project_id: UUID,
    query: MetricQuery,
    shard_ids: list[int] | None = None,
    *,
    group: tuple[str, Plan] | None = None,
) -> _Matched:
    """The matched series; with ``group`` (a candidate key, ``_group_candidate``, and the plan) also that key's
    group rollups' state over the plan's range, in the same statement: one round trip, not two."""
    params: dict[str, Any] = {"project": project_id, "name": query.name, "cap": MAX_SERIES + 1, "shard_ids": shard_ids}
    counted = (
        "select count(*) as n, count(*) filter (where counter) as counters,"
        " count(*) filter (where not valued) as distributions from ("
        f" select {_COUNTER} as counter, {_VALUED} as valued from public.metric_series s"
        f" where s.project_id = %(project)s and s.name = %(name)s{filter_sql(query.filters, params)}"
        f"{_shard_sql(params)} limit %(cap)s) m"
    )
    if group is not None:
        key, query_plan = group
        params |= {
            "g_key": key,
            "g_start": query_plan.start,
            "g_end": query_plan.minute_from,
            "g_raw_from": query_plan.raw_from,
            "g_range_end": query_plan.end,
        }
        counted = (
            "select c.*, coalesce(g.complete, false) as complete, coalesce(g.tail_whole, false) as tail_whole,"
            " g.rolled_to, coalesce(g.rolled, 0) as rolled, coalesce(g.stored, 0) as stored"
            f" from ({counted}) c left join ({_GROUP_STATE}) g on true"
        )
    cur.execute(counted, params)
    row = cur.fetchone()
    assert row is not None
    return _Matched(
        int(row["n"]),
        int(row["counters"]),
        int(row["distributions"]),
        group_complete=bool(row.get("complete")),
        tail_whole=bool(row.get("tail_whole")),
        rolled_to=row.get("rolled_to"),
        rolled=int(row.get("rolled") or 0),
        stored=int(row.get("stored") or 0),
    )


def _group_key(
    matches: _Matched, query: MetricQuery, candidate: str | None, query_plan: Plan
) -> tuple[str | None, bool, Plan]:
    """The group_key to read group rollups with ('' for every series), or None for the per-series rollups; whether
    the slots from raw_from are whole in the group rows of the plan's resolution (``_read_tail``); and the plan to
    read them with. When the group's 1-minute rows from minute_from on hold every point stored in their minutes (a
    query a few minutes after the last points: nothing is left to roll), the tail is whole up to the minute after
    the last of them, and only the raw points after it are read: one group row per slot, not its 5m and 1m rows.
    Counted in points, which a histogram's or summary's group rows do not count (they count observations)."""
    if candidate is None or not matches.group_complete:
        return None, False, query_plan
    if query.aggregation in COUNTER_AGGREGATIONS and matches.counters != matches.series:
        return None, False, query_plan  # the series path reads the counters only; the groups hold every series
    rolled_to = matches.rolled_to
    if (
        rolled_to is not None  # (so not tail_whole: the group has 1m rows in the tail)
        and not matches.distributions
        and matches.rolled == matches.stored
        and query_plan.minute_from < rolled_to <= query_plan.end
    ):
        return candidate, True, replace(query_plan, minute_from=rolled_to)
    return candidate, matches.tail_whole, query_plan


# --- running ---------------------------------------------------------------------------------------------------


def _sketches(listed: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A slot's sketches, read as one JSON list (``_ROLLUP_AGGREGATES["percentile"]``) or built here (a list,
    ``_distribution_partials``); none: an empty list. (orjson: several times faster than json on these.)"""
    if isinstance(listed, list):
        return listed
    return orjson.loads(listed) if listed else []


def _sketch_quantile(listed: str | None, q: float) -> float | None:
    """The quantile of the group's sketches of one slot, merged (adding counts per store and index)."""
    sketches = _sketches(listed)
    if not sketches:
        return None
    return merged_quantile(sketches, q)


def _window_params(
    params: dict[str, Any], start: datetime, end: datetime, resolution: Resolution, *, partial: bool
) -> dict[str, Any]:
    """The statement parameters of one read over [start, end) at ``resolution``."""
    return {
        **params,
        "start": start,
        "end": end,
        "lookback": start - COUNTER_LOOKBACK,
        "lookback_interval": COUNTER_LOOKBACK,
        "resolution": None if resolution == "raw" else resolution,
        "partial": partial,
    }


def _read_partials(
    cur: Cursor,
    query: MetricQuery,
    build: Callable[[MetricQuery, dict[str, Any]], str],
    params: dict[str, Any],
    start: datetime,
    end: datetime,
    resolution: Resolution,
) -> list[tuple[str, int, Any]]:
    """One statement over [start, end): (labels, slot, partial aggregate) rows (``_ROLLUP_PARTIALS``,
    ``_RAW_PARTIALS``), merged by the caller."""
    params = _window_params(params, start, end, resolution, partial=True)
    cur.execute(build(query, params), params)
    return [(r["labels"], int(r["slot"]), r["value"]) for r in cur.fetchall()]


# The parameters of one read's window (``_window_params``): renamed per read when reads share a statement.
_WINDOW_PARAMETER = re.compile(r"%\((start|end|lookback|lookback_interval|resolution)\)s")


def _partials_sql(query: MetricQuery, reads: list[Read], params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The statement reading ``_read_partials`` of each (build, start, end, resolution) read at once, and its
    parameters: each read's statement with its own window parameters (suffixed with its index), their rows tagged
    with it (column ``read``), in a UNION ALL; a rollup read's partials in column ``rolled``, a raw read's in
    ``raw`` (their types differ for percentiles: sketch lists, values). No read: an empty statement."""
    combined: dict[str, Any] = {}
    branches = []
    for i, (build, start, end, resolution) in enumerate(reads):
        window = _window_params(params, start, end, resolution, partial=True)
        statement = _WINDOW_PARAMETER.sub(rf"%(\g<1>_{i})s", build(query, window))
        for key, value in window.items():
            if _WINDOW_PARAMETER.fullmatch(f"%({key})s"):
                combined[f"{key}_{i}"] = value
            else:
                combined.setdefault(key, value)  # the same for every read (the query's own, the series' filters)
        # Typed nulls: a UNION resolves its columns' types pairwise (two bare nulls would make a text column).
        rolled, raw = (
            ("q.value", "null::float8[]") if resolution != "raw" else (f"null::{_rolled_type(query)}", "q.value")
        )
        branches.append(f"select {i} as read, q.labels, q.slot, {rolled} as rolled, {raw} as raw from ({statement}) q")
    return " union all ".join(branches), combined


def _rolled_type(query: MetricQuery) -> str:
    """The SQL type of a rollup read's partial aggregate (``_ROLLUP_PARTIALS``)."""
    return "text" if _aggregate_key(query.aggregation) == "percentile" else "float8[]"


def _split_partials(rows: list[Any], reads: list[Read]) -> list[list[tuple[str, int, Any]]]:
    """The (labels, slot, partial) rows of each read, in the reads' order, from the rows of ``_partials_sql``."""
    split: list[list[tuple[str, int, Any]]] = [[] for _ in reads]
    for r in rows:
        split[r["read"]].append(
            (r["labels"], int(r["slot"]), r["raw"] if reads[r["read"]][3] == "raw" else r["rolled"])
        )
    return split


def _read_partials_together(
    cur: Cursor, query: MetricQuery, reads: list[Read], params: dict[str, Any]
) -> list[list[tuple[str, int, Any]]]:
    """``_read_partials`` of each read, in one statement (``_partials_sql``); each read's rows, in the reads' order."""
    sql, combined = _partials_sql(query, reads, params)
    if not sql:
        return [[] for _ in reads]
    cur.execute(sql, combined)
    return _split_partials(cur.fetchall(), reads)


def _points_sql(
    query: MetricQuery,
    build: Callable[[MetricQuery, dict[str, Any]], str],
    params: dict[str, Any],
    start: datetime,
    end: datetime,
    resolution: Resolution,
) -> tuple[str, dict[str, Any]]:
    """The statement of ``_read_points`` and its parameters: one row per labels, (labels, slots, vals) arrays, and
    for the group rows' precomputed quantiles (``arrayed`` in the parameters) their whole days (days, hourly)."""
    params = _window_params(params, start, end, resolution, partial=False)
    sql = build(query, params)
    if not params.get("arrayed"):
        # One result row per labels (arrays of slots and values): thousands of slots cost a few array parses, not
        # thousands of rows.
        sql = f"select labels, array_agg(slot) as slots, array_agg(value) as vals from ({sql}) q group by labels"
    return sql, params


def _take_points(
    rows: list[Any], query: MetricQuery, resolution: Resolution, arrayed: bool, into: dict[str, list[tuple[int, float]]]
) -> None:
    """Each labels' (slot, value) points of ``_points_sql``'s rows added to ``into``; percentiles of rollups from
    merged sketches."""
    quantile = PERCENTILES.get(query.aggregation)
    # Percentiles of rollups: each slot's sketches to merge (unless the group rows' quantiles were read: "arrayed").
    sketched = quantile is not None and resolution != "raw" and not arrayed
    for r in rows:
        # Slots are bigint: ints already; float8 values: floats.
        if arrayed:
            # Finite floats only (the statement left the others out): the points as they are.
            points = list(zip(r["slots"] or (), r["vals"] or (), strict=True))
            if r["days"]:
                points += _day_points(r["days"], r["hourly"])
        else:
            values = r["vals"]
            if sketched and quantile is not None:
                values = [_sketch_quantile(v, quantile) for v in values]
            points = [(slot, float(v)) for slot, v in zip(r["slots"], values, strict=True) if _carried(v)]
        into.setdefault(r["labels"], []).extend(points)


def _read_points(
    cur: Cursor,
    query: MetricQuery,
    build: Callable[[MetricQuery, dict[str, Any]], str],
    params: dict[str, Any],
    start: datetime,
    end: datetime,
    resolution: Resolution,
    into: dict[str, list[tuple[int, float]]],
) -> None:
    """One statement over [start, end): each labels' (slot, value) points added to ``into``; percentiles of rollups
    from merged sketches."""
    sql, params = _points_sql(query, build, params, start, end, resolution)
    # Binary results: thousands of float8 and bigint array elements are neither printed by the server nor parsed
    # here (the same Python values: float, int, str).
    cur.execute(sql, params, binary=True)
    _take_points(cur.fetchall(), query, resolution, bool(params.get("arrayed")), into)


def _read_points_and_tail(
    cur: Cursor,
    query: MetricQuery,
    build: Callable[[MetricQuery, dict[str, Any]], str],
    params: dict[str, Any],
    query_plan: Plan,
    into: dict[str, list[tuple[int, float]]],
    *,
    whole: bool,
    distributions: bool,
) -> None:
    """``_read_points`` over [start, raw_from) and ``_read_tail`` in one statement (one round trip less): the
    points' rows (read -1) and the tail's partials (read 0, 1...) in a UNION ALL, each with the other's columns
    null."""
    main_sql, main_params = _points_sql(
        query, build, params, query_plan.start, query_plan.raw_from, query_plan.resolution
    )
    arrayed = bool(main_params.get("arrayed"))
    reads = _tail_reads(build, query_plan, whole=whole)
    tail_sql, tail_params = _partials_sql(query, reads, params)
    # The points' values: the group rows' quantiles, else per slot: sketch lists for percentiles, else numbers.
    vals_type = "text[]" if not arrayed and _aggregate_key(query.aggregation) == "percentile" else "float8[]"
    days, hourly = ("m.days", "m.hourly") if arrayed else ("null::bigint[]", "null::float8[]")
    sql = (
        f"select -1 as read, m.labels, m.slots, m.vals, {days} as days, {hourly} as hourly,"
        f" null::bigint as slot, null::{_rolled_type(query)} as rolled, null::float8[] as raw from ({main_sql}) m"
        f" union all select t.read, t.labels, null::bigint[], null::{vals_type}, null::bigint[], null::float8[],"
        f" t.slot, t.rolled, t.raw from ({tail_sql}) t"
    )
    cur.execute(sql, {**tail_params, **main_params}, binary=True)
    rows = cur.fetchall()
    _take_points([r for r in rows if r["read"] < 0], query, query_plan.resolution, arrayed, into)
    tail = _split_partials([r for r in rows if r["read"] >= 0], reads)
    _merge_tail(cur, query, params, query_plan, reads, tail, into, distributions=distributions)


def _day_points(days: list[int], hourly: list[list[Any]]) -> list[tuple[int, float]]:
    """The (slot, value) points of whole days from their 24 hourly values (floats, None: no value)."""
    points: list[tuple[int, float]] = []
    for day, values in zip(days, hourly, strict=True):
        slots = range(day, day + 86400, 3600)
        # Usually a full day of finite values, taken as they are; else (a None makes the sum raise, an infinite or
        # NaN value makes it non-finite, so does an overflow) value by value.
        try:
            whole = math.isfinite(sum(values))
        except TypeError:
            whole = False
        if whole:
            points += zip(slots, values, strict=True)
        else:
            points += [(slot, value) for slot, value in zip(slots, values, strict=True) if _carried(value)]
    return points


def _carried(value: Any) -> TypeGuard[float]:
    """A point JSON can carry: not an empty slot (no count), not NaN or infinite."""
    return value is not None and math.isfinite(value)


_DISTRIBUTION_POINTS_SQL = (
    " select s.labels::text as labels, s.series_id, s.type, s.temporality, p.time, p.start_time, p.count, p.sum,"
    " p.min, p.max, p.distribution, false as anchor"
    " from s cross join lateral (select p.time, p.start_time, p.count, p.sum, p.min, p.max, p.distribution"
    " from public.metric_points p where p.project_id = %(project)s and p.series_id = s.series_id"
    " and p.time >= %(start)s and p.time < %(end)s offset 0) p"
    " union all"
    # A cumulative series' baseline: its latest point before the range (the job's anchor).
    " select s.labels::text, s.series_id, s.type, s.temporality, a.time, a.start_time, a.count, a.sum, a.min, a.max,"
    " a.distribution, true"
    " from s cross join lateral (select p.time, p.start_time, p.count, p.sum, p.min, p.max, p.distribution"
    " from public.metric_points p where p.project_id = %(project)s and p.series_id = s.series_id"
    " and p.time >= %(lookback)s and p.time < %(start)s order by p.time desc limit 1) a"
    " where s.type = 'summary' or s.temporality is distinct from 'delta'"
    " order by series_id, time, anchor limit %(cap)s"
)


def _distribution_partials(
    cur: Cursor, query: MetricQuery, params: dict[str, Any], start: datetime, end: datetime
) -> dict[tuple[str, int], Any]:
    """The raw points of the matched histogram, exponential histogram and summary series over [start, end) as
    partial aggregates per (labels, slot), in the format of ``_ROLLUP_PARTIALS`` (for percentiles: a list of
    sketches): each series' points through the aggregation job's rule (``distribution_buckets``, per slot instead of
    per minute), merged per labels as the rollups merge. ``last`` and the counter aggregations read no such series."""
    key = _aggregate_key(query.aggregation)
    if key == "last" or key in COUNTER_AGGREGATIONS:
        return {}
    step = int(params["step"])
    window = _window_params(params, start, end, "raw", partial=True)
    series = _series_sql(query, window, extra=f" and not {_VALUED}")
    window["cap"] = MAX_RAW_DISTRIBUTION_POINTS + 1
    cur.execute(f"with s as materialized ({series})" + _DISTRIBUTION_POINTS_SQL, window)
    fetched = cur.fetchall()
    if len(fetched) > MAX_RAW_DISTRIBUTION_POINTS:
        raise Unprocessable(
            f"More than {MAX_RAW_DISTRIBUTION_POINTS} raw histogram or summary points to merge at a {step} s step:"
            " use a step that a rollup divides (a multiple of 60 s), a shorter range or fewer series",
            code="too_many_points",
            details={
                "loc": [*params["loc"], "step"],
                "points": f">{MAX_RAW_DISTRIBUTION_POINTS}",
                "limit": MAX_RAW_DISTRIBUTION_POINTS,
                "step": step,
            },
        )
    labels_of: dict[int, str] = {}
    rows = []
    for row in fetched:
        labels_of[row["series_id"]] = row["labels"]
        rows.append({**row, "org_id": None, "project_id": None, "range_start": start})

    origin = _epoch(params["origin"])

    def slot_of(at: datetime) -> datetime:
        return _at(origin + (_epoch(at) - origin) // step * step)

    merged: dict[tuple[str, int], Bucket] = {}
    for bucket in distribution_buckets(rows, slot_of):
        slot = (labels_of[bucket.series_id], _epoch(bucket.bucket_start))
        into = merged.get(slot)
        if into is None:
            merged[slot] = into = Bucket(None, None, bucket.series_id, bucket.bucket_start)
        into.add(bucket.count, bucket.sum, bucket.min, bucket.max, bucket.sketch)
    if key == "percentile":
        return {slot: [b.sketch.to_json()] if b.sketch.count else [] for slot, b in merged.items()}
    partial: Callable[[Bucket], list[Any]] = {
        "avg": lambda b: [b.sum, float(b.count)],
        "sum": lambda b: [b.sum],
        "min": lambda b: [b.min],
        "max": lambda b: [b.max],
        "count": lambda b: [float(b.count)],
    }[key]
    return {slot: partial(b) for slot, b in merged.items()}


def _read_raw(
    cur: Cursor,
    query: MetricQuery,
    params: dict[str, Any],
    start: datetime,
    end: datetime,
    into: dict[str, list[tuple[int, float]]],
    *,
    distributions: bool,
) -> None:
    """The raw points over [start, end), each labels' (slot, value) points added to ``into``: in one statement when
    no histogram or summary series matched, else the gauges' partials and the distributions' merged per slot."""
    if not distributions:
        _read_points(cur, query, _raw_sql, params, start, end, "raw", into)
        return
    valued = {
        (labels, slot): value for labels, slot, value in _read_partials(cur, query, _raw_sql, params, start, end, "raw")
    }
    others = _distribution_partials(cur, query, params, start, end)
    step = int(params["step"])
    for labels, slot in sorted(valued.keys() | others.keys()):
        rolled = [others[(labels, slot)]] if (labels, slot) in others else []
        value = _combined(query.aggregation, step, rolled, valued.get((labels, slot)))
        if _carried(value):
            into.setdefault(labels, []).append((slot, value))


def _tail_reads(
    build: Callable[[MetricQuery, dict[str, Any]], str], query_plan: Plan, *, whole: bool = False
) -> list[Read]:
    """The reads of the slots from raw_from (``_read_tail``), as (build, start, end, resolution), none empty."""
    five_from = query_plan.raw_from
    # 5-minute buckets only where the slots' bounds fall on them (a 6-minute step, or slots aligned to a time that
    # is not a multiple of 5 minutes, would split one between two slots): else minutes.
    if query_plan.step > 300 and query_plan.step % 300 == 0 and _epoch(query_plan.origin) % 300 == 0:
        five_from = max(_at(_epoch(query_plan.minute_from) // 300 * 300), query_plan.raw_from)
    reads: list[Read] = [
        (build, query_plan.raw_from, five_from, 300),
        (build, five_from, query_plan.minute_from, 60),
        (_raw_sql, query_plan.minute_from, query_plan.end, "raw"),
    ]
    if whole:
        reads[:2] = [(build, query_plan.raw_from, query_plan.end, query_plan.resolution)]
    return [read for read in reads if read[1] < read[2]]


def _read_tail(
    cur: Cursor,
    query: MetricQuery,
    build: Callable[[MetricQuery, dict[str, Any]], str],
    params: dict[str, Any],
    query_plan: Plan,
    into: dict[str, list[tuple[int, float]]],
    *,
    whole: bool = False,
    distributions: bool = False,
) -> None:
    """The slots from raw_from: their complete 5-minute buckets from the 5m rollups of ``build``'s source (for
    steps over 5 minutes), their remaining complete minutes (before minute_from) from its 1m rollups, the rest from
    raw points (``distributions``: histogram or summary series among them); merged per (labels, slot). ``whole``:
    the rollups of the plan's resolution hold exactly those minutes (group rows, ``_group_key``): one row per group
    and slot read instead of a dozen."""
    reads = _tail_reads(build, query_plan, whole=whole)
    # Every source in one statement (one round trip).
    tail = _read_partials_together(cur, query, reads, params)
    _merge_tail(cur, query, params, query_plan, reads, tail, into, distributions=distributions)


def _merge_tail(
    cur: Cursor,
    query: MetricQuery,
    params: dict[str, Any],
    query_plan: Plan,
    reads: list[Read],
    tail: list[list[tuple[str, int, Any]]],
    into: dict[str, list[tuple[int, float]]],
    *,
    distributions: bool,
) -> None:
    """The tail's partials (each read's rows, ``_tail_reads``' order), with the raw histogram and summary points'
    (``distributions``), merged per (labels, slot) into ``into``."""
    rolled: dict[tuple[str, int], list[Any]] = {}
    raw: dict[tuple[str, int], Any] = {}
    # The rows taken in the reads' order (rolled partials are added in that order: the same sums).
    for (_, start, end, resolution), rows in zip(reads, tail, strict=True):
        for labels, slot, value in rows:
            if resolution == "raw":
                raw[(labels, slot)] = value
            else:
                rolled.setdefault((labels, slot), []).append(value)
        if resolution == "raw" and distributions:
            for labels_slot, value in _distribution_partials(cur, query, params, start, end).items():
                rolled.setdefault(labels_slot, []).append(value)
    for labels, slot in rolled.keys() | raw.keys():
        value = _combined(query.aggregation, query_plan.step, rolled.get((labels, slot), []), raw.get((labels, slot)))
        if _carried(value):
            into.setdefault(labels, []).append((slot, value))


def _combined(aggregation: str, step: int, rolled: list[Any], raw: Any) -> float | None:
    """One slot's value from the partial aggregates of its rolled-up buckets and of its raw points (None: none)."""
    key = _aggregate_key(aggregation)
    if key == "percentile":
        sketches = [sketch for listed in rolled for sketch in _sketches(listed)]
        if raw:
            values = Sketch()
            values.add_many(raw)
            sketches.append(values.to_json())
        return merged_quantile(sketches, PERCENTILES[aggregation])
    parts = [p for p in (*rolled, raw) if p is not None]
    if key == "last":
        latest = [(p[1], p[0]) for p in parts if p[0] is not None]
        return max(latest)[1] if latest else None
    firsts = [p[0] for p in parts if p[0] is not None]
    if key == "min":
        return min(firsts) if firsts else None
    if key == "max":
        return max(firsts) if firsts else None
    total = sum(firsts) if firsts else None
    if key == "avg":
        counts = [p[1] for p in parts if p[1] is not None]
        count = sum(counts) if counts else 0
        return total / count if total is not None and count else None
    if key == "rate":
        return total / step if total is not None else None
    return total  # sum, count, increase


_SLOT_OF = operator.itemgetter(0)


def _shape(grouped: dict[str, list[tuple[int, float]]]) -> list[SeriesPoints]:
    """(slot, value) points per labels (as jsonb text; only points JSON can carry, ``_carried``) → one SeriesPoints
    per labels with points, ordered by their sorted-keys JSON, its points by slot."""
    shaped = []
    for text, points in grouped.items():
        if not points:
            continue
        labels = json.loads(text) if text else {}
        # In place; the reads mostly come in slot order already, which the sort merely checks (n comparisons).
        points.sort(key=_SLOT_OF)
        shaped.append((json.dumps(labels, sort_keys=True, default=str), labels, points))
    # Built without validation: the engine made every label and [int, float] point itself (thousands per query).
    return [SeriesPoints.model_construct(labels=labels, points=points) for _, labels, points in sorted(shaped)]


def _query_params(
    project_id: UUID,
    query: MetricQuery,
    query_plan: Plan,
    loc: list[Any],
    shard_ids: list[int] | None,
    group_key: str | None,
) -> dict[str, Any]:
    """The statement parameters every read of the query shares (``_window_params`` adds each read's window);
    ``group_key``: the group rows' key and one list of values per filter (``_group_rollup_sql``)."""
    params: dict[str, Any] = {
        "project": project_id,
        "step": float(query_plan.step),
        "step_interval": timedelta(seconds=query_plan.step),
        # The slots' grid, from its first point after the epoch: with an origin after the time, date_bin puts a
        # time exactly on a bin boundary into the bin before (a rollup bucket starting a window went to the
        # previous slot), so the origin must precede every time binned.
        "origin": _at(_epoch(query_plan.origin) % query_plan.step),
        "epoch": ORIGIN,
        "quantile": PERCENTILES.get(query.aggregation),
        "loc": loc,  # not a statement parameter: where a 422 points to
        "shard_ids": shard_ids,
    }
    if group_key is not None:
        params["group_key"] = group_key
        for i, f in enumerate(query.filters):
            params[f"g{i}"] = [Jsonb(v) for v in (f.value if isinstance(f.value, list) else [f.value])]
    return params


def _run_one(
    cur: Cursor, project_id: UUID, query: MetricQuery, query_plan: Plan, loc: list[Any], shard: Shard | None = None
) -> QueryResult:
    """One query's result. ``shard``: only the result series of that shard (their labels' hash), read from the
    per-series rollups and raw points (the group rollups are not sharded)."""
    shard_ids = _shard_series(cur, project_id, query, shard) if shard is not None and shard.count > 1 else None
    # The group rollups' state is read with the series count (the group rollups are not sharded).
    candidate = _group_candidate(query, query_plan) if shard_ids is None else None
    matches = _count_series(
        cur, project_id, query, shard_ids, group=None if candidate is None else (candidate, query_plan)
    )
    matched, counters = matches.series, matches.counters
    distributions = matches.distributions > 0
    if matched > MAX_SERIES:
        raise Unprocessable(
            f"The query matches more than {MAX_SERIES} series of {query.name!r}:"
            " add filters, or group_by fewer attributes over fewer series",
            code="too_many_series",
            details={"loc": loc, "matched": f">{MAX_SERIES}", "limit": MAX_SERIES},
        )
    if query.aggregation in COUNTER_AGGREGATIONS and matched and not counters:
        raise Unprocessable(
            f"{query.aggregation} applies to counters (monotonic sums); {query.name!r} has none: use avg, max, last...",
            code="not_a_counter",
            details={"loc": [*loc, "aggregation"]},
        )
    points: dict[str, list[tuple[int, float]]] = {}  # per labels (jsonb text): (slot, value)
    source: Source = "raw" if query_plan.resolution == "raw" else "series"
    if matched:
        group_key, tail_whole, query_plan = _group_key(matches, query, candidate, query_plan)
        params = _query_params(project_id, query, query_plan, loc, shard_ids, group_key)
        if query_plan.resolution != "raw":
            build = _rollup_sql
            if group_key is not None:
                source, build = "group", _group_rollup_sql
            before = query_plan.start < query_plan.raw_from  # slots read at the plan's resolution
            tail = query_plan.raw_from < query_plan.minute_from  # slots from raw_from: rolled minutes, raw points
            if before and tail:
                _read_points_and_tail(
                    cur, query, build, params, query_plan, points, whole=tail_whole, distributions=distributions
                )
            elif before:
                _read_points(
                    cur, query, build, params, query_plan.start, query_plan.raw_from, query_plan.resolution, points
                )
            elif tail:
                _read_tail(cur, query, build, params, query_plan, points, whole=tail_whole, distributions=distributions)
            if not tail and query_plan.raw_from < query_plan.end:
                _read_raw(cur, query, params, query_plan.raw_from, query_plan.end, points, distributions=distributions)
        else:
            _read_raw(cur, query, params, query_plan.start, query_plan.end, points, distributions=distributions)
    assert query.id is not None
    return QueryResult(
        id=query.id,
        name=query.name,
        aggregation=query.aggregation,
        resolution=query_plan.resolution,
        source=source,
        step=query_plan.step,
        start=_epoch(query_plan.start),
        end=_epoch(query_plan.end),
        raw_from=_epoch(query_plan.raw_from) if query_plan.raw_from < query_plan.end else None,
        series_matched=matched,
        series=_shape(points),
    )


def run_queries(
    principal: Principal, project_id: UUID, request: QueryRequest, *, now: datetime | None = None
) -> QueryResponse:
    now = now or datetime.now(UTC)
    loc: list[Any] = ["body", "queries", 0]
    try:
        with tenant_transaction(principal.rls_claims()) as cur:
            authorize_telemetry(cur, principal, project_id)
            results = []
            for index, query in enumerate(request.queries):
                loc = ["body", "queries", index]
                query_plan = plan(query, now, loc=loc)
                results.append(_run_one(cur, project_id, query, query_plan, loc))
    except psycopg.errors.InvalidRegularExpression as exc:
        # Python's re accepted it (checked on the way in) but Postgres' regex dialect does not.
        raise InvalidInput(
            "A regular expression of this query is not accepted by the database's regex dialect",
            code="invalid_regex",
            details={"loc": [*loc, "filters"], "reason": str(exc.diag.message_primary or exc)},
        ) from None
    return QueryResponse(results=results)
