"""Who is on call when: the final timeline of a schedule over [start, end), pure (no database, no clock).

Each layer is a rotation: its periods are numbered from its ``start`` and period k belongs to
``users[k mod len(users)]``.

- ``hours``: periods of ``length`` real elapsed hours from ``start``.
- ``days`` / ``weeks``: hand-offs at the local ``handoff_time`` in the layer's time zone every ``length`` calendar
  days (7 × ``length`` for weeks), counted from the local date of ``start``; so a daily 09:00 hand-off stays at
  09:00 local across daylight-saving changes (that day lasts 23 or 25 hours). A hand-off time that does not exist
  on a spring-forward day (inside the skipped hour) happens as late as the clock jumped (02:30 → 03:30); one that
  happens twice on a fall-back day happens at the first. The first person is on call from ``start`` to the first
  hand-off after it.
- Nobody is on call in a layer before its ``start``; restrictions (local windows) clip the layer's shifts: outside
  them the layer has nobody.

Layers merge top-down (the highest layer with someone wins, gaps fall through); overrides win over every layer (of
overlapping overrides, the later one in the list wins); adjacent pieces of the same person from the same source
merge. Every boundary is a function of the schedule alone, never of the range asked for: the timeline of [a, c) is
the timeline of [a, b) followed by that of [b, c) (with the piece across b joined).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal
from uuid import UUID

from observai.oncall.models import WEEKDAYS, ScheduleLayer, parse_hhmm, zone

MICROSECOND = timedelta(microseconds=1)
# No request computes more than this (the API asks for at most 90 days; on_call and /me a few weeks).
MAX_RANGE = timedelta(days=400)
_ALL_DAYS = frozenset(range(7))

Source = Literal["layer", "override"]


@dataclass(frozen=True, slots=True)
class Shift:
    user_id: UUID
    start: datetime
    end: datetime
    source: Source
    layer: str | None = None  # the layer's name; None for an override
    layer_index: int | None = None  # 0 the lowest layer; None for an override


@dataclass(frozen=True, slots=True)
class OverrideSpan:
    user_id: UUID
    start: datetime
    end: datetime


# A piece: (start, end, user_id, tag); tag is the layer's index, or -1 for an override.
_Piece = tuple[datetime, datetime, UUID, int]
_OVERRIDE = -1


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("datetimes must carry a time zone")
    return value.astimezone(UTC)


def at_local(day: date, clock: time, tz: tzinfo) -> datetime:
    """The instant of ``clock`` on ``day`` in ``tz`` (fold=0: a skipped time moves forward by the gap, a repeated
    one is its first occurrence), in UTC."""
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


class _Rotation:
    """The hand-off instants b(k) of a layer and the index of the period holding an instant."""

    def __init__(self, layer: ScheduleLayer, tz: tzinfo) -> None:
        self.start = _utc(layer.start)
        self.users = layer.users
        self.tz = tz
        self.unit = layer.rotation.unit
        if self.unit == "hours":
            self.step_us = layer.rotation.length * 3_600_000_000
            self.first = 0
            return
        self.step_days = layer.rotation.length * (7 if self.unit == "weeks" else 1)
        local_start = self.start.astimezone(tz)
        self.day0 = local_start.date()
        self.clock = parse_hhmm(layer.handoff_time) if layer.handoff_time else local_start.time().replace(tzinfo=None)
        # The period holding ``start`` is the first person's, whether the first hand-off is later that day or not.
        self.first = 0 if self.boundary(0) <= self.start else -1

    def boundary(self, k: int) -> datetime:
        if self.unit == "hours":
            return self.start + timedelta(microseconds=k * self.step_us)
        return at_local(self.day0 + timedelta(days=k * self.step_days), self.clock, self.tz)

    def index(self, at: datetime) -> int:
        if self.unit == "hours":
            return (at - self.start) // timedelta(microseconds=self.step_us)
        k = (at.astimezone(self.tz).date() - self.day0).days // self.step_days
        while self.boundary(k) > at:
            k -= 1
        while self.boundary(k + 1) <= at:
            k += 1
        return k

    def user(self, k: int) -> UUID:
        return self.users[(k - self.first) % len(self.users)]

    def periods(self, lo: datetime, hi: datetime, tag: int) -> list[_Piece]:
        lo = max(lo, self.start)
        out: list[_Piece] = []
        if lo >= hi:
            return out
        k = self.index(lo)
        begin = self.boundary(k)
        while begin < hi:
            end = self.boundary(k + 1)
            out.append((max(begin, lo), min(end, hi), self.user(k), tag))
            k += 1
            begin = end
        return out


def _windows(layer: ScheduleLayer, tz: tzinfo, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
    """The union of the layer's restriction windows within [lo, hi), sorted (a window lasts at most a day, so the
    local days from the one before ``lo`` to the one of ``hi`` hold every window that reaches into the range)."""
    first = lo.astimezone(tz).date() - timedelta(days=1)
    last = hi.astimezone(tz).date()
    rules: list[tuple[frozenset[int], time, time]] = []
    for r in layer.restrictions:
        days = _ALL_DAYS if r.type == "time_of_day" else frozenset(WEEKDAYS.index(d) for d in r.days)
        rules.append((days, parse_hhmm(r.start), parse_hhmm(r.end)))
    spans: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        weekday = day.weekday()
        for days, begin, end in rules:
            if weekday not in days:
                continue
            ws = at_local(day, begin, tz)
            we = at_local(day + timedelta(days=1) if end <= begin else day, end, tz)
            ws, we = max(ws, lo), min(we, hi)
            if ws < we:
                spans.append((ws, we))
        day += timedelta(days=1)
    spans.sort()
    union: list[tuple[datetime, datetime]] = []
    for ws, we in spans:
        if union and ws <= union[-1][1]:
            if we > union[-1][1]:
                union[-1] = (union[-1][0], we)
        else:
            union.append((ws, we))
    return union


def _clip(pieces: list[_Piece], windows: list[tuple[datetime, datetime]]) -> list[_Piece]:
    out: list[_Piece] = []
    j = 0
    for s, e, user, tag in pieces:
        while j < len(windows) and windows[j][1] <= s:
            j += 1
        i = j
        while i < len(windows) and windows[i][0] < e:
            cs, ce = max(s, windows[i][0]), min(e, windows[i][1])
            if cs < ce:
                out.append((cs, ce, user, tag))
            i += 1
    return out


def _overlay(top: list[_Piece], lower: list[_Piece]) -> list[_Piece]:
    """``top`` with the parts of ``lower`` it does not cover (both sorted, each without overlaps)."""
    if not top:
        return list(lower)
    out = list(top)
    j = 0
    for s, e, user, tag in lower:
        while j < len(top) and top[j][1] <= s:
            j += 1
        cur = s
        i = j
        while i < len(top) and top[i][0] < e:
            if top[i][0] > cur:
                out.append((cur, top[i][0], user, tag))
            cur = max(cur, top[i][1])
            i += 1
        if cur < e:
            out.append((cur, e, user, tag))
    out.sort(key=lambda p: p[0])
    return out


def _overrides(overrides: Sequence[OverrideSpan], lo: datetime, hi: datetime) -> list[_Piece]:
    """The overrides clipped to [lo, hi) without overlaps: where several overlap, the later one in the list wins."""
    spans = []
    for rank, o in enumerate(overrides):
        s, e = max(_utc(o.start), lo), min(_utc(o.end), hi)
        if s < e:
            spans.append((s, e, rank, o.user_id))
    if not spans:
        return []
    bounds = sorted({t for s, e, _, _ in spans for t in (s, e)})
    spans.sort(key=lambda x: x[0])
    out: list[_Piece] = []
    active: list[tuple[int, datetime, UUID]] = []  # a max-heap on rank: (-rank, end, user)
    k = 0
    for b0, b1 in itertools.pairwise(bounds):
        while k < len(spans) and spans[k][0] <= b0:
            heapq.heappush(active, (-spans[k][2], spans[k][1], spans[k][3]))
            k += 1
        while active and active[0][1] <= b0:
            heapq.heappop(active)
        if active:
            out.append((b0, b1, active[0][2], _OVERRIDE))
    return out


def _joined(pieces: list[_Piece]) -> list[_Piece]:
    out: list[_Piece] = []
    for piece in pieces:
        if out and out[-1][1] == piece[0] and out[-1][2] == piece[2] and out[-1][3] == piece[3]:
            out[-1] = (out[-1][0], piece[1], piece[2], piece[3])
        else:
            out.append(piece)
    return out


def layer_shifts(layer: ScheduleLayer, index: int, schedule_zone: str, start: datetime, end: datetime) -> list[_Piece]:
    """One layer's pieces within [start, end) (its rotation clipped by its restrictions), sorted."""
    tz = zone(layer.time_zone or schedule_zone)
    pieces = _Rotation(layer, tz).periods(start, end, index)
    if layer.restrictions and pieces:
        pieces = _clip(pieces, _windows(layer, tz, pieces[0][0], pieces[-1][1]))
    return pieces


