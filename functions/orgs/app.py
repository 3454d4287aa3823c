"""Organizations, projects, members, invitations, the audit log, and whoami. Thin: parse, one call, envelope."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from observai.ai import settings as ai_settings
from observai.ai.settings_models import AiSettings, AiSettingsUpdate
from observai.http.dependencies import CurrentPrincipal, CurrentUser
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT
from observai.telemetry import usage_report
from observai.telemetry.usage_report import UsageReport
from observai.tenancy import audit_trail, invitations, members, orgs, projects
from observai.tenancy.models import (
    AuditEntry,
    Deleted,
    Invitation,
    InvitationCreate,
    Member,
    MemberAdd,
    MemberUpdate,
    Org,
    OrgCreate,
    OrgUpdate,
    Project,
    ProjectCreate,
    ProjectUpdate,
    WhoAmI,
)
from observai.tenancy.whoami import whoami
from observai.timetext import DateText

app = create_resolver()

FromDay = Annotated[
    DateText | None, Query(alias="from", description="First UTC day, YYYY-MM-DD (default: to - 29 days)")
]
ToDay = Annotated[DateText | None, Query(alias="to", description="Last UTC day, YYYY-MM-DD (default: today)")]


@app.post(
    "/v1/orgs",
    status_code=201,
    tags=["organizations"],
    responses=route_responses(201, e409="The slug is taken (or no free slug was found for the name)"),
)
def create_org(user: CurrentUser, body: Annotated[OrgCreate, Body()]) -> Envelope[Org]:
    return ok(orgs.create_org(user, body))


@app.get("/v1/orgs", tags=["organizations"])
def list_orgs(user: CurrentUser, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT) -> Envelope[list[Org]]:
    items, next_cursor = orgs.list_orgs(user, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/orgs/<org_id>", tags=["organizations"])
def get_org(user: CurrentUser, org_id: UUID) -> Envelope[Org]:
    return ok(orgs.get_org(user, org_id))


@app.patch(
    "/v1/orgs/<org_id>",
    tags=["organizations"],
    responses=route_responses(200, e409="The slug is taken (or no free slug was found for the name)"),
)
def update_org(user: CurrentUser, org_id: UUID, body: Annotated[OrgUpdate, Body()]) -> Envelope[Org]:
    return ok(orgs.update_org(user, org_id, body))


@app.delete("/v1/orgs/<org_id>", tags=["organizations"])
def delete_org(user: CurrentUser, org_id: UUID) -> Envelope[Deleted]:
    return ok(orgs.delete_org(user, org_id))


@app.post(
    "/v1/orgs/<org_id>/projects",
    status_code=201,
    tags=["projects"],
    responses=route_responses(201, e409="The slug is taken (or no free slug was found for the name)"),
)
def create_project(user: CurrentUser, org_id: UUID, body: Annotated[ProjectCreate, Body()]) -> Envelope[Project]:
    return ok(projects.create_project(user, org_id, body))


@app.get("/v1/orgs/<org_id>/projects", tags=["projects"])
def list_projects(
    user: CurrentUser, org_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[Project]]:
    items, next_cursor = projects.list_projects(user, org_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>", tags=["projects"])
def get_project(user: CurrentUser, project_id: UUID) -> Envelope[Project]:
    return ok(projects.get_project(user, project_id))


@app.patch(
    "/v1/projects/<project_id>",
    tags=["projects"],
    responses=route_responses(200, e409="The slug is taken (or no free slug was found for the name)"),
)
def update_project(user: CurrentUser, project_id: UUID, body: Annotated[ProjectUpdate, Body()]) -> Envelope[Project]:
    return ok(projects.update_project(user, project_id, body))


@app.delete("/v1/projects/<project_id>", tags=["projects"])
def delete_project(user: CurrentUser, project_id: UUID) -> Envelope[Deleted]:
    return ok(projects.delete_project(user, project_id))


@app.get("/v1/orgs/<org_id>/members", tags=["members"])
def list_members(
    user: CurrentUser, org_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[Member]]:
    items, next_cursor = members.list_members(user, org_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.post(
    "/v1/orgs/<org_id>/members",
    status_code=201,
    tags=["members"],
    responses=route_responses(201, e409="The user is already a member"),
)
def add_member(user: CurrentUser, org_id: UUID, body: Annotated[MemberAdd, Body()]) -> Envelope[Member]:
    return ok(members.add_member(user, org_id, body))


@app.patch(
    "/v1/orgs/<org_id>/members/<user_id>",
    tags=["members"],
    responses=route_responses(200, e409="The organization would have no owner left (last_owner)"),
)
def update_member(
    user: CurrentUser, org_id: UUID, user_id: UUID, body: Annotated[MemberUpdate, Body()]
) -> Envelope[Member]:
    return ok(members.update_member(user, org_id, user_id, body))


@app.delete(
    "/v1/orgs/<org_id>/members/<user_id>",
    tags=["members"],
    responses=route_responses(200, e409="The organization would have no owner left (last_owner)"),
)
def remove_member(user: CurrentUser, org_id: UUID, user_id: UUID) -> Envelope[Deleted]:
    return ok(members.remove_member(user, org_id, user_id))


@app.post(
    "/v1/orgs/<org_id>/invitations",
    status_code=201,
    tags=["members"],
    responses=route_responses(
        201, e400="Supabase Auth refused the e-mail address", e409="The user is already a member"
    ),
)
def invite(user: CurrentUser, org_id: UUID, body: Annotated[InvitationCreate, Body()]) -> Envelope[Invitation]:
    return ok(invitations.invite(user, org_id, body))


@app.get("/v1/orgs/<org_id>/audit-log", tags=["audit"])
def audit_log(
    user: CurrentUser, org_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[AuditEntry]]:
    items, next_cursor = audit_trail.list_audit_log(user, org_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(
    "/v1/orgs/<org_id>/usage",
    tags=["usage"],
    responses=route_responses(200, e400="An invalid range of days (invalid_range, range_too_long)"),
)
def get_usage(
    user: CurrentUser,
    org_id: UUID,
    from_day: FromDay = None,
    to_day: ToDay = None,
) -> Envelope[UsageReport]:
    return ok(usage_report.usage_report(user, org_id, from_day, to_day))


@app.get("/v1/orgs/<org_id>/ai", tags=["ai"])
def get_ai_settings(user: CurrentUser, org_id: UUID) -> Envelope[AiSettings]:
    return ok(ai_settings.get_ai_settings(user, org_id))


@app.put("/v1/orgs/<org_id>/ai", tags=["ai"])
def update_ai_settings(
    user: CurrentUser, org_id: UUID, body: Annotated[AiSettingsUpdate, Body()]
) -> Envelope[AiSettings]:
    return ok(ai_settings.update_ai_settings(user, org_id, body))


@app.get("/v1/whoami", tags=["identity"])
def get_whoami(caller: CurrentPrincipal) -> Envelope[WhoAmI]:
    return ok(whoami(caller))


lambda_handler = lambda_handler_for(app)
