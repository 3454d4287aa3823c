"""Escalation policies of a project: create, list, read, change, delete (soft).

Admins and up write (or an API key of the project with the ``admin`` scope), every write audited; viewers and up
read (or a ``read`` key). Runs are the escalation engine's (EscalateFunction). Thin: parse, one call, envelope.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body
from observai.escalation import policies
from observai.escalation.models import (
    EscalationPolicy,
    EscalationPolicyDeleted,
    EscalationPolicyIn,
    EscalationPolicyPatch,
)
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT

app = create_resolver()

BAD_TARGET = "a target that is not a member, an on-call schedule of the organization or a contact point of the project"
NAME_TAKEN = "another live policy of the project has this name (escalation_policy_name_taken)"


@app.post(
    "/v1/projects/<project_id>/escalation-policies",
    status_code=201,
    tags=["escalation"],
    responses=route_responses(
        201, e409=f"{NAME_TAKEN}, or the project has 50 policies (escalation_policy_limit_reached)", e422=BAD_TARGET
    ),
)
def create_policy(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[EscalationPolicyIn, Body()]
) -> Envelope[EscalationPolicy]:
    """Create an escalation policy (admins and up, or an admin key): ordered steps paging users, on-call
    schedules and contact points, repeated up to 5 times, with an optional ack timeout. See docs/escalation.md."""
    return ok(policies.create_policy(caller, project_id, body))


@app.get("/v1/projects/<project_id>/escalation-policies", tags=["escalation"])
def list_policies(
    caller: CurrentPrincipal, project_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[EscalationPolicy]]:
    """The project's escalation policies, newest first."""
    items, next_cursor = policies.list_policies(caller, project_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/escalation-policies/<policy_id>", tags=["escalation"])
def get_policy(caller: CurrentPrincipal, project_id: UUID, policy_id: UUID) -> Envelope[EscalationPolicy]:
    return ok(policies.get_policy(caller, project_id, policy_id))


@app.patch(
    "/v1/projects/<project_id>/escalation-policies/<policy_id>",
    tags=["escalation"],
    responses=route_responses(200, e409=NAME_TAKEN, e422=BAD_TARGET),
)
def patch_policy(
    caller: CurrentPrincipal, project_id: UUID, policy_id: UUID, body: Annotated[EscalationPolicyPatch, Body()]
) -> Envelope[EscalationPolicy]:
    """Change the name, description, steps (replaced as a whole), repeat or ack timeout. Escalations in progress
    keep the policy they started with."""
    return ok(policies.update_policy(caller, project_id, policy_id, body))


@app.delete("/v1/projects/<project_id>/escalation-policies/<policy_id>", tags=["escalation"])
def delete_policy(caller: CurrentPrincipal, project_id: UUID, policy_id: UUID) -> Envelope[EscalationPolicyDeleted]:
    """Delete the policy: routes naming it page nobody from now on; escalations in progress go on unchanged."""
    return ok(policies.delete_policy(caller, project_id, policy_id))


lambda_handler = lambda_handler_for(app)
