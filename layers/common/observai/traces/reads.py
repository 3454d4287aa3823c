"""The traces API's domain: fetch one trace (span tree + correlated logs), search traces, per-service stats.

Callers: a member of the project's organization (viewer and up) or an API key bound to the project with the
``read`` scope (``authorize_telemetry``); every read runs as the caller under RLS, so another project's trace is
simply not found (404).

Trace fetch without a time hint: spans are partitioned by day and a trace id has no global index, so the
fetch first looks in the last ``RECENT_DAYS`` (where nearly every trace someone opens lives: a link from an
alert, a log line, a fresh search); only when nothing is there does it probe every partition (one short index
probe each: measured under 10 ms on 1 M spans over 7 daily partitions). A trace found in the recent days that
began within ``TRACE_SPREAD`` of their start is read again from ``TRACE_SPREAD`` before its first span, so a
trace crossing the boundary is whole. Its logs are read within ``LOG_SLACK`` of the trace's extent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction
from observai.errors import InvalidInput, NotFound
from observai.metrics.filters import filter_sql, match_filters
from observai.pagination import decode_cursor, encode_cursor
from observai.tenancy.access import authorize_telemetry
from observai.traces import store
from observai.traces.models import (
    ServiceStats,
    ServiceStatsWindow,
    Trace,
    TraceListItem,
    TraceLog,
    TraceSpan,
    TraceSummary,
)
from observai.traces.tree import build_tree, flatten

MAX_SPANS = 10_000  # spans returned by a trace fetch
MAX_TRACE_LOGS = 1_000  # logs returned with a trace
RECENT_DAYS = timedelta(days=2)  # where a trace fetch without hints looks first
TRACE_SPREAD = timedelta(days=1)  # how far from its found spans the rest of a trace is looked for
LOG_SLACK = timedelta(hours=1)  # logs of a trace: from its first span start - slack to its last span end + slack
SEARCH_SCAN = 10_000  # matching spans read per search page
# Spans examined per search page (those of the service, when one is given): a filter without an index
# (operation, status, durations, attributes) with a rare value must not walk a month of spans in one request.
SEARCH_EXAMINE = 100_000
SEARCH_DEFAULT_WINDOW = timedelta(hours=24)
SEARCH_MAX_WINDOW = timedelta(days=31)
STATS_DEFAULT_WINDOW = timedelta(hours=1)
STATS_MAX_WINDOW = timedelta(days=1)
MAX_SERVICES = 1_000
TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h)?\s*$")
_NS_PER_UNIT = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


class TraceCursor(BaseModel):
    """Position in a trace search: the last listed trace's newest matching span start, and its id."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    ts: AwareDatetime
    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$")


# --- parameters ----------------------------------------------------------------------------------------------


def check_trace_id(trace_id: str) -> str:
    if not TRACE_ID.match(trace_id):
        raise InvalidInput("A trace id is 32 hexadecimal characters", details={"loc": ["path", "trace_id"]})
    return trace_id.lower()


def parse_duration_ns(value: str | None, name: str) -> int | None:
    """``250ms``, ``1.5s``, ``2m``, ``800us``, ``100ns``, ``1h``; a bare number is milliseconds."""
    if value is None or value == "":
        return None
    match = _DURATION.match(value)
    if not match:
        raise InvalidInput(
            f"{name}: a number with an optional unit (ns, us, ms, s, m, h; default ms), like 250ms or 1.5s",
            details={"loc": ["query", name], "value": value[:64]},
        )
    ns = round(float(match.group(1)) * _NS_PER_UNIT[match.group(2) or "ms"])
    if ns >= 2**63:
        raise InvalidInput(f"{name} is too large", details={"loc": ["query", name]})
    return ns


def _check_zones(start: datetime | None, end: datetime | None) -> None:
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(
                f"{name} needs a time zone (RFC 3339, e.g. 2026-01-01T00:00:00Z)", details={"loc": ["query", name]}
            )


