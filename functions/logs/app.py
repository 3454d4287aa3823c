"""Log search of a project: the query language, a severity histogram, and the lines around a line.

Read with a user token (viewer and up) or an API key with the ``read`` scope bound to the project.
Thin: parse, one call, envelope. The query language is described in observai.logs.query_language.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.logs import search
from observai.logs.models import LogContext, LogHistogram, LogItem
from observai.pagination import DEFAULT_LIMIT
from observai.timetext import DateTimeText

app = create_resolver()

SearchQuery = Annotated[
    str | None,
    Query(
        description='Lucene-style query: words, "phrases", field:value (severity, service, trace_id, span_id,'
        " attributes.<key>, resource.<key>), -term / NOT, OR, AND, parentheses. A syntax error is a 400 naming"
        " the position."
    ),
]
From = Annotated[
    DateTimeText | None,
    Query(alias="from", description="RFC 3339 start, inclusive (default: to - 1 hour; at most 31 days before to)"),
]
To = Annotated[DateTimeText | None, Query(alias="to", description="RFC 3339 end, exclusive (default: now)")]
LogId = Annotated[int, Path(ge=1, lt=2**63, description="The log line's id")]


SEARCH_HELP = (
    "Log lines matching the query, newest first. A page may hold fewer than `limit` lines while `next_cursor` is"
    " set: the search stopped early to stay fast; follow the cursor until it is null. A malformed query is a 400"
    " `query_syntax_error` with `details.position`; a bad range is a 400 `invalid_range` or `range_too_long`."
)


@app.get(
    "/v1/projects/<project_id>/logs",
    tags=["logs"],
    description=SEARCH_HELP,
    responses=route_responses(
        200,
        e400="A malformed query (query_syntax_error, with details.position) or range (invalid_range, range_too_long)",
    ),
)
def search_logs(
    caller: CurrentPrincipal,
    project_id: UUID,
    q: SearchQuery = None,
    from_: From = None,
    to: To = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[LogItem]]:
    items, next_cursor = search.search_logs(caller, project_id, q, from_, to, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(
    "/v1/projects/<project_id>/logs/histogram",
    tags=["logs"],
    responses=route_responses(
        200,
        e400="A malformed query (query_syntax_error, with details.position) or range (invalid_range, range_too_long)",
    ),
    description="Counts per severity level over round time buckets (1 s to 1 day, at most `buckets` of them),"
    " for the same query and range as the search. Exact. Queries on services and levels only are read from"
    " per-minute counts; others count the matching lines, and a count that would take too long is a 422"
    " `histogram_range_too_broad`: narrow the range.",
)
def log_histogram(
    caller: CurrentPrincipal,
    project_id: UUID,
    q: SearchQuery = None,
    from_: From = None,
    to: To = None,
    buckets: Annotated[
        int, Query(ge=1, le=search.MAX_BUCKETS, description="At most this many buckets (the width is rounded up)")
    ] = search.DEFAULT_BUCKETS,
) -> Envelope[LogHistogram]:
    return ok(search.histogram(caller, project_id, q, from_, to, buckets))


@app.get(
    "/v1/projects/<project_id>/logs/<log_id>/context",
    tags=["logs"],
    description="The line, and up to `before`/`after` lines of the same service around it (by time, then id;"
    " within a day), oldest first. A line of another project is a 404.",
)
def log_context(
    caller: CurrentPrincipal,
    project_id: UUID,
    log_id: LogId,
    before: Annotated[int, Query(ge=0, le=search.MAX_CONTEXT)] = search.DEFAULT_CONTEXT,
    after: Annotated[int, Query(ge=0, le=search.MAX_CONTEXT)] = search.DEFAULT_CONTEXT,
) -> Envelope[LogContext]:
    return ok(search.context(caller, project_id, log_id, before, after))


lambda_handler = lambda_handler_for(app)
