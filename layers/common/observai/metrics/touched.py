"""Step 2 of the aggregation (``observai.metrics.rollup``) in numpy: what the window's points touched.

The window's points (``ingested_at`` in (watermark, new watermark], by the BRIN index) leave Postgres as packed binary
rows of (project, series, time) (``rollup_pass.packed_rows``). numpy finds the distinct (series, minute) pairs, keeps
those of known series, and cuts each series' minutes into ranges of consecutive minutes. Back in Postgres, as the
run's temp tables:

- ``rollup_ranges`` (org_id, project_id, series_id, kind, type, temporality, range_start, range_end, no, sid,
  fresh): one index range read each for the passes; ``no`` numbers the ranges and ``sid`` the series, in (project,
  series, range_start) order; ``fresh`` when no 1m row exists in the range yet (the usual case: plain inserts);
- ``rollup_touched_metrics`` (org_id, project_id, name, bucket_start): the (metric, minute) pairs, for the group
  queue;
- ``rollup_distribution_minutes`` (project_id, series_id, bucket_start): the touched minutes of histograms and
  summaries, whose stored sketches give the run's entries.

In SQL (a GROUP BY of the window's points joined to their series, then gaps and islands over every pair) this cost
about as much as the bench's whole ceiling statement, for bookkeeping.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from observai.db.connection import Cursor
from observai.metrics.rollup_pass import MINUTE_US, copy_in, packed_rows, segments, sort_order

_WINDOW_SQL = """
select p.project_id, p.series_id, p.time from public.metric_points p
where p.ingested_at > %(watermark)s and p.ingested_at <= %(new_watermark)s
"""
_WINDOW_COLUMNS = [("project_id", "uuid"), ("series_id", "int8"), ("time", "timestamptz")]

_SERIES_SQL = """
select s.project_id, s.series_id, s.org_id, s.name, s.type, s.temporality,
    case
        when s.type = 'sum' and s.monotonic and s.temporality = 'delta' then 'delta_counter'
        when s.type = 'sum' and s.monotonic then 'counter'
        when s.type in ('gauge', 'sum') then 'gauge'
        else 'distribution'
    end as kind
from unnest(%(project)s::uuid[], %(series)s::bigint[]) as u(project_id, series_id)
join public.metric_series s on s.project_id = u.project_id and s.series_id = u.series_id
"""

_EPOCH = "timestamptz '2000-01-01 00:00:00+00'"  # binary timestamps count microseconds from Postgres' epoch

_RANGES_SQL = f"""
create temp table rollup_ranges on commit drop as
select u.org_id, u.project_id, u.series_id, u.kind, u.type, u.temporality,
    {_EPOCH} + u.start_us * interval '1 microsecond' as range_start,
    {_EPOCH} + u.end_us * interval '1 microsecond' as range_end,
    u.no, u.sid,
    not exists (
        select 1 from public.metric_rollups m
        where m.project_id = u.project_id and m.series_id = u.series_id and m.resolution = 60
            and m.bucket_start >= {_EPOCH} + u.start_us * interval '1 microsecond'
            and m.bucket_start < {_EPOCH} + u.end_us * interval '1 microsecond'
    ) as fresh
from unnest(%(org)s::uuid[], %(project)s::uuid[], %(series)s::bigint[], %(kind)s::text[], %(type)s::text[],
    %(temporality)s::text[], %(start)s::bigint[], %(end)s::bigint[], %(no)s::integer[], %(sid)s::integer[])
    as u(org_id, project_id, series_id, kind, type, temporality, start_us, end_us, no, sid)
"""

_METRICS_SQL = """
create temp table rollup_touched_metrics on commit drop as
select m.org_id, m.project_id, m.name, x.bucket_start
from rollup_metric_minutes x
join unnest(%(metric)s::integer[], %(org)s::uuid[], %(project)s::uuid[], %(name)s::text[])
    as m(metric, org_id, project_id, name) on m.metric = x.metric