def window(
    start: datetime | None, end: datetime | None, default: timedelta, maximum: timedelta, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[from, to): to defaults to now, from to ``to - default``; at most ``maximum`` long."""
    _check_zones(start, end)
    end = end or now or datetime.now(UTC)
    start = start or end - default
    if start >= end:
        raise InvalidInput("from must be before to", details={"loc": ["query", "from"]})
    if end - start > maximum:
        raise InvalidInput(
            f"The window is at most {_spoken(maximum)}",
            details={"loc": ["query", "from"], "max_seconds": maximum.total_seconds()},
        )
    return start, end


def _spoken(span: timedelta) -> str:
    return f"{span.days:g} days" if span.days > 1 else f"{span.total_seconds() / 3600:g} hours"


# --- one trace -----------------------------------------------------------------------------------------------


def _ms(delta: timedelta) -> float:
    return delta / timedelta(microseconds=1) / 1000


def get_trace(
    principal: Principal, project_id: UUID, trace_id: str, start: datetime | None = None, end: datetime | None = None
) -> Trace:
    """Every span of the trace in tree order with the summary, and the logs carrying its id. ``start``/``end``
    are optional hints bounding the spans' start times (only the partitions they cover are read)."""
    trace_id = check_trace_id(trace_id)
    _check_zones(start, end)
    if start is not None and end is not None and start >= end:
        raise InvalidInput("from must be before to", details={"loc": ["query", "from"]})
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        if start is not None or end is not None:
            spans = store.trace_spans(cur, project_id, trace_id, start, end, MAX_SPANS + 1)
        else:
            spans = _find_trace(cur, project_id, trace_id)
        if spans:
            first = min(s["start_time"] for s in spans)
            last = max(s["end_time"] for s in spans)
            logs = store.trace_logs(cur, project_id, trace_id, first - LOG_SLACK, last + LOG_SLACK, MAX_TRACE_LOGS + 1)
        else:
            logs = store.trace_logs(cur, project_id, trace_id, start, end, MAX_TRACE_LOGS + 1)
    if not spans and not logs:
        raise NotFound("Trace not found", details={"trace_id": trace_id})
    return _trace(trace_id, spans, logs)


def _find_trace(cur: Any, project_id: UUID, trace_id: str) -> list[dict[str, Any]]:
    """Recent days first (a few partitions), then every partition."""
    recent_from = datetime.now(UTC) - RECENT_DAYS
    spans = store.trace_spans(cur, project_id, trace_id, recent_from, None, MAX_SPANS + 1)
    if not spans:
        return store.trace_spans(cur, project_id, trace_id, None, None, MAX_SPANS + 1)
    first = spans[0]["start_time"]  # earliest first
    if first - TRACE_SPREAD < recent_from:
        # The trace may have begun before the recent days: read back TRACE_SPREAD from its first span found.
        return store.trace_spans(cur, project_id, trace_id, first - TRACE_SPREAD, None, MAX_SPANS + 1)
    return spans


def _trace(trace_id: str, span_rows: list[dict[str, Any]], log_rows: list[dict[str, Any]]) -> Trace:
    spans_truncated = len(span_rows) > MAX_SPANS
    span_rows = span_rows[:MAX_SPANS]
    logs_truncated = len(log_rows) > MAX_TRACE_LOGS
    log_rows = log_rows[:MAX_TRACE_LOGS]
    logs = [TraceLog(**{**row, "id": str(row["id"])}) for row in log_rows]
    if not span_rows:
        at = log_rows[0]["time"]
        summary = TraceSummary(
            span_count=0, services=[], start_time=at, end_time=at, duration_ms=0.0,
            error_count=0, root_count=0, orphan_count=0,
        )  # fmt: skip
        return Trace(
            trace_id=trace_id,
            summary=summary,
            spans=[],
            spans_truncated=False,
            logs=logs,
            logs_truncated=logs_truncated,
        )
    roots = build_tree(span_rows)
    nodes = flatten(roots)
    trace_start = min(row["start_time"] for row in span_rows)
    trace_end = max(row["end_time"] for row in span_rows)
    spans = [
        TraceSpan(
            span_id=n.span["span_id"],
            parent_span_id=n.span["parent_span_id"],
            depth=n.depth,
            orphan=n.orphan,
            child_count=len(n.children),
            name=n.span["name"],
            kind=n.span["kind"],
            service=n.span["service"],
            start_time=n.span["start_time"],
            end_time=n.span["end_time"],
            start_offset_ms=_ms(n.span["start_time"] - trace_start),
            duration_ms=n.span["duration_ns"] / 1e6,
            status_code=n.span["status_code"],
            status_message=n.span["status_message"],
            attributes=n.span["attributes"],
            resource=n.span["resource"],
            scope=n.span["scope"],
            events=n.span["events"],
            links=n.span["links"],
            trace_state=n.span["trace_state"],
        )
        for n in nodes
    ]
    summary = TraceSummary(
        span_count=len(spans),
        services=sorted({s.service for s in spans if s.service is not None}),
        start_time=trace_start,
        end_time=trace_end,
        duration_ms=_ms(trace_end - trace_start),
        error_count=sum(1 for s in spans if s.status_code == "error"),
        root_count=len(roots),
        orphan_count=sum(1 for s in spans if s.orphan),
    )
    return Trace(
        trace_id=trace_id,
        summary=summary,
        spans=spans,
        spans_truncated=spans_truncated,
        logs=logs,
        logs_truncated=logs_truncated,
    )


# --- search --------------------------------------------------------------------------------------------------


def search_traces(
    principal: Principal,
    project_id: UUID,
    *,
    service: str | None,
    operation: str | None,
    status: str | None,
    min_duration: str | None,
    max_duration: str | None,
    start: datetime | None,
    end: datetime | None,
    query_params: Mapping[str, str] | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[TraceListItem], str | None]:
    """Traces with at least one span matching every filter given (service, operation = span name, status,
    span duration bounds, ``match[<attribute>]=<value>`` on span attributes) that starts in [from, to); newest
    matching span first. A page cut short by the scan or examine bound may hold fewer than ``limit`` traces
    (none, even) and still carry a next_cursor."""
    after = decode_cursor(cursor, TraceCursor)
    min_ns = parse_duration_ns(min_duration, "min_duration")
    max_ns = parse_duration_ns(max_duration, "max_duration")
    if min_ns is not None and max_ns is not None and min_ns > max_ns:
        raise InvalidInput("min_duration is above max_duration", details={"loc": ["query", "min_duration"]})
    start, end = window(start, end, SEARCH_DEFAULT_WINDOW, SEARCH_MAX_WINDOW)
    params: dict[str, Any] = {}
    indexed = residual = ""
    if service is not None:
        params["service"] = service
        indexed = " and s.service = %(service)s"
    for column, value, key in (("name", operation, "operation"), ("status_code", status, "status")):
        if value is not None:
            params[key] = value
            residual += f" and s.{column} = %({key})s"
    if min_ns is not None:
        params["min_ns"] = min_ns
        residual += " and s.duration_ns >= %(min_ns)s"
    if max_ns is not None:
        params["max_ns"] = max_ns
        residual += " and s.duration_ns <= %(max_ns)s"
    residual += filter_sql(match_filters(query_params), params)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        rows = store.search_traces(
            cur,
            project_id,
            start=start,
            end=end,
            indexed_filters=indexed,
            residual_filters=residual,
            params=params,
            after=(after.ts, after.trace_id) if after else None,
            limit=limit,
            scan=SEARCH_SCAN,
            examine=SEARCH_EXAMINE,
            spread=TRACE_SPREAD,
        )
    found = [row for row in rows if row["trace_id"] is not None]
    items = [
        TraceListItem(
            trace_id=row["trace_id"],
            root_name=row["root_name"],
            root_service=row["root_service"],
            start_time=row["start_time"],
            duration_ms=_ms(row["end_time"] - row["start_time"]),
            span_count=row["span_count"],
            error_count=row["error_count"],
            has_error=row["error_count"] > 0,
            services=sorted(row["services"]),
            matched_at=row["matched_at"],
        )
        for row in found
    ]
    next_cursor = None
    if len(items) > limit:
        items = items[:limit]
        next_cursor = encode_cursor(TraceCursor(ts=items[-1].matched_at, trace_id=items[-1].trace_id))
    elif rows[0]["cut"]:
        # A bound stopped the walk: continue below the last span it kept (everything above was examined).
        next_cursor = encode_cursor(TraceCursor(ts=rows[0]["last_ts"], trace_id=rows[0]["last_trace"]))
    return items, next_cursor


# --- services ------------------------------------------------------------------------------------------------


def service_stats(
    principal: Principal, project_id: UUID, start: datetime | None, end: datetime | None
) -> ServiceStatsWindow:
    """Each service with spans in [from, to): request rate, error rate, p50/p95 of request durations."""
    start, end = window(start, end, STATS_DEFAULT_WINDOW, STATS_MAX_WINDOW)
    seconds = (end - start).total_seconds()
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        rows = store.service_stats(cur, project_id, start, end, MAX_SERVICES)
    services = [
        ServiceStats(
            service=row["service"],
            span_count=row["span_count"],
            requests=row["requests"],
            request_rate_per_s=row["requests"] / seconds,
            errors=row["errors"],
            error_rate=row["errors"] / row["requests"] if row["requests"] else None,
            p50_ms=row["p50_ns"] / 1e6 if row["p50_ns"] is not None else None,
            p95_ms=row["p95_ns"] / 1e6 if row["p95_ns"] is not None else None,
        )
        for row in rows
    ]
    return ServiceStatsWindow(start=start, end=end, seconds=seconds, services=services)
