"""SQL of the traces API. Every statement runs as the caller (RLS on) and filters on project_id, the leading
column of every span and log index; user text only ever travels as bound parameters.

Spans are partitioned by day of start_time and have no global index on trace_id: each partition has its
own (project_id, trace_id, span_id, start_time) dedup index, so finding a trace without a time hint is one
short index probe per partition (see ``observai.traces.reads`` for how the fetch keeps that cheap).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from observai.db.connection import Cursor

_SPAN_COLUMNS = (
    "s.span_id, s.parent_span_id, s.name, s.kind, s.service, s.start_time, s.end_time, s.duration_ns,"
    " s.status_code, s.status_message, s.attributes, s.resource, s.scope, s.events, s.links, s.trace_state"
)


def _time_bounds(column: str, start: datetime | None, end: datetime | None, params: dict[str, Any]) -> str:
    """``and`` conditions for [start, end) on ``column``; only the given sides, so the planner prunes partitions."""
    bounds = ""
    if start is not None:
        bounds += f" and {column} >= %(start)s"
        params["start"] = start
    if end is not None:
        bounds += f" and {column} < %(end)s"
        params["end"] = end
    return bounds


def trace_spans(
    cur: Cursor, project_id: UUID, trace_id: str, start: datetime | None, end: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` spans of the trace with start_time in [start, end) (a side left open when None), earliest
    first. MATERIALIZED keeps the planner on the trace index: with ORDER BY start_time LIMIT alone it could
    prefer walking the project's (project_id, start_time) index and filter on trace_id."""
    params: dict[str, Any] = {"project": project_id, "trace": trace_id, "scan": limit * 10, "limit": limit}
    bounds = _time_bounds("s.start_time", start, end, params)
    cur.execute(
        "with trace as materialized ("
        f" select {_SPAN_COLUMNS} from public.spans s"
        f" where s.project_id = %(project)s and s.trace_id = %(trace)s{bounds}"
        " limit %(scan)s"
        ") select * from trace order by start_time, span_id limit %(limit)s",
        params,
    )
    return cur.fetchall()


