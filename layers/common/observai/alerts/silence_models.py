"""Silences as the API takes and returns them.

A silence mutes the alerts its matchers all match between ``starts_at`` and ``ends_at`` (or until it is expired by
hand, or, with ``expire_when_resolved``, once every alert it silenced has resolved). At least one matcher must not
match the empty string: a silence of only ``team=~".*"`` would mute every alert of the project.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from observai.alerts.matchers import MAX_MATCHERS, Matcher, MatcherIn, matches_empty

SilenceStatus = Literal["pending", "active", "expired"]
Comment = Annotated[str, StringConstraints(max_length=2000)]
Matchers = Annotated[list[MatcherIn], Field(min_length=1, max_length=MAX_MATCHERS)]


def _not_everything(matchers: list[Matcher]) -> list[Matcher]:
    if all(matches_empty(m) for m in matchers):
        raise ValueError(
            "at least one matcher must not match the empty string (these would silence every alert of the project)"
        )
    return matchers


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class SilenceIn(_In):
    matchers: Matchers
    starts_at: AwareDatetime | None = Field(default=None, description="Default: now")
    ends_at: AwareDatetime
    comment: Comment = ""
    expire_when_resolved: bool = Field(
        default=False, description="Expire the silence once every alert it silenced has resolved"
    )

    _check_matchers = field_validator("matchers")(_not_everything)


class SilencePatch(_In):
    """Extend or shorten, edit the comment, or change the matchers (also of an active silence: the change applies
    from the next flush of each group). starts_at only while the silence is pending."""

    matchers: Matchers | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    comment: Comment | None = None
    expire_when_resolved: bool | None = None

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, value: list[Matcher] | None) -> list[Matcher] | None:
        return None if value is None else _not_everything(value)


class Silence(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    project_id: UUID
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: UUID | None
    created_by_key_id: UUID | None
    expire_when_resolved: bool
    expired_at: datetime | None
    status: SilenceStatus
    created_at: datetime
    updated_at: datetime


def status_at(row: dict, now: datetime) -> SilenceStatus:
    if row["expired_at"] is not None or row["ends_at"] <= now:
        return "expired"
    if row["starts_at"] > now:
        return "pending"
    return "active"
