"""Exports of a project's logs or spans to object storage (gzip NDJSON): start one, read one, list them.

Start: people with the member role and up, or an API key with the ``read`` scope bound to the project.
Read and list: viewers and up, or a ``read`` key. The work itself is done by ExportWorkerFunction, from the
export queue. Thin: parse, one call, envelope.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body
from observai.exports import service
from observai.exports.models import ExportInfo, ExportRequest
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT

app = create_resolver()


@app.post(
    "/v1/projects/<project_id>/exports",
    status_code=202,
    tags=["exports"],
    responses=route_responses(202, e400="A malformed logs query (query_syntax_error, with details.position)"),
)
def create_export(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[ExportRequest, Body()]
) -> Envelope[ExportInfo]:
    """Start an export of logs or spans in [from, to) (at most 31 days) as one gzip NDJSON file: one JSON object
    per line, loadable as is by BigQuery and Athena. Returns at once (202, status queued); poll
    GET .../exports/{export_id} for its status and, once succeeded, its download link. A project runs a few
    exports at a time (429 past that)."""
    return ok(service.create_export(caller, project_id, body))


@app.get("/v1/projects/<project_id>/exports", tags=["exports"])
def list_exports(
    caller: CurrentPrincipal, project_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[ExportInfo]]:
    """The project's exports, newest first (without download links: get one export for its link)."""
    items, next_cursor = service.list_exports(caller, project_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/exports/<export_id>", tags=["exports"])
def get_export(caller: CurrentPrincipal, project_id: UUID, export_id: UUID) -> Envelope[ExportInfo]:
    """Status, row count and size; once succeeded, a pre-signed download URL valid for an hour (at most until
    the file expires)."""
    return ok(service.get_export(caller, project_id, export_id))


lambda_handler = lambda_handler_for(app)
