"""The notification policy of a project, as the API takes and returns it (Alertmanager's routing tree, as JSON).

The field-level rules are here (a bad field is a 422 naming it: ``["body", "route", "routes", 1, "matchers", 0,
"value"]``); the rules over the whole document (depth, size, route names, time interval names referenced) are
``observai.alerts.policy.check_document``, which reports the same shape of error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from observai.alerts.durations import DurationS
from observai.alerts.matchers import MAX_MATCHERS, LabelName, MatcherIn
from observai.alerts.time_intervals import IntervalName, NamedTimeInterval

ALL_LABELS = "..."
MAX_DEPTH = 10
MAX_ROUTES = 200
MAX_GROUP_BY = 20
DEFAULT_GROUP_BY = ("alertname",)
DEFAULT_GROUP_WAIT_S = 30
DEFAULT_GROUP_INTERVAL_S = 300
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# Starts with a letter: an unnamed route's id is its path ("0.1"), which a name must never equal.
RouteName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9_.:-]*$")]
GroupWait = Annotated[DurationS, Field(ge=0, le=86400, description="Wait before a new group's first notification")]
GroupInterval = Annotated[DurationS, Field(ge=1, le=86400, description="Wait before notifying a group's changes")]
RepeatInterval = Annotated[
    DurationS, Field(ge=60, le=30 * 86400, description="Re-send a notification while its alerts still fire")
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class Receivers(_In):
    """What a route's notifications go to (the notifications issue delivers them; until then they are recorded)."""

    contact_points: list[Name] = Field(default_factory=list, max_length=20)
    escalation_policy: Name | None = None


class Route(_In):
    """A node of the tree. Unset fields (null) are inherited from the parent route; the root's defaults apply at
    the top. ``continue``: after this route matches, keep looking at its next siblings."""

    name: RouteName | None = Field(default=None, description="Optional stable id of the route (else its path, '0.1')")
    receivers: Receivers | None = None
    group_by: list[LabelName] | None = Field(
        default=None, max_length=MAX_GROUP_BY, description='Labels that split alerts into groups; ["..."]: all'
    )
    group_wait: GroupWait | None = None
    group_interval: GroupInterval | None = None
    repeat_interval: RepeatInterval | None = None
    matchers: list[MatcherIn] = Field(default_factory=list, max_length=MAX_MATCHERS)
    continue_: bool = Field(default=False, alias="continue")
    mute_time_intervals: list[IntervalName] = Field(default_factory=list, max_length=20)
    active_time_intervals: list[IntervalName] = Field(default_factory=list, max_length=20)
    routes: list[Route] = Field(default_factory=list, max_length=MAX_ROUTES)

    @field_validator("group_by")
    @classmethod
    def _all_alone(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if ALL_LABELS in value and len(value) > 1:
                raise ValueError('"..." (group by every label) stands alone')
            if len(set(value)) != len(value):
                raise ValueError("a label is listed twice")
        return value


class InhibitRule(_In):
    """While an alert matching ``source_matchers`` fires, alerts matching ``target_matchers`` with the same values
    of the ``equal`` labels (absent on both counts as equal) are not notified."""

    source_matchers: list[MatcherIn] = Field(min_length=1, max_length=MAX_MATCHERS)
    target_matchers: list[MatcherIn] = Field(min_length=1, max_length=MAX_MATCHERS)
    equal: list[LabelName] = Field(default_factory=list, max_length=MAX_GROUP_BY)


def default_route() -> Route:
    return Route(
        receivers=Receivers(),
        group_by=list(DEFAULT_GROUP_BY),
        group_wait=DEFAULT_GROUP_WAIT_S,
        group_interval=DEFAULT_GROUP_INTERVAL_S,
        repeat_interval=DEFAULT_REPEAT_INTERVAL_S,
    )


class PolicyDocument(_In):
    route: Route = Field(default_factory=default_route)
    mute_time_intervals: list[NamedTimeInterval] = Field(default_factory=list, max_length=50)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list, max_length=100)
    send_resolved: bool = Field(default=True, description="Notify when a group's alerts resolve")
    notify_resolved_after_silence: bool = Field(
        default=True,
        description="An alert that resolved while silenced is announced resolved once the silence ends",
    )


class NotificationPolicy(BaseModel):
    model_config = ConfigDict(defer_build=True)
    project_id: UUID
    version: int = Field(description="Incremented by every PUT; 0 while the project has the default policy")
    is_default: bool
    updated_at: datetime | None
    updated_by: UUID | None
    policy: PolicyDocument


# Durations are returned as whole seconds; a route's unset fields stay null (inherited).
Reason = Literal["first", "changed", "repeat", "resolved"]