"""


@dataclass
class Touched:
    points: int  # the window's points of known series
    minutes: int  # their (series, minute) pairs


def distinct_uuids(column: Any) -> tuple[Any, Any]:
    """``numpy.unique(column, return_inverse=True)`` for uuids (16-byte values) in bytewise order (Postgres' uuid
    order), a tenth of the time: the values are told apart by their first 8 bytes as a big-endian integer, unless two
    distinct ones share them (then numpy.unique of the whole values)."""
    import numpy as np

    if not len(column):
        return np.unique(column, return_inverse=True)
    halves = np.ascontiguousarray(column).view(">u8").reshape(-1, 2)
    heads, inverse = np.unique(halves[:, 0].astype(np.uint64), return_inverse=True)
    first = np.zeros(len(heads), dtype=np.int64)
    first[inverse] = np.arange(len(column))  # a row of each head
    if (halves[:, 1] == halves[first, 1][inverse]).all():
        return column[first], inverse
    return np.unique(column, return_inverse=True)


def touched(cur: Cursor, watermark: Any, new_watermark: Any) -> Touched:
    """The window's touched pairs: the temp tables above (empty when nothing was touched)."""
    import numpy as np

    rows = packed_rows(cur, _WINDOW_SQL, _WINDOW_COLUMNS, {"watermark": watermark, "new_watermark": new_watermark})
    projects, p_no = distinct_uuids(rows["project_id"])
    series = rows["series_id"].astype(np.int64)
    t = rows["time"].astype(np.int64)
    minute = t - np.mod(t, MINUTE_US)
    order = sort_order((minute, series, p_no))
    p_no, series, minute = p_no[order].astype(np.int64), series[order], minute[order]

    # Each point's series (distinct (project, series), in order), then the distinct (series, minute) pairs with their
    # points; pairs of unknown series (no metric_series row) roll into nothing.
    s_first, s_of_point = segments(p_no, series)
    starts, _ = segments(s_of_point, minute)
    points = np.diff(np.append(starts, len(minute)))
    s_of_pair, minute = s_of_point[starts], minute[starts]
    s_project, s_series = p_no[s_first], series[s_first]
    project_ids = [uuid.UUID(bytes=bytes(p)) for p in projects.tolist()]
    cur.execute(_SERIES_SQL, {"project": [project_ids[p] for p in s_project.tolist()], "series": s_series.tolist()})
    found = {(r["project_id"], r["series_id"]): r for r in cur.fetchall()}
    info = [found.get((project_ids[p], s)) for p, s in zip(s_project.tolist(), s_series.tolist(), strict=True)]
    known = np.array([i is not None for i in info], dtype=np.bool_)
    keep = known[s_of_pair] if len(s_of_pair) else np.zeros(0, dtype=np.bool_)
    minute, points, s_of_pair = minute[keep], points[keep], s_of_pair[keep]
    p_no, series = s_project[s_of_pair], s_series[s_of_pair]

    _ranges(cur, p_no, series, minute, s_of_pair, info, project_ids)
    _touched_metrics(cur, minute, s_of_pair, info)
    distribution = np.array([i is not None and i["kind"] == "distribution" for i in info], dtype=np.bool_)
    d = distribution[s_of_pair] if len(s_of_pair) else np.zeros(0, dtype=np.bool_)
    cur.execute(
        "create temp table rollup_distribution_minutes (project_id uuid, series_id bigint, bucket_start timestamptz)"
        " on commit drop"
    )
    if d.any():
        copy_in(
            cur,
            "copy rollup_distribution_minutes from stdin (format binary)",
            [("project", projects[p_no[d]]), ("series", series[d]), ("bucket", minute[d])],
        )
    return Touched(points=int(points.sum()), minutes=len(minute))


def _ranges(cur: Cursor, p_no: Any, series: Any, minute: Any, s_of_pair: Any, info: list[Any], project_ids: list[Any]
            ) -> None:  # fmt: skip
    """rollup_ranges: each series' touched minutes cut where a minute is not the one after the last."""
    import numpy as np

    n = len(minute)
    cut = np.ones(n, dtype=np.bool_)
    cut[1:] = (s_of_pair[1:] != s_of_pair[:-1]) | (minute[1:] != minute[:-1] + MINUTE_US)
    first = np.flatnonzero(cut)
    last = np.append(first[1:], n)[: len(first)] - 1
    r_series = s_of_pair[first]
    sid = np.unique(r_series, return_inverse=True)[1]  # the series' rank among the kept ones (dense, in order)
    rows = [info[s] for s in r_series.tolist()]
    cur.execute(
        _RANGES_SQL,
        {
            "org": [r["org_id"] for r in rows],
            "project": [project_ids[p] for p in p_no[first].tolist()],
            "series": series[first].tolist(),
            "kind": [r["kind"] for r in rows],
            "type": [r["type"] for r in rows],
            "temporality": [r["temporality"] for r in rows],
            "start": minute[first].tolist(),
            "end": (minute[last] + MINUTE_US).tolist(),
            "no": list(range(len(first))),
            "sid": sid.tolist(),
        },
    )
    cur.execute("analyze rollup_ranges")


def _touched_metrics(cur: Cursor, minute: Any, s_of_pair: Any, info: list[Any]) -> None:
    """rollup_touched_metrics: the distinct (metric, minute) pairs."""
    import numpy as np

    metrics: dict[tuple[Any, str], int] = {}
    s_metric = np.array(
        [metrics.setdefault((i["project_id"], i["name"]), len(metrics)) if i is not None else -1 for i in info],
        dtype=np.int64,
    )
    m_of_pair = s_metric[s_of_pair] if len(s_of_pair) else np.zeros(0, dtype=np.int64)
    # (metric, minute) as one integer: the metric above bit 32, the minute's number from the window's first above it.
    base = int(minute.min()) // MINUTE_US if len(minute) else 0
    pairs = np.unique((m_of_pair << 32) + (minute // MINUTE_US - base))
    cur.execute("create temp table rollup_metric_minutes (metric integer, bucket_start timestamptz) on commit drop")
    if len(pairs):
        copy_in(
            cur,
            "copy rollup_metric_minutes from stdin (format binary)",
            [("metric", (pairs >> 32).astype(np.int32)), ("bucket", ((pairs & (2**32 - 1)) + base) * MINUTE_US)],
        )
    org = {(i["project_id"], i["name"]): i["org_id"] for i in info if i is not None}
    keys = list(metrics)
    cur.execute(
        _METRICS_SQL,
        {
            "metric": list(range(len(keys))),
            "org": [org[k] for k in keys],
            "project": [k[0] for k in keys],
            "name": [k[1] for k in keys],
        },
    )
    cur.execute("drop table rollup_metric_minutes")
