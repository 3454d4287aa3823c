"""Metrics of a project: the catalogue, custom definitions, series and cardinality, and the query API.

Read with a user token (viewer and up) or an API key with the ``read`` scope bound to the project;
definitions are written by people (member and up). Thin: parse, one call, envelope.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from observai.http.dependencies import CurrentPrincipal, CurrentUser
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.metrics import catalogue, query
from observai.metrics.catalogue import DEFAULT_TOP_KEYS, MAX_TOP_KEYS
from observai.metrics.query_models import (
    MAX_NAME_LENGTH,
    Cardinality,
    MetricDefinition,
    MetricDefinitionDeleted,
    MetricDefinitionPatch,
    MetricInfo,
    QueryRequest,
    QueryResponse,
    SeriesInfo,
)
from observai.pagination import DEFAULT_LIMIT

app = create_resolver()

MetricName = Annotated[str, Path(min_length=1, max_length=MAX_NAME_LENGTH, description="The metric name")]
MATCH_HELP = (
    " Filter by attribute equality with any number of `match[<attribute>]=<value>` query parameters"
    " (a value like `200` or `true` also matches the JSON number or boolean)."
)


@app.get("/v1/projects/<project_id>/metrics", tags=["metrics"])
def list_metrics(
    caller: CurrentPrincipal, project_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[MetricInfo]]:
    """The catalogue: every metric name with its type, unit, description and series count."""
    items, next_cursor = catalogue.list_metrics(caller, project_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.patch("/v1/projects/<project_id>/metrics/<name>/definition", tags=["metrics"])
def patch_definition(
    user: CurrentUser, project_id: UUID, name: MetricName, body: Annotated[MetricDefinitionPatch, Body()]
) -> Envelope[MetricDefinition]:
    """Create or update the metric's custom definition (members and up): fields left out keep their value,
    null clears one. The catalogue shows a definition's fields over what ingestion saw."""
    return ok(catalogue.patch_definition(user, project_id, name, body))


@app.delete("/v1/projects/<project_id>/metrics/<name>/definition", tags=["metrics"])
def delete_definition(user: CurrentUser, project_id: UUID, name: MetricName) -> Envelope[MetricDefinitionDeleted]:
    return ok(catalogue.delete_definition(user, project_id, name))


@app.get(
    "/v1/projects/<project_id>/metrics/<name>/series",
    tags=["metrics"],
    description=MATCH_HELP.strip(),
    responses=route_responses(200, e400="An invalid metric name or match[<attribute>] filter"),
)
def list_series(
    caller: CurrentPrincipal, project_id: UUID, name: MetricName, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[SeriesInfo]]:
    params = app.current_event.query_string_parameters
    items, next_cursor = catalogue.list_series(caller, project_id, name, params, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(
    "/v1/projects/<project_id>/metrics/<name>/cardinality",
    tags=["metrics"],
    responses=route_responses(200, e400="An invalid metric name or match[<attribute>] filter"),
    description="Distinct values per attribute key, keys with the most values first." + MATCH_HELP,
)
def get_cardinality(
    caller: CurrentPrincipal,
    project_id: UUID,
    name: MetricName,
    top: Annotated[int, Query(ge=1, le=MAX_TOP_KEYS)] = DEFAULT_TOP_KEYS,
) -> Envelope[Cardinality]:
    params = app.current_event.query_string_parameters
    return ok(catalogue.cardinality(caller, project_id, name, params, top))


@app.post(
    "/v1/projects/<project_id>/metrics/query",
    tags=["metrics"],
    responses=route_responses(200, e400="A query the database cannot run (invalid_regex)"),
)
def run_query(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[QueryRequest, Body()]
) -> Envelope[QueryResponse]:
    """Up to 10 queries: each reads raw points or the coarsest rollup fitting its step, and returns series of
    [unix seconds, value] per group_by combination."""
    return ok(query.run_queries(caller, project_id, body))


lambda_handler = lambda_handler_for(app)
