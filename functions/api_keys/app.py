"""API keys of a project: create (the key is shown once), list, revoke, rotate."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body
from observai.http.dependencies import CurrentUser
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT
from observai.tenancy import api_keys
from observai.tenancy.api_key_models import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyRotate
from observai.tenancy.models import Deleted

app = create_resolver()


@app.post(
    "/v1/projects/<project_id>/api-keys",
    status_code=201,
    tags=["api-keys"],
    responses=route_responses(201, e409="No unique key could be generated: try again"),
)
def create_key(user: CurrentUser, project_id: UUID, body: Annotated[ApiKeyCreate, Body()]) -> Envelope[ApiKeyCreated]:
    return ok(api_keys.create_key(user, project_id, body))


@app.get("/v1/projects/<project_id>/api-keys", tags=["api-keys"])
def list_keys(
    user: CurrentUser,
    project_id: UUID,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[ApiKey]]:
    items, next_cursor = api_keys.list_keys(user, project_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.delete("/v1/projects/<project_id>/api-keys/<key_id>", tags=["api-keys"])
def revoke_key(user: CurrentUser, project_id: UUID, key_id: UUID) -> Envelope[Deleted]:
    return ok(api_keys.revoke_key(user, project_id, key_id))


@app.post(
    "/v1/projects/<project_id>/api-keys/<key_id>/rotate",
    status_code=201,
    tags=["api-keys"],
    responses=route_responses(201, e409="The key is revoked or expired (api_key_revoked, api_key_expired)"),
)
def rotate_key(
    user: CurrentUser, project_id: UUID, key_id: UUID, body: Annotated[ApiKeyRotate | None, Body()] = None
) -> Envelope[ApiKeyCreated]:
    return ok(api_keys.rotate_key(user, project_id, key_id, body))


lambda_handler = lambda_handler_for(app)
