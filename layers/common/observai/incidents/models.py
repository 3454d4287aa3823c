"""What the incidents API takes and returns."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from observai.alerts.durations import parse_duration
from observai.timetext import AwareDateTimeText

IncidentStatus = Literal["triggered", "acknowledged", "resolved"]
Severity = Literal["critical", "error", "warning", "info"]
ActorType = Literal["user", "api_key", "system", "link"]  # link: a signed action link that names nobody

MAX_TEXT = 10_000  # a comment, a resolution note
MAX_SNOOZE_S = 7 * 86400  # a week: past that, resolve it or fix the alert
DURATION_TEXT = r"^([0-9]{1,7}[smhdw]){1,5}$"


def _strict_duration(value: Any) -> Any:
    """A duration as the document spells it (``90m``, ``1h30m``, or whole seconds as a number); then parsed."""
    if isinstance(value, str) and not re.fullmatch(DURATION_TEXT, value):
        raise ValueError("a duration is text such as 30m, 1h, 1h30m, 1d, or whole seconds as a number")
    return parse_duration(value)


SnoozeDuration = Annotated[
    int,
    BeforeValidator(_strict_duration),
    Field(ge=60, le=MAX_SNOOZE_S),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 60, "maximum": MAX_SNOOZE_S},
                {"type": "string", "pattern": DURATION_TEXT},
            ],
            "description": "30m, 1h, 4h, 1d... or whole seconds (60 s to 7 days)",
        }
    ),
]


class Incident(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    project_id: UUID
    number: int = Field(description="Per project, for people (#42)")
    title: str
    status: IncidentStatus
    severity: Severity
    service: str | None = Field(default=None, description="The service of its alerts, when they share one")
    labels: dict[str, Any] = Field(description="The notification group's labels")
    group_id: UUID | None = Field(default=None, description="The notification group that opened it")
    auto_resolve: bool = Field(description="Resolves by itself when all its alerts have resolved")
    assignee_id: UUID | None = None
    snoozed_until: datetime | None = Field(default=None, description="Acknowledged until then, then triggered again")
    triggered_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: UUID | None = Field(default=None, description="The user (or API key) who acknowledged it")
    resolved_at: datetime | None = None
    resolved_by: UUID | None = Field(default=None, description="Who resolved it by hand; null when it resolved itself")
    resolution_note: str | None = None
    created_at: datetime
    updated_at: datetime


class IncidentAlert(BaseModel):
    """One alert of the incident, with the rule as it was when the alert fired."""

    model_config = ConfigDict(defer_build=True)

    instance_id: UUID
    rule_id: UUID
    rule_version: int
    fingerprint: str
    labels: dict[str, Any]
    first_fired_at: datetime
    resolved_at: datetime | None = Field(default=None, description="Null while the alert fires")
    state: str | None = Field(default=None, description="The alert instance's current state (null once deleted)")
    value: float | None = Field(default=None, description="The alert instance's last value")
    annotations: dict[str, Any] = Field(default_factory=dict, description="The alert instance's rendered annotations")
    rule: dict[str, Any] | None = Field(
        default=None, description="The rule's definition at rule_version (alert_rule_versions), when recorded"
    )


class IncidentDetail(Incident):
    alerts: list[IncidentAlert]


class TimelineEvent(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: int
    at: datetime
    kind: str = Field(
        description="triggered, alert_firing, alert_resolved, notified, acknowledged, unacknowledged, snoozed,"
        " unsnoozed, assigned, comment, auto_resolve_changed, resolution_note_changed, resolved (and kinds other"
        " parts add)"
    )
    actor_type: ActorType
    actor_id: UUID | None = Field(default=None, description="The user or API key; null for the system and a link")
    details: dict[str, Any]


class Comment(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: int = Field(description="The comment's timeline event id")
    at: datetime
    actor_type: ActorType
    actor_id: UUID | None = None
    body: str


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    body: str = Field(min_length=1, max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _not_blank(self) -> Self:
        if not self.body.strip():
            raise ValueError("body is blank")
        return self


class SnoozeIn(BaseModel):
    """Exactly one of ``until`` and ``duration``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    until: AwareDateTimeText | None = Field(default=None, description="RFC 3339; in the future, at most 7 days ahead")
    duration: SnoozeDuration | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.until is None) == (self.duration is None):
            raise ValueError("give exactly one of until and duration")
        return self


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    note: str | None = Field(
        default=None, max_length=MAX_TEXT, description="What was wrong and what fixed it (kept with the incident)"
    )


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    user_id: UUID | None = Field(description="A member of the organization; null to unassign")


class IncidentPatch(BaseModel):
    """At least one field; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    auto_resolve: bool | None = Field(
        default=None, strict=True, description="Resolve by itself when all its alerts have resolved (open incidents)"
    )
    resolution_note: str | None = Field(
        default=None,
        max_length=MAX_TEXT,
        description="What was wrong and what fixed it; also on a resolved incident (the post-mortem goes on);"
        " null or blank clears it",
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give auto_resolve or resolution_note")
        if "auto_resolve" in self.model_fields_set and self.auto_resolve is None:
            raise ValueError("auto_resolve is true or false")
        return self


class IncidentFilters(BaseModel):
    """The list's filters, parsed (every one optional; all given must match)."""

    model_config = ConfigDict(defer_build=True)

    statuses: list[str] = Field(default_factory=list)
    severities: list[str] = Field(default_factory=list)
    service: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    assignee_id: UUID | None = None
    unassigned: bool = False
