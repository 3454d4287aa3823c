"""On-call schedules of an organization: layers, overrides, who is on call, the final timeline, my next shifts.

Admins and up write (audited); every member reads (viewers too). A person's token only: API keys get 403. Thin:
parse, one call, envelope. See docs/oncall.md.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from observai.http.dependencies import CurrentUser
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.oncall import service
from observai.oncall.models import (
    Instant,
    MyOnCall,
    Schedule,
    ScheduleDeleted,
    ScheduleIn,
    ScheduleOnCall,
    ScheduleOverride,
    ScheduleOverrideIn,
    SchedulePatch,
    ScheduleShifts,
)
from observai.pagination import DEFAULT_LIMIT

app = create_resolver()

From = Annotated[Instant | None, Query(alias="from", description="RFC 3339 start (inclusive)")]
To = Annotated[Instant | None, Query(alias="to", description="RFC 3339 end (exclusive)")]
At = Annotated[Instant | None, Query(description="RFC 3339 instant (default: now)")]
Days = Annotated[int, Query(ge=1, le=90, description="How many days ahead, 1 to 90")]
NOT_A_MEMBER = "a user named is not a member of the organization (not_a_member, at the field)"


@app.post(
    "/v1/orgs/<org_id>/schedules",
    status_code=201,
    tags=["oncall"],
    responses=route_responses(
        201, e409="the organization has 100 schedules already (schedule_limit_reached)", e422=NOT_A_MEMBER
    ),
)
def create_schedule(caller: CurrentUser, org_id: UUID, body: Annotated[ScheduleIn, Body()]) -> Envelope[Schedule]:
    """Create an on-call schedule (admins and up). Layers lowest first: a higher layer wins where it has someone."""
    return ok(service.create_schedule(caller, org_id, body))


@app.get("/v1/orgs/<org_id>/schedules", tags=["oncall"])
def list_schedules(
    caller: CurrentUser, org_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[Schedule]]:
    """The organization's schedules, newest first (every member)."""
    items, next_cursor = service.list_schedules(caller, org_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/orgs/<org_id>/schedules/<schedule_id>", tags=["oncall"])
def get_schedule(caller: CurrentUser, org_id: UUID, schedule_id: UUID) -> Envelope[Schedule]:
    return ok(service.get_schedule(caller, org_id, schedule_id))


@app.patch(
    "/v1/orgs/<org_id>/schedules/<schedule_id>",
    tags=["oncall"],
    responses=route_responses(200, e422=NOT_A_MEMBER),
)
def patch_schedule(
    caller: CurrentUser, org_id: UUID, schedule_id: UUID, body: Annotated[SchedulePatch, Body()]
) -> Envelope[Schedule]:
    """Change the name, description, time zone or layers (given as a whole); fields left out keep their value."""
    return ok(service.update_schedule(caller, org_id, schedule_id, body))


@app.delete("/v1/orgs/<org_id>/schedules/<schedule_id>", tags=["oncall"])
def delete_schedule(caller: CurrentUser, org_id: UUID, schedule_id: UUID) -> Envelope[ScheduleDeleted]:
    """Delete the schedule: escalation steps naming it find nobody on call from now on."""
    return ok(ScheduleDeleted(id=service.delete_schedule(caller, org_id, schedule_id)))


@app.post(
    "/v1/orgs/<org_id>/schedules/<schedule_id>/overrides",
    status_code=201,
    tags=["oncall"],
    responses=route_responses(201, e409="1,000 overrides not yet over (override_limit_reached)", e422=NOT_A_MEMBER),
)
def create_override(
    caller: CurrentUser, org_id: UUID, schedule_id: UUID, body: Annotated[ScheduleOverrideIn, Body()]
) -> Envelope[ScheduleOverride]:
    """Put a member on call from start to end (at most 90 days), over every layer (admins and up)."""
    return ok(service.create_override(caller, org_id, schedule_id, body))


@app.get("/v1/orgs/<org_id>/schedules/<schedule_id>/overrides", tags=["oncall"])
def list_overrides(
    caller: CurrentUser,
    org_id: UUID,
    schedule_id: UUID,
    from_: From = None,
    to: To = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[ScheduleOverride]]:
    """The schedule's overrides reaching into [from, to) (either side open when left out), by start."""
    items, next_cursor = service.list_overrides(caller, org_id, schedule_id, from_, to, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.delete("/v1/orgs/<org_id>/schedules/<schedule_id>/overrides/<override_id>", tags=["oncall"])
def delete_override(
    caller: CurrentUser, org_id: UUID, schedule_id: UUID, override_id: UUID
) -> Envelope[ScheduleDeleted]:
    return ok(ScheduleDeleted(id=service.delete_override(caller, org_id, schedule_id, override_id)))


@app.get("/v1/orgs/<org_id>/schedules/<schedule_id>/oncall", tags=["oncall"])
def on_call(caller: CurrentUser, org_id: UUID, schedule_id: UUID, at: At = None) -> Envelope[ScheduleOnCall]:
    """Who is on call at `at` (default now): the person, their e-mail address, and their shift."""
    return ok(service.on_call_at(caller, org_id, schedule_id, at))


@app.get(
    "/v1/orgs/<org_id>/schedules/<schedule_id>/shifts",
    tags=["oncall"],
    responses=route_responses(200, e422="`to` not after `from`, or more than 90 days after it"),
)
def shifts(
    caller: CurrentUser, org_id: UUID, schedule_id: UUID, from_: From = None, to: To = None
) -> Envelope[ScheduleShifts]:
    """The final timeline over [from, to) (default: the next 7 days): layers, restrictions and overrides merged, at
    most 90 days a request. A gap means nobody is on call."""
    return ok(service.shifts(caller, org_id, schedule_id, from_, to))


@app.get("/v1/me/oncall", tags=["oncall"])
def my_oncall(caller: CurrentUser, days: Days = service.MY_ONCALL_DEFAULT_DAYS) -> Envelope[MyOnCall]:
    """My shifts over the next `days` days (default 30) on every schedule of my organizations, and whether I am on
    call now (a person's token: API keys get 403)."""
    return ok(service.my_oncall(caller, days))


lambda_handler = lambda_handler_for(app)
