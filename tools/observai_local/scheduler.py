"""Run the template's scheduled functions on their schedules: rate(...) and AWS six-field cron(...).

AWS cron fields: minutes hours day-of-month month day-of-week year. Supported: ``*``, ``?``, numbers,
names (JAN-DEC, SUN-SAT), lists, ranges and ``/`` steps. Day-of-week runs 1-7 with 1 = Sunday.
``L``, ``W`` and ``#`` are not supported. Rate schedules count from when the scheduler starts.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from observai_local.events import schedule_event
from observai_local.functions import Invoker
from observai_local.template import Schedule

_RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_DAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}


def parse_rate(expression: str) -> timedelta:
    """``rate(5 minutes)`` → 5 minutes. The unit is singular for 1 and plural otherwise, as AWS requires."""
    inner = expression.strip()[len("rate(") : -1].split()
    if not expression.strip().startswith("rate(") or len(inner) != 2 or inner[1] not in _RATE_UNITS:
        raise ValueError(f"invalid rate expression: {expression!r}")
    value, unit = int(inner[0]), inner[1]
    if value < 1 or (value == 1) != (not unit.endswith("s")):
        raise ValueError(f"invalid rate expression: {expression!r} (use '1 hour' or 'N hours')")
    return timedelta(seconds=value * _RATE_UNITS[unit])


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """The values a cron field allows."""
    if text in ("*", "?"):
        return frozenset(range(low, high + 1))
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1

        def number(token: str) -> int:
            token = token.upper()
            value = names[token] if names and token in names else int(token)
            if not low <= value <= high:
                raise ValueError(f"cron value {token} out of range {low}-{high}")
            return value

        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = number(first), number(last)
        else:
            start = number(base)
            end = high if step_text else start
        if step < 1 or start > end:
            raise ValueError(f"invalid cron field: {text!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: '?'
    months: frozenset[int]
    weekdays: frozenset[int] | None  # AWS numbering, 1 = Sunday; None: '?'
    years: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> Cron:
        text = expression.strip()
        if not (text.startswith("cron(") and text.endswith(")")):
            raise ValueError(f"invalid cron expression: {expression!r}")
        fields = text[5:-1].split()
        if len(fields) != 6:
            raise ValueError(f"cron needs 6 fields (minutes hours day-of-month month day-of-week year): {expression!r}")
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise ValueError(f"cron needs '?' in exactly one of day-of-month and day-of-week: {expression!r}")
        return cls(
            minutes=_field(minute, 0, 59),
            hours=_field(hour, 0, 23),
            days=None if dom == "?" else _field(dom, 1, 31),
            months=_field(month, 1, 12, _MONTHS),
            weekdays=None if dow == "?" else _field(dow, 1, 7, _DAYS),
            years=_field(year, 1970, 2199),
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.year not in self.years or day.month not in self.months:
            return False
        if self.days is not None and day.day not in self.days:
            return False
        aws_weekday = (day.weekday() + 1) % 7 + 1  # Python Monday=0 → AWS Monday=2, Sunday=1
        return self.weekdays is None or aws_weekday in self.weekdays

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (in ``after``'s timezone)."""
        start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(366 * 8):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ValueError("cron expression never fires in the next years")


def next_fire(expression: str, after: datetime, timezone: str = "UTC") -> datetime:
    """The next time a ``rate(...)`` or ``cron(...)`` schedule fires after ``after`` (an aware datetime)."""
    if expression.strip().startswith("rate("):
        return after + parse_rate(expression)
    local = after.astimezone(ZoneInfo(timezone))
    return Cron.parse(expression).next_after(local).astimezone(UTC)


def scheduled_event(schedule: Schedule) -> object:
    """The template's Input when it has one, else the default scheduled event."""
    if schedule.input is not None:
        try:
            return json.loads(schedule.input)
        except ValueError:
            return schedule.input
    return schedule_event(f"{schedule.function}-{schedule.name}", source=schedule.source)


class Scheduler:
    """A daemon thread that invokes each scheduled function when its schedule fires."""

    def __init__(self, invoker: Invoker, schedules: list[Schedule] | None = None) -> None:
        self.invoker = invoker
        self.schedules = schedules if schedules is not None else invoker.template.schedules
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_runs: dict[Schedule, datetime] = {}

    def start(self, *, run_now: bool = False) -> Scheduler:
        """Start the thread; with ``run_now`` every schedule fires once right away, then on its schedule."""
        now = datetime.now(UTC)
        self.next_runs = {s: now if run_now else next_fire(s.expression, now, s.timezone) for s in self.schedules}
        self._thread = threading.Thread(target=self._run, name="observai-local-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run_now(self, schedule: Schedule) -> object:
        return self.invoker.invoke(schedule.function, scheduled_event(schedule))

    def _run(self) -> None:
        while self.next_runs and not self._stop.is_set():
            schedule, when = min(self.next_runs.items(), key=lambda item: item[1])
            wait = (when - datetime.now(UTC)).total_seconds()
            if wait > 0:
                self._stop.wait(min(wait, 60))
                continue
            print(f"scheduler: {schedule.function} ({schedule.expression})", file=sys.stderr)
            try:
                self.run_now(schedule)
            except Exception:
                traceback.print_exc(file=sys.stderr)
            self.next_runs[schedule] = next_fire(schedule.expression, max(when, datetime.now(UTC)), schedule.timezone)
