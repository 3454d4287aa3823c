"""Mute and active time intervals, as Alertmanager writes them::

    {"name": "weekends", "time_intervals": [
        {"weekdays": ["saturday:sunday"], "location": "Europe/Berlin"},
        {"times": [{"start_time": "22:00", "end_time": "24:00"}], "days_of_month": ["-1"], "months": ["1:3"]}]}

An interval holds at an instant when every field it sets holds there (an unset field always holds); a named
interval holds when any of its intervals does. ``times`` are [start, end) in minutes of the day; weekdays,
days of the month (negative counts back from the month's end), months and years are inclusive ranges
``a:b`` or single values; everything is read in ``location`` (an IANA zone, UTC by default).
"""

from __future__ import annotations

import calendar
from datetime import datetime
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
MAX_RANGES = 31


def _hhmm(text: str, *, end: bool) -> int:
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"{text!r} is not a time HH:MM")
    hours, minutes = int(parts[0]), int(parts[1])
    total = hours * 60 + minutes
    if minutes > 59 or total > 24 * 60 or (total == 24 * 60 and not end):
        raise ValueError(f"{text!r} is out of range (00:00 to 24:00)")
    return total


def _number(text: str, names: tuple[str, ...], low: int, high: int, what: str) -> int:
    lowered = text.strip().lower()
    if lowered in names:
        return names.index(lowered) + low
    try:
        value = int(lowered)
    except ValueError:
        raise ValueError(f"{text!r} is not a {what}") from None
    if not low <= value <= high:
        raise ValueError(f"{text!r} is out of range for a {what} ({low} to {high})")
    return value


def _range(text: str, names: tuple[str, ...], low: int, high: int, what: str) -> tuple[int, int]:
    start, sep, stop = text.partition(":")
    if sep and not stop:
        raise ValueError(f"{text!r}: a range is start:end")
    first = _number(start, names, low, high, what)
    last = _number(stop, names, low, high, what) if sep else first
    return first, last


def _weekday_range(text: str) -> str:
    first, last = _range(text, WEEKDAYS, 0, 6, "weekday")
    if last < first:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return text


def _month_range(text: str) -> str:
    first, last = _range(text, MONTHS, 1, 12, "month")
    if last < first:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return text


def _year_range(text: str) -> str:
    first, last = _range(text, (), 1970, 9999, "year")
    if last < first:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return text


def _day_range(text: str) -> str:
    first, last = _range(text, (), -31, 31, "day of the month")
    if first == 0 or last == 0:
        raise ValueError(f"{text!r}: days of the month are 1 to 31, or -1 (the last) to -31")
    if (first > 0) == (last > 0) and last < first:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return text


def _location(text: str) -> str:
    _zone(text)
    return text


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known time zone (an IANA name such as Europe/Berlin)") from None


Short = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    start_time: Short
    end_time: Short

    def minutes(self) -> tuple[int, int]:
        return _hhmm(self.start_time, end=False), _hhmm(self.end_time, end=True)

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        start, end = self.minutes()
        if end <= start:
            raise ValueError("end_time must be after start_time")
        return self


class TimeInterval(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    times: list[TimeRange] = Field(default_factory=list, max_length=MAX_RANGES)
    weekdays: list[Annotated[Short, AfterValidator(_weekday_range)]] = Field(default_factory=list, max_length=7)
    days_of_month: list[Annotated[Short, AfterValidator(_day_range)]] = Field(
        default_factory=list, max_length=MAX_RANGES
    )
    months: list[Annotated[Short, AfterValidator(_month_range)]] = Field(default_factory=list, max_length=12)
    years: list[Annotated[Short, AfterValidator(_year_range)]] = Field(default_factory=list, max_length=MAX_RANGES)
    location: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_location)] = "UTC"

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(_zone(self.location))
        if self.times:
            minute = local.hour * 60 + local.minute
            if not any(start <= minute < end for start, end in (t.minutes() for t in self.times)):
                return False
        if self.weekdays and not _in_any(local.weekday(), self.weekdays, WEEKDAYS, 0, 6, "weekday"):
            return False
        if self.months and not _in_any(local.month, self.months, MONTHS, 1, 12, "month"):
            return False
        if self.years and not _in_any(local.year, self.years, (), 1970, 9999, "year"):
            return False
        return not self.days_of_month or self._day_holds(local)

    def _day_holds(self, local: datetime) -> bool:
        month_days = calendar.monthrange(local.year, local.month)[1]
        for text in self.days_of_month:
            first, last = _range(text, (), -31, 31, "day of the month")
            # Negative days count back from the month's end (-1 is its last day), clamped to the month.
            first = first if first > 0 else max(1, month_days + first + 1)
            last = last if last > 0 else max(1, month_days + last + 1)
            if first <= local.day <= min(last, month_days):
                return True
        return False


def _in_any(value: int, ranges: list[str], names: tuple[str, ...], low: int, high: int, what: str) -> bool:
    for text in ranges:
        first, last = _range(text, names, low, high, what)
        if first <= value <= last:
            return True
    return False


IntervalName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class NamedTimeInterval(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: IntervalName
    time_intervals: list[TimeInterval] = Field(min_length=1, max_length=50)

    def contains(self, at: datetime) -> bool:
        return any(interval.contains(at) for interval in self.time_intervals)