def trace_logs(
    cur: Cursor, project_id: UUID, trace_id: str, start: datetime | None, end: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` logs carrying the trace id, oldest first (the partial (project_id, trace_id) index)."""
    params: dict[str, Any] = {"project": project_id, "trace": trace_id, "scan": limit * 10, "limit": limit}
    bounds = _time_bounds("l.time", start, end, params)
    cur.execute(
        "with found as materialized ("
        " select l.id, l.time, l.severity_number, l.severity_text, l.service, l.body, l.span_id, l.attributes"
        f" from public.logs l where l.project_id = %(project)s and l.trace_id = %(trace)s{bounds}"
        " limit %(scan)s"
        ") select * from found order by time, id limit %(limit)s",
        params,
    )
    return cur.fetchall()


def search_traces(
    cur: Cursor,
    project_id: UUID,
    *,
    start: datetime,
    end: datetime,
    indexed_filters: str,
    residual_filters: str,
    params: dict[str, Any],
    after: tuple[datetime, str] | None,
    limit: int,
    scan: int,
    examine: int,
    spread: timedelta,
) -> list[dict[str, Any]]:
    """Traces with a span matching the filters (SQL on alias ``s``, values in ``params``) in [start, end),
    ordered by their newest matching span (matched_at desc, trace_id desc), after the ``after`` position.

    One walk over the window's spans, newest first (position = (start_time, trace_id)): ``indexed_filters``
    (the service: the (project_id, service, start_time) index) select the spans walked, at most ``examine``
    of them; ``residual_filters`` (no index) are checked on each, and the walk stops after ``scan`` matches.
    The first appearance of a trace in the walk is its newest matching span, so the distinct traces of any
    prefix of the walk are an exact prefix of the list; traces already listed on earlier pages (a matching
    span at or above the cursor) are left out. Each kept trace is summarised from its spans within
    ``spread`` of matched_at.

    The statement always returns at least one row: ``cut`` says the walk stopped at a bound (more may follow)
    and ``last_ts``/``last_trace`` is where: everything at or above it was examined."""
    cursor_scan = ""
    cursor_keep = ""
    values = dict(params)
    values.update(project=project_id, start=start, end=end, limit=limit + 1, scan=scan, examine=examine)
    values["spread"] = spread
    if after is not None:
        values.update(after_ts=after[0], after_trace=after[1])
        # The plain start_time bound is what the index (and partition pruning) can use; the row comparison
        # then settles ties within the cursor's microsecond.
        cursor_scan = (
            " and s.start_time <= %(after_ts)s and (s.start_time, s.trace_id) < (%(after_ts)s, %(after_trace)s)"
        )
        cursor_keep = (
            " where not exists (select 1 from public.spans s where s.project_id = %(project)s"
            " and s.trace_id = f.trace_id and s.start_time >= %(after_ts)s and s.start_time < %(end)s"
            f"{indexed_filters}{residual_filters}"
            " and (s.start_time > %(after_ts)s or s.trace_id >= %(after_trace)s))"
        )
    # walked: the matching spans, plus the examine-th span walked (n = examine) when the walk got that far, as
    # the marker of where it stopped. Both limits stop the index scan early (row_number streams).
    cur.execute(
        "with walked as materialized ("
        " select w.trace_id, w.start_time, w.matches, w.n from ("
        f"  select s.trace_id, s.start_time, (true{residual_filters}) as matches,"
        "   row_number() over (order by s.start_time desc, s.trace_id desc) as n"
        "  from public.spans s"
        "  where s.project_id = %(project)s and s.start_time >= %(start)s and s.start_time < %(end)s"
        f"{indexed_filters}{cursor_scan}"
        "  order by s.start_time desc, s.trace_id desc limit %(examine)s"
        " ) w where w.matches or w.n = %(examine)s"
        " limit %(scan)s + 1"
        "), firsts as ("
        " select trace_id, max(start_time) as matched_at from walked where matches group by trace_id"
        "), kept as ("
        f" select f.trace_id, f.matched_at from firsts f{cursor_keep}"
        " order by f.matched_at desc, f.trace_id desc limit %(limit)s"
        "), stats as ("
        " select (select count(*) > %(scan)s or coalesce(max(n) = %(examine)s, false) from walked) as cut,"
        " (select l.start_time from walked l order by l.start_time, l.trace_id limit 1) as last_ts,"
        " (select l.trace_id from walked l order by l.start_time, l.trace_id limit 1) as last_trace"
        ")"
        " select st.cut, st.last_ts, st.last_trace, k.trace_id, k.matched_at, t.*"
        " from stats st left join (kept k cross join lateral ("
        "  select count(*) as span_count, min(t.start_time) as start_time, max(t.end_time) as end_time,"
        "  count(*) filter (where t.status_code = 'error') as error_count,"
        "  (array_agg(t.name order by t.parent_span_id is not null, t.start_time, t.span_id))[1] as root_name,"
        "  (array_agg(t.service order by t.parent_span_id is not null, t.start_time, t.span_id))[1]"
        "   as root_service,"
        "  coalesce(array_agg(distinct t.service) filter (where t.service is not null), '{}') as services"
        "  from public.spans t where t.project_id = %(project)s and t.trace_id = k.trace_id"
        "  and t.start_time >= k.matched_at - %(spread)s and t.start_time <= k.matched_at + %(spread)s"
        " ) t) on true"
        " order by k.matched_at desc, k.trace_id desc",
        values,
    )
    return cur.fetchall()


def service_stats(cur: Cursor, project_id: UUID, start: datetime, end: datetime, limit: int) -> list[dict[str, Any]]:
    """Per service over [start, end): spans, request spans (server or consumer kind, or no parent), their errors
    and nearest-rank p50/p95 durations. One pass over the window's spans."""
    cur.execute(
        "select s.service, count(*) as span_count,"
        " count(*) filter (where s.request) as requests,"
        " count(*) filter (where s.request and s.status_code = 'error') as errors,"
        " percentile_disc(0.5) within group (order by s.duration_ns) filter (where s.request) as p50_ns,"
        " percentile_disc(0.95) within group (order by s.duration_ns) filter (where s.request) as p95_ns"
        " from (select service, status_code, duration_ns,"
        "  (kind in ('server', 'consumer') or parent_span_id is null) as request"
        "  from public.spans where project_id = %(project)s and start_time >= %(start)s and start_time < %(end)s"
        " ) s group by s.service order by s.service nulls last limit %(limit)s",
        {"project": project_id, "start": start, "end": end, "limit": limit},
    )
    return cur.fetchall()
