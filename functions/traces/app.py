"""Traces of a project: one trace as a span tree with its logs, trace search, and per-service statistics.

Read with a user token (viewer and up) or an API key with the ``read`` scope bound to the project.
Thin: parse, one call, envelope.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT
from observai.timetext import DateTimeText
from observai.traces import reads
from observai.traces.models import ServiceStatsWindow, Trace, TraceListItem

app = create_resolver()

TraceId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{32}$", description="32 hexadecimal characters")]
From = Annotated[DateTimeText | None, Query(alias="from", description="RFC 3339 start of the window (inclusive)")]
To = Annotated[DateTimeText | None, Query(alias="to", description="RFC 3339 end of the window (exclusive)")]
Text = Annotated[str | None, Query(min_length=1, max_length=512)]
Duration = Annotated[
    str | None, Query(max_length=32, description="A span duration: 250ms, 1.5s, 2m, 800us, 100ns, 1h (bare number: ms)")
]
SEARCH_HELP = (
    "Traces with at least one span matching every filter given, newest matching span first. `service`, "
    "`operation` (the span name) and `status` compare exactly; `min_duration`/`max_duration` bound the span's "
    "duration; any number of `match[<attribute>]=<value>` parameters match span attributes by equality (a value "
    "like `200` or `true` also matches the JSON number or boolean). The window [from, to) defaults to the last "
    "24 hours and is at most 31 days. Each page walks at most 100,000 spans (of the service, when given) and "
    "keeps at most 10,000 matches, so a page may hold fewer than `limit` traces (even none) and still carry a "
    "next_cursor."
)


@app.get(
    "/v1/projects/<project_id>/traces/<trace_id>",
    tags=["traces"],
    responses=route_responses(200, e400="An invalid trace id or range (from after to, too long)"),
)
def get_trace(
    caller: CurrentPrincipal, project_id: UUID, trace_id: TraceId, from_: From = None, to: To = None
) -> Envelope[Trace]:
    """Every span of the trace (at most 10,000) in tree order, with offsets, durations, events and links; a
    summary; and the logs carrying the trace id (at most 1,000, oldest first). `from`/`to` optionally bound the
    spans' start times: only those days are read."""
    return ok(reads.get_trace(caller, project_id, trace_id, from_, to))


@app.get(
    "/v1/projects/<project_id>/traces",
    tags=["traces"],
    description=SEARCH_HELP,
    responses=route_responses(200, e400="An invalid duration, attribute filter or range (from after to, too long)"),
)
def search_traces(
    caller: CurrentPrincipal,
    project_id: UUID,
    service: Text = None,
    operation: Text = None,
    status: Annotated[Literal["unset", "ok", "error"] | None, Query()] = None,
    min_duration: Duration = None,
    max_duration: Duration = None,
    from_: From = None,
    to: To = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[TraceListItem]]:
    items, next_cursor = reads.search_traces(
        caller,
        project_id,
        service=service,
        operation=operation,
        status=status,
        min_duration=min_duration,
        max_duration=max_duration,
        start=from_,
        end=to,
        query_params=app.current_event.query_string_parameters,
        cursor=cursor,
        limit=limit,
    )
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(
    "/v1/projects/<project_id>/services",
    tags=["traces"],
    responses=route_responses(200, e400="An invalid range (from after to, longer than 24 hours)"),
)
def service_stats(
    caller: CurrentPrincipal, project_id: UUID, from_: From = None, to: To = None
) -> Envelope[ServiceStatsWindow]:
    """Each service with spans in [from, to) (default: the last hour; at most 24 hours): request rate, error
    rate and p50/p95 latency. Requests are spans of kind server or consumer, and root spans (no parent): the
    work a service was asked to do, whoever instrumented it."""
    return ok(reads.service_stats(caller, project_id, from_, to))


lambda_handler = lambda_handler_for(app)
