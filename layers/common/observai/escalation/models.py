"""What the escalation policies API takes and returns.

The shape is checked here (a bad field is a 422 naming it, e.g. ``["body", "steps", 1, "targets", 0, "type"]``);
whether each target exists (a member of the organization, one of its on-call schedules, a live contact point of
the project) is checked by the service, and reported the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from observai.patch_models import refuse_null, require_a_field

MAX_POLICIES_PER_PROJECT = 50
MAX_STEPS = 20
MAX_TARGETS = 10
MAX_REPEAT = 5
MAX_WAIT_MINUTES = 1440
MAX_ACK_TIMEOUT_MINUTES = 10080

PolicyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
    Field(
        description="Unique among the project's policies; routes name it in receivers.escalation_policy",
        examples=["checkout-oncall"],
    ),
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Repeat = Annotated[
    int, Field(ge=0, le=MAX_REPEAT, description="How many more rounds from step 0 after the last step (0: once)")
]
AckTimeout = Annotated[
    int | None,
    Field(
        ge=1,
        le=MAX_ACK_TIMEOUT_MINUTES,
        description="Acknowledged but unresolved this long (minutes): the incident triggers again; null: never",
    ),
]


class Target(BaseModel):
    """Who a step pages: a member of the organization, whoever is on call in one of its schedules, or a contact
    point of the project."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    type: Literal["user", "schedule", "contact_point"]
    id: UUID


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    wait_minutes: int = Field(
        default=0,
        ge=0,
        le=MAX_WAIT_MINUTES,
        description="Minutes after this step pages before the next one does (after the last step: before the"
        " next round); 0: at once",
    )
    targets: list[Target] = Field(min_length=1, max_length=MAX_TARGETS)

    @field_validator("targets")
    @classmethod
    def _distinct(cls, targets: list[Target]) -> list[Target]:
        seen: set[tuple[str, UUID]] = set()
        for target in targets:
            if (target.type, target.id) in seen:
                raise ValueError(f"{target.type} {target.id} is listed twice")
            seen.add((target.type, target.id))
        return targets


Steps = Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS)]


def _check_loop(steps: list[Step] | None, repeat: int | None) -> None:
    # A policy that repeats with no wait anywhere would page every round at once.
    if steps is not None and repeat and not any(step.wait_minutes for step in steps):
        raise ValueError("a policy that repeats needs a wait_minutes above 0 in at least one step")


class EscalationPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: PolicyName
    description: Description = ""
    steps: Steps
    repeat: Repeat = 0
    ack_timeout_minutes: AckTimeout = None

    @model_validator(mode="after")
    def _loops(self) -> Self:
        _check_loop(self.steps, self.repeat)
        return self


class EscalationPolicyPatch(BaseModel):
    """The fields given replace theirs (``steps`` as a whole); fields left out keep their value.
    ``ack_timeout_minutes`` may be set to null (never)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: PolicyName | None = None
    description: Description | None = None
    steps: Steps | None = None
    repeat: Repeat | None = None
    ack_timeout_minutes: AckTimeout = None

    _not_null = refuse_null("name", "description", "steps", "repeat")
    _something = require_a_field()


class EscalationPolicy(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    project_id: UUID
    name: str
    description: str
    steps: list[Step]
    repeat: int
    ack_timeout_minutes: int | None
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime


class EscalationPolicyDeleted(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    deleted: Literal[True] = True
