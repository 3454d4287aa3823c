"""Log search of a project: the query language, a severity histogram, and the lines around a line.

Read with a user token (viewer and up) or an API key with the ``read`` scope bound to the project.
Thin: parse, one call, envelope. The query language is described in observai.logs.query_language.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.logs import search
from observai.logs.models import LogContext, LogHistogram, LogItem
from observai.pagination import DEFAULT_LIMIT

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
    datetime | None,
    Query(alias="from", description="RFC 3339 start, inclusive (default: to - 1 hour; at most 31 days before to)"),
]
To = Annotated[datetime | None, Query(alias="to", description="RFC 3339 end, exclusive (default: now)")]
LogId = Annotated[int, Path(ge=1, lt=2**63, description="The log line's id")]


@app.get("/v1/projects/<project_id>/logs", tags=["logs"])
def search_logs(
    caller: CurrentPrincipal,
    project_id: UUID,
    q: SearchQuery = None,
    from_: From = None,
    to: To = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[LogItem]]:
    """Log lines matching the query, newest first. A page may hold fewer than `limit` lines while
    `next_cursor` is set: the search stopped early to stay fast; follow the cursor until it is null."""
    items, next_cursor = search.search_logs(caller, project_id, q, from_, to, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/logs/histogram", tags=["logs"])
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
    """Counts per severity level over time buckets, for the same query as the search."""
    return ok(search.histogram(caller, project_id, q, from_, to, buckets))


@app.get("/v1/projects/<project_id>/logs/<log_id>/context", tags=["logs"])
def log_context(
    caller: CurrentPrincipal,
    project_id: UUID,
    log_id: LogId,
    before: Annotated[int, Query(ge=0, le=search.MAX_CONTEXT)] = search.DEFAULT_CONTEXT,
    after: Annotated[int, Query(ge=0, le=search.MAX_CONTEXT)] = search.DEFAULT_CONTEXT,
) -> Envelope[LogContext]:
    """The line, and the lines of the same service just before and after it (within a day)."""
    return ok(search.context(caller, project_id, log_id, before, after))


lambda_handler = lambda_handler_for(app)