def timeline(
    layers: Sequence[ScheduleLayer],
    schedule_zone: str,
    overrides: Sequence[OverrideSpan],
    start: datetime,
    end: datetime,
    absent: Collection[UUID] = (),
) -> list[Shift]:
    """The final timeline over [start, end): sorted shifts without overlaps (a gap: nobody is on call).

    ``absent``: people who cannot be on call (no longer members of the organization): their turns and overrides
    count as nobody's, so the layers below show through (the rotation's order is unchanged)."""
    lo, hi = _utc(start), _utc(end)
    if hi <= lo:
        return []
    if hi - lo > MAX_RANGE:
        raise ValueError(f"a timeline spans at most {MAX_RANGE.days} days")
    gone = frozenset(absent)
    merged: list[_Piece] = _overrides([o for o in overrides if o.user_id not in gone], lo, hi)
    for index in range(len(layers) - 1, -1, -1):
        pieces = layer_shifts(layers[index], index, schedule_zone, lo, hi)
        if gone:
            pieces = [p for p in pieces if p[2] not in gone]
        merged = _overlay(merged, pieces)
    return [
        Shift(user, s, e, "override") if tag == _OVERRIDE else Shift(user, s, e, "layer", layers[tag].name, tag)
        for s, e, user, tag in _joined(merged)
    ]


def shift_at(
    layers: Sequence[ScheduleLayer],
    schedule_zone: str,
    overrides: Sequence[OverrideSpan],
    at: datetime,
    absent: Collection[UUID] = (),
) -> Shift | None:
    """The shift holding the instant ``at`` (clipped to [at, at + 1 µs): only who, not how long), or None."""
    found = timeline(layers, schedule_zone, overrides, at, _utc(at) + MICROSECOND, absent)
    return found[0] if found else None


def join_seams(parts: Sequence[Sequence[Shift]]) -> list[Shift]:
    """Consecutive timelines (of adjacent ranges) as one: the pieces across each seam joined."""
    out: list[Shift] = []
    for part in parts:
        for shift in part:
            last = out[-1] if out else None
            if (
                last is not None
                and last.end == shift.start
                and last.user_id == shift.user_id
                and last.source == shift.source
                and last.layer_index == shift.layer_index
            ):
                out[-1] = Shift(last.user_id, last.start, shift.end, last.source, last.layer, last.layer_index)
            else:
                out.append(shift)
    return out
