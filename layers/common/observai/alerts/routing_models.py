"""What the routing API returns besides policies and silences: notification log entries and alert groups."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from observai.alerts.policy_models import Reason


class NotifiedAlert(BaseModel):
    """An alert as the notification named it (a snapshot: its annotations and value then)."""

    model_config = ConfigDict(defer_build=True)

    instance_id: UUID
    rule_id: UUID | None = None
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    value: float | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None


class NotificationLogEntry(BaseModel):
    """One notification of a group: what would be sent (the notifications issue delivers it), when and why."""

    model_config = ConfigDict(defer_build=True)

    id: int
    group_id: UUID
    seq: int = Field(description="The group's notification number (1, 2...): unique, so none is sent twice")
    incident_id: UUID | None
    reason: Reason
    firing: list[NotifiedAlert]
    resolved: list[NotifiedAlert]
    receivers: dict[str, Any] = Field(description="The route's id, contact points and escalation policy")
    sent_at: datetime


class GroupMember(BaseModel):
    model_config = ConfigDict(defer_build=True)
    instance_id: UUID
    rule_id: UUID
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: Literal["inactive", "pending", "firing", "resolved"]
    value: float | None
    fired_at: datetime | None
    resolved_at: datetime | None
    notified_state: Literal["firing", "resolved"] | None = Field(description="What the group last announced of it")
    silenced_by: list[UUID] = Field(default_factory=list, description="The active silences muting it now")
    inhibited: bool = Field(default=False, description="A firing alert of the project inhibits it now")


class AlertGroup(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    route_id: str
    group_labels: dict[str, str]
    status: Literal["active", "resolved"]
    next_flush_at: datetime | None
    last_flush_at: datetime | None
    notifications: int = Field(description="Notifications sent so far (the last seq)")
    incident_id: UUID | None
    created_at: datetime
    alerts: list[GroupMember]
