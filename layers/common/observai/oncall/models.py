"""On-call schedules as the API takes and returns them (validated where they enter).

A schedule is an ordered list of layers, lowest first: where a higher layer has someone on call it wins; where it
has nobody (outside its restrictions, before its start) the layers below show through. Overrides (one person for a
time) win over every layer. See observai.oncall.timeline for the computation and docs/oncall.md.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from functools import lru_cache
from typing import Annotated, Literal, Self
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from observai.patch_models import refuse_null, require_a_field
from observai.text import unstorable_reason
from observai.timetext import AwareDateTimeText

MAX_LAYERS = 10
MAX_USERS_PER_LAYER = 50
MAX_RESTRICTIONS = 20
MAX_ROTATION_LENGTH = 365
MAX_OVERRIDE_DAYS = 90
MAX_SCHEDULES_PER_ORG = 100
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIN_YEAR, MAX_YEAR = 1970, 2200
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (cached: zoneinfo reads the tz database once per name)."""
    return ZoneInfo(name)


def _storable(value: str) -> str:
    reason = unstorable_reason(value)
    if reason:
        raise ValueError(reason)
    return value


def _iana(value: str) -> str:
    if not value or len(value) > 64 or value.startswith(("/", ".")) or ".." in value or "\x00" in value:
        raise ValueError("must be an IANA time zone such as Europe/Berlin or UTC")
    try:
        zone(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value!r}; an IANA name such as Europe/Berlin or UTC") from None
    return value


def _hhmm(value: str) -> str:
    if not _HHMM.fullmatch(value):
        raise ValueError("must be a local time as HH:MM (00:00 to 23:59)")
    return value


def _sane_year(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


TimeZoneName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_iana),
    Field(description="An IANA time zone", examples=["Europe/Berlin"]),
]
Instant = Annotated[AwareDateTimeText, AfterValidator(_sane_year)]
LocalTime = Annotated[str, AfterValidator(_hhmm), Field(description="Local time HH:MM", examples=["09:00"])]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_storable)]
LayerName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_storable)
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000), AfterValidator(_storable)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class LayerRotation(_In):
    unit: Literal["hours", "days", "weeks"] = Field(
        description="hours: real elapsed hours; days: calendar days (hand-off at the local hand-off time, also"
        " across daylight-saving changes); weeks: 7 calendar days"
    )
    length: int = Field(ge=1, le=MAX_ROTATION_LENGTH, description="How many units each person is on call")


class LayerTimeOfDay(_In):
    """Every day from ``start`` to ``end`` local time (wraps past midnight when end ≤ start; 00:00–00:00 is the
    whole day)."""

    type: Literal["time_of_day"]
    start: LocalTime
    end: LocalTime


class LayerWeekly(_In):
    """On the given days, from ``start`` on that day to ``end`` (on the next day when end ≤ start)."""

    type: Literal["weekly"]
    days: list[Weekday] = Field(min_length=1, max_length=7)
    start: LocalTime
    end: LocalTime

    @field_validator("days")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return sorted(set(value), key=WEEKDAYS.index)


Restriction = Annotated[LayerTimeOfDay | LayerWeekly, Field(discriminator="type")]


class ScheduleLayer(_In):
    name: LayerName
    users: list[UUID] = Field(
        min_length=1,
        max_length=MAX_USERS_PER_LAYER,
        description="Members of the organization in rotation order (a person may appear more than once)",
    )
    rotation: LayerRotation
    start: Instant = Field(
        description="RFC 3339: when the layer starts (the first person in `users` is on call from then) and the"
        " anchor of its rotation; nobody is on call in this layer before it"
    )
    handoff_time: LocalTime | None = Field(
        default=None,
        description="For days and weeks: the local time of each hand-off (default: the local time of `start`);"
        " ignored for hours",
    )
    time_zone: TimeZoneName | None = Field(default=None, description="Default: the schedule's time zone")
    restrictions: list[Restriction] = Field(
        default_factory=list,
        max_length=MAX_RESTRICTIONS,
        description="When given, the layer is on only inside these windows (outside them it has nobody)",
    )

    @model_validator(mode="after")
    def _handoff(self) -> Self:
        if self.rotation.unit == "hours":
            self.handoff_time = None
        return self


class ScheduleIn(_In):
    name: Name
    description: Description = ""
    time_zone: TimeZoneName
    layers: list[ScheduleLayer] = Field(
        min_length=1, max_length=MAX_LAYERS, description="Lowest first: a higher layer wins where it has someone"
    )


class SchedulePatch(_In):
    """The fields given replace theirs (``layers`` as a whole)."""

    name: Name | None = None
    description: Description | None = None
    time_zone: TimeZoneName | None = None
    layers: list[ScheduleLayer] | None = Field(default=None, min_length=1, max_length=MAX_LAYERS)

    _not_null = refuse_null("name", "description", "time_zone", "layers")
    _something = require_a_field()


class Schedule(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    org_id: UUID
    name: str
    description: str
    time_zone: str
    layers: list[ScheduleLayer]
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime


class ScheduleOverrideIn(_In):
    user_id: UUID = Field(description="A member of the organization")
    start: Instant = Field(description="RFC 3339")
    end: Instant = Field(description=f"RFC 3339, after start, at most {MAX_OVERRIDE_DAYS} days after it")

    @model_validator(mode="after")
    def _span(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if (self.end - self.start).total_seconds() > MAX_OVERRIDE_DAYS * 86400:
            raise ValueError(f"an override lasts at most {MAX_OVERRIDE_DAYS} days")
        return self


class ScheduleOverride(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    schedule_id: UUID
    user_id: UUID
    start: datetime
    end: datetime
    created_by: UUID | None
    created_at: datetime


class ScheduleShift(BaseModel):
    model_config = ConfigDict(defer_build=True)
    user_id: UUID
    start: datetime
    end: datetime
    source: Literal["layer", "override"]
    layer: str | None = Field(description="The layer's name (null for an override)")
    layer_index: int | None = Field(description="The layer's position, 0 the lowest (null for an override)")


class ScheduleShifts(BaseModel):
    model_config = ConfigDict(defer_build=True)
    schedule_id: UUID
    start: datetime
    end: datetime
    shifts: list[ScheduleShift]


class ScheduleOnCall(BaseModel):
    model_config = ConfigDict(defer_build=True)
    schedule_id: UUID
    at: datetime
    on_call: bool
    user_id: UUID | None
    email: str | None = None
    shift_start: datetime | None = Field(default=None, description="Within ±35 days of `at`")
    shift_end: datetime | None = Field(default=None, description="Within ±35 days of `at`")
    source: Literal["layer", "override"] | None = None
    layer: str | None = None


class MyOnCallShift(ScheduleShift):
    org_id: UUID
    schedule_id: UUID
    schedule_name: str


class MyOnCall(BaseModel):
    model_config = ConfigDict(defer_build=True)
    on_call_now: bool
    start: datetime
    end: datetime
    shifts: list[MyOnCallShift]


class ScheduleDeleted(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    deleted: Literal[True] = True
