"""The on-call timeline (observai.oncall.timeline): rotations, hand-offs across daylight-saving changes,
restrictions, layers, overrides, and the properties of the whole (no overlaps, overrides win, range independence)."""

from __future__ import annotations

import itertools
import time as clock
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.oncall.models import ScheduleIn, ScheduleLayer, ScheduleOverrideIn
from observai.oncall.timeline import OverrideSpan, join_seams, shift_at, timeline
from pydantic import ValidationError

A, B, C, D = (uuid.UUID(int=i) for i in range(1, 5))
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SYDNEY = ZoneInfo("Australia/Sydney")


def layer(**fields: Any) -> ScheduleLayer:
    base: dict[str, Any] = {"name": "primary", "users": [A, B], "rotation": {"unit": "days", "length": 1}}
    base.update(fields)
    return ScheduleLayer.model_validate(base)


def local(shift_time: datetime, tz: ZoneInfo) -> tuple[str, str]:
    value = shift_time.astimezone(tz)
    return value.strftime("%Y-%m-%d %H:%M"), value.strftime("%z")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


# --- specific rotations ----------------------------------------------------------------------------------------------


def test_weekly_rotation_hands_off_on_monday_at_10():
    # Given a weekly rotation of three people starting Monday 2026-01-05 10:00 in Berlin
    weekly = layer(
        users=[A, B, C],
        rotation={"unit": "weeks", "length": 1},
        start="2026-01-05T10:00:00+01:00",
        handoff_time="10:00",
        time_zone="Europe/Berlin",
    )
    # When the timeline of four weeks is computed
    shifts = timeline([weekly], "UTC", [], utc(2026, 1, 5), utc(2026, 2, 9))
    # Then each person is on call a week, handing off Mondays at 10:00 Berlin time, round-robin
    assert [s.user_id for s in shifts] == [A, B, C, A, B]
    assert [local(s.start, BERLIN)[0] for s in shifts] == [
        "2026-01-05 10:00",
        "2026-01-12 10:00",
        "2026-01-19 10:00",
        "2026-01-26 10:00",
        "2026-02-02 10:00",
    ]
    assert all(s.start.astimezone(BERLIN).weekday() == 0 for s in shifts)
    assert shifts[-1].end == utc(2026, 2, 9)
    assert all(s.source == "layer" and s.layer == "primary" and s.layer_index == 0 for s in shifts)


def test_twelve_hour_rotation_counts_real_hours():
    # Given 12-hour shifts from 2026-03-07 20:00 New York (the night before the spring-forward change)
    halves = layer(rotation={"unit": "hours", "length": 12}, start="2026-03-07T20:00:00-05:00")
    # When computed across the change
    shifts = timeline([halves], "America/New_York", [], utc(2026, 3, 8), utc(2026, 3, 9, 12))
    # Then every hand-off is 12 elapsed hours after the previous one (09:00 local after the change, not 08:00)
    assert [s.user_id for s in shifts] == [A, B, A]
    assert [local(s.start, NY)[0] for s in shifts][1:] == ["2026-03-08 09:00", "2026-03-08 21:00"]
    assert shifts[1].end - shifts[1].start == timedelta(hours=12)


def test_nobody_before_the_layer_starts_and_the_first_person_starts_it():
    # Given a daily 09:00 rotation starting at 15:00 (after that day's hand-off time)
    daily = layer(start="2026-05-04T15:00:00Z", handoff_time="09:00", time_zone="UTC")
    shifts = timeline([daily], "UTC", [], utc(2026, 5, 4), utc(2026, 5, 6))
    # Then nobody is on call before 15:00; A from then to the next morning's hand-off; then B
    assert [(s.user_id, s.start, s.end) for s in shifts] == [
        (A, utc(2026, 5, 4, 15), utc(2026, 5, 5, 9)),
        (B, utc(2026, 5, 5, 9), utc(2026, 5, 6)),
    ]
    # And a start before the day's hand-off time gives the first person until that morning's hand-off
    early = layer(start="2026-05-04T06:00:00Z", handoff_time="09:00", time_zone="UTC")
    shifts = timeline([early], "UTC", [], utc(2026, 5, 4), utc(2026, 5, 5, 12))
    assert [(s.user_id, s.start, s.end) for s in shifts] == [
        (A, utc(2026, 5, 4, 6), utc(2026, 5, 4, 9)),
        (B, utc(2026, 5, 4, 9), utc(2026, 5, 5, 9)),
        (A, utc(2026, 5, 5, 9), utc(2026, 5, 5, 12)),
    ]


def test_the_handoff_time_defaults_to_the_local_time_of_the_start():
    daily = layer(start="2026-05-04T07:30:00+02:00", time_zone="Europe/Berlin")
    shifts = timeline([daily], "UTC", [], utc(2026, 5, 5), utc(2026, 5, 6))
    assert [local(s.start, BERLIN)[0] for s in shifts][1:] == ["2026-05-05 07:30"]


def test_a_person_listed_twice_in_a_row_gets_one_joined_shift():
    daily = layer(users=[A, A, B], start="2026-05-04T09:00:00Z", handoff_time="09:00", time_zone="UTC")
    shifts = timeline([daily], "UTC", [], utc(2026, 5, 4, 9), utc(2026, 5, 7, 9))
    assert [(s.user_id, s.start, s.end) for s in shifts] == [
        (A, utc(2026, 5, 4, 9), utc(2026, 5, 6, 9)),
        (B, utc(2026, 5, 6, 9), utc(2026, 5, 7, 9)),
    ]


def test_a_layer_in_its_own_time_zone():
    # Given a schedule in UTC with a layer handing off at 09:00 Sydney time
    daily = layer(start="2026-06-01T09:00:00+10:00", handoff_time="09:00", time_zone="Australia/Sydney")
    shifts = timeline([daily], "UTC", [], utc(2026, 6, 2), utc(2026, 6, 3))
    assert {local(s.start, SYDNEY)[0][11:] for s in shifts[1:]} == {"09:00"}


# --- daylight-saving changes -----------------------------------------------------------------------------------------

DST_WEEKS = [
    # zone, a day some days before the change, the change's local date
    ("America/New_York", date(2026, 3, 5), date(2026, 3, 8)),  # spring forward 02:00 -> 03:00
    ("America/New_York", date(2026, 10, 29), date(2026, 11, 1)),  # fall back 02:00 -> 01:00
    ("Europe/Berlin", date(2026, 3, 26), date(2026, 3, 29)),  # spring forward 02:00 -> 03:00
    ("Europe/Berlin", date(2026, 10, 22), date(2026, 10, 25)),  # fall back 03:00 -> 02:00
    ("Australia/Sydney", date(2026, 4, 2), date(2026, 4, 5)),  # fall back 03:00 -> 02:00
    ("Australia/Sydney", date(2026, 10, 1), date(2026, 10, 4)),  # spring forward 02:00 -> 03:00
]


@pytest.mark.parametrize(("zone_name", "first_day", "change"), DST_WEEKS)
@pytest.mark.parametrize("handoff", ["09:00", "00:00", "23:30"])
def test_daily_handoffs_stay_at_local_time_across_dst(zone_name: str, first_day: date, change: date, handoff: str):
    # Given a daily rotation in a zone changing its clocks that week
    tz = ZoneInfo(zone_name)
    start = datetime.combine(first_day, datetime.strptime(handoff, "%H:%M").time(), tzinfo=tz)
    daily = layer(users=[A, B, C], start=start.isoformat(), handoff_time=handoff)
    # When the week is computed
    shifts = timeline([daily], zone_name, [], start, start + timedelta(days=7))
    # Then every hand-off is at the hand-off time, local, and the day of the change lasts 23 or 25 hours
    assert [local(s.start, tz)[0][11:] for s in shifts] == [handoff] * 7
    assert [s.start.astimezone(tz).date() for s in shifts] == [first_day + timedelta(days=i) for i in range(7)]
    lengths = {s.start.astimezone(tz).date(): s.end - s.start for s in shifts}
    transition_day = change
    held = [d for d, n in lengths.items() if n != timedelta(hours=24)]
    assert len(held) == 1
    assert lengths[held[0]] in (timedelta(hours=23), timedelta(hours=25))
    assert held[0] in (transition_day - timedelta(days=1), transition_day)
    assert [s.user_id for s in shifts] == [A, B, C, A, B, C, A]


@pytest.mark.parametrize(
    ("zone_name", "change", "skipped", "after"),
    [
        ("America/New_York", date(2026, 3, 8), "02:30", "03:30"),
        ("Europe/Berlin", date(2026, 3, 29), "02:30", "03:30"),
        ("Australia/Sydney", date(2026, 10, 4), "02:15", "03:15"),
    ],
)
def test_a_handoff_time_inside_the_skipped_hour_happens_as_late_as_the_clock_jumped(
    zone_name: str, change: date, skipped: str, after: str
):
    tz = ZoneInfo(zone_name)
    start = datetime.combine(change - timedelta(days=2), datetime.strptime(skipped, "%H:%M").time(), tzinfo=tz)
    daily = layer(start=start.isoformat(), handoff_time=skipped)
    shifts = timeline([daily], zone_name, [], start, start + timedelta(days=4))
    starts = [local(s.start, tz)[0] for s in shifts]
    # The day of the change hands off at the skipped time's place after the jump; the others at the time itself
    assert starts == [
        f"{change - timedelta(days=2)} {skipped}",
        f"{change - timedelta(days=1)} {skipped}",
        f"{change} {after}",
        f"{change + timedelta(days=1)} {skipped}",
    ]
    assert all(a.end == b.start for a, b in itertools.pairwise(shifts))


def test_a_handoff_time_repeated_on_fall_back_happens_at_the_first():
    # New York 2026-11-01: 01:00-02:00 happens twice; a 01:30 hand-off is at the first (EDT, -04:00)
    start = datetime(2026, 10, 30, 1, 30, tzinfo=NY)
    daily = layer(start=start.isoformat(), handoff_time="01:30")
    shifts = timeline([daily], "America/New_York", [], start, start + timedelta(days=3))
    assert local(shifts[2].start, NY) == ("2026-11-01 01:30", "-0400")
    assert shifts[2].end - shifts[2].start == timedelta(hours=25)


# --- restrictions and layers -----------------------------------------------------------------------------------------


def office_hours_over_24_7() -> list[ScheduleLayer]:
    always = layer(name="24/7", users=[A], rotation={"unit": "weeks", "length": 1}, start="2026-01-05T00:00:00+01:00")
    office = layer(
        name="office",
        users=[B, C],
        start="2026-01-05T09:00:00+01:00",
        handoff_time="09:00",
        restrictions=[
            {"type": "weekly", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
        ],
    )
    return [always, office]


def test_weekday_office_hours_layer_over_a_24_7_layer():
    # Given a weekday 09:00-17:00 layer (B, C daily) over a 24/7 layer (A) in Berlin
    layers = office_hours_over_24_7()
    # When the week of Monday 2026-03-23 (Berlin changes its clocks that Sunday) is computed
    start = datetime(2026, 3, 23, tzinfo=BERLIN)
    shifts = timeline(layers, "Europe/Berlin", [], start, start + timedelta(days=7))
    # Then office hours belong to the office layer, everything else to A
    got = [(s.user_id, *local(s.start, BERLIN)[0:1], local(s.end, BERLIN)[0], s.layer) for s in shifts]
    expected: list[tuple[Any, ...]] = []
    for i in range(5):
        day = date(2026, 3, 23) + timedelta(days=i)
        prev = f"{day} 00:00" if i == 0 else f"{day - timedelta(days=1)} 17:00"
        expected.append((A, prev, f"{day} 09:00", "24/7"))
        expected.append((C if i % 2 == 0 else B, f"{day} 09:00", f"{day} 17:00", "office"))
    expected.append((A, "2026-03-27 17:00", "2026-03-30 00:00", "24/7"))
    assert got == expected
    # And on Saturday the 24/7 layer's person is on call (the office rotation counts weekends too: 2026-03-23 is
    # its day 77, C's)
    assert shift_at(layers, "Europe/Berlin", [], datetime(2026, 3, 28, 12, tzinfo=BERLIN)).user_id == A  # type: ignore[union-attr]


def test_time_of_day_restriction_wrapping_midnight():
    nights = layer(
        users=[B],
        start="2026-01-01T00:00:00Z",
        time_zone="UTC",
        restrictions=[{"type": "time_of_day", "start": "22:00", "end": "06:00"}],
    )
    shifts = timeline([nights], "UTC", [], utc(2026, 1, 2), utc(2026, 1, 4))
    assert [(s.start, s.end) for s in shifts] == [
        (utc(2026, 1, 2), utc(2026, 1, 2, 6)),
        (utc(2026, 1, 2, 22), utc(2026, 1, 3, 6)),
        (utc(2026, 1, 3, 22), utc(2026, 1, 4)),
    ]


def test_a_higher_layer_with_a_gap_falls_through():
    low = layer(name="low", users=[A], start="2026-01-01T00:00:00Z")
    high = layer(name="high", users=[B], start="2026-01-02T00:00:00Z")
    shifts = timeline([low, high], "UTC", [], utc(2026, 1, 1), utc(2026, 1, 3))
    assert [(s.user_id, s.layer) for s in shifts] == [(A, "low"), (B, "high")]


def test_overrides_win_and_the_later_of_overlapping_overrides_wins():
    base = layer(users=[A], start="2026-01-01T00:00:00Z")
    overrides = [
        OverrideSpan(B, utc(2026, 1, 1, 10), utc(2026, 1, 1, 14)),
        OverrideSpan(C, utc(2026, 1, 1, 12), utc(2026, 1, 1, 13)),
    ]
    shifts = timeline([base], "UTC", overrides, utc(2026, 1, 1), utc(2026, 1, 2))
    assert [(s.user_id, s.start.hour, s.end.hour or 24, s.source) for s in shifts] == [
        (A, 0, 10, "layer"),
        (B, 10, 12, "override"),
        (C, 12, 13, "override"),
        (B, 13, 14, "override"),
        (A, 14, 24, "layer"),
    ]


def test_a_90_day_timeline_with_hourly_rotations_and_restrictions_is_fast():
    restrictions = [
        {"type": "weekly", "days": ["mon", "wed", "fri"], "start": f"{h:02d}:00", "end": f"{h:02d}:40"}
        for h in range(20)
    ]
    layers = [
        layer(
            name=f"l{i}",
            users=[uuid.UUID(int=100 + j) for j in range(50)],
            rotation={"unit": "hours", "length": 1},
            start="2020-01-01T00:17:00Z",
            time_zone="Europe/Berlin",
            restrictions=restrictions if i % 2 else [],
        )
        for i in range(10)
    ]
    overrides = [
        OverrideSpan(A, utc(2026, 1, 1) + timedelta(hours=7 * i), utc(2026, 1, 1) + timedelta(hours=7 * i + 3))
        for i in range(300)
    ]
    started = clock.perf_counter()
    shifts = timeline(layers, "UTC", overrides, utc(2026, 1, 1), utc(2026, 4, 1))
    assert clock.perf_counter() - started < 2.0
    assert shifts[0].start == utc(2026, 1, 1) and shifts[-1].end == utc(2026, 4, 1)


# --- validation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"users": []}, ("users",)),
        ({"users": [A] * 51}, ("users",)),
        ({"rotation": {"unit": "months", "length": 1}}, ("rotation", "unit")),
        ({"rotation": {"unit": "days", "length": 0}}, ("rotation", "length")),
        ({"rotation": {"unit": "days", "length": 366}}, ("rotation", "length")),
        ({"handoff_time": "24:00"}, ("handoff_time",)),
        ({"handoff_time": "9:00"}, ("handoff_time",)),
        ({"time_zone": "Mars/Olympus"}, ("time_zone",)),
        ({"time_zone": "../etc/passwd"}, ("time_zone",)),
        ({"start": "2026-01-01T00:00:00"}, ("start",)),
        ({"start": 1767225600}, ("start",)),
        ({"name": "a\x00b"}, ("name",)),
        (
            {"restrictions": [{"type": "weekly", "days": ["funday"], "start": "09:00", "end": "17:00"}]},
            ("restrictions",),
        ),
        ({"restrictions": [{"type": "time_of_day", "start": "09:00", "end": "17:00"}] * 21}, ("restrictions",)),
    ],
)
def test_layer_validation_names_the_field(fields: dict[str, Any], where: tuple[str, ...]):
    base = {"name": "x", "users": [A], "rotation": {"unit": "days", "length": 1}, "start": "2026-01-01T00:00:00Z"}
    base.update(fields)
    with pytest.raises(ValidationError) as err:
        ScheduleLayer.model_validate(base)
    assert tuple(str(p) for p in err.value.errors()[0]["loc"][: len(where)]) == where


def test_schedule_and_override_limits():
    one = {"name": "x", "users": [A], "rotation": {"unit": "days", "length": 1}, "start": "2026-01-01T00:00:00Z"}
    with pytest.raises(ValidationError):
        ScheduleIn.model_validate({"name": "s", "time_zone": "UTC", "layers": [one] * 11})
    with pytest.raises(ValidationError):
        ScheduleIn.model_validate({"name": "s", "time_zone": "UTC", "layers": []})
    ScheduleIn.model_validate({"name": "s", "time_zone": "UTC", "layers": [one] * 10})
    with pytest.raises(ValidationError, match="after start"):
        ScheduleOverrideIn.model_validate(
            {"user_id": str(A), "start": "2026-01-02T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
        )
    with pytest.raises(ValidationError, match="90 days"):
        ScheduleOverrideIn.model_validate(
            {"user_id": str(A), "start": "2026-01-01T00:00:00Z", "end": "2026-04-02T00:00:00Z"}
        )


# --- properties ------------------------------------------------------------------------------------------------------

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata"]
BASE = datetime(2026, 1, 1, tzinfo=UTC)
USERS = [uuid.UUID(int=i) for i in range(1, 6)]


@st.composite
def restrictions(draw: st.DrawFn) -> dict[str, Any]:
    hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
    if draw(st.booleans()):
        return {"type": "time_of_day", "start": draw(hhmm), "end": draw(hhmm)}
    days = draw(st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1, max_size=7))
    return {"type": "weekly", "days": days, "start": draw(hhmm), "end": draw(hhmm)}


@st.composite
def layers_strategy(draw: st.DrawFn) -> ScheduleLayer:
    unit = draw(st.sampled_from(["hours", "days", "weeks"]))
    length = draw(st.integers(1, 48 if unit == "hours" else 3))
    start = BASE + timedelta(minutes=draw(st.integers(-60 * 24 * 30, 60 * 24 * 200)))
    return ScheduleLayer.model_validate(
        {
            "name": f"layer-{draw(st.integers(0, 9))}",
            "users": draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=4)),
            "rotation": {"unit": unit, "length": length},
            "start": start.isoformat(),
            "handoff_time": draw(st.sampled_from([None, "00:00", "02:30", "09:00", "23:45"])),
            "time_zone": draw(st.sampled_from([None, *ZONES])),
            "restrictions": draw(st.lists(restrictions(), max_size=3)),
        }
    )


@st.composite
def overrides_strategy(draw: st.DrawFn) -> list[OverrideSpan]:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        start = BASE + timedelta(minutes=draw(st.integers(0, 60 * 24 * 300)))
        out.append(
            OverrideSpan(
                draw(st.sampled_from(USERS)), start, start + timedelta(minutes=draw(st.integers(1, 60 * 24 * 5)))
            )
        )
    return out


# A range: its start and length in minutes, somewhere in 2026 (so across both DST changes of each zone).
ranges = st.tuples(st.integers(0, 60 * 24 * 330), st.integers(1, 60 * 24 * 30))
schedule = st.tuples(st.lists(layers_strategy(), min_size=1, max_size=4), st.sampled_from(ZONES), overrides_strategy())
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _range(r: tuple[int, int]) -> tuple[datetime, datetime]:
    return BASE + timedelta(minutes=r[0]), BASE + timedelta(minutes=r[0] + r[1])


@PROPERTY
@given(schedule, ranges)
def test_property_the_timeline_has_no_overlaps_and_stays_in_range(sched: Any, r: tuple[int, int]):
    layers, zone_name, overrides = sched
    start, end = _range(r)
    shifts = timeline(layers, zone_name, overrides, start, end)
    for s in shifts:
        assert start <= s.start < s.end <= end
    for a, b in itertools.pairwise(shifts):
        assert a.end <= b.start  # sorted, at most one person on call at every instant
        assert not (a.end == b.start and (a.user_id, a.source, a.layer_index) == (b.user_id, b.source, b.layer_index))


@PROPERTY
@given(schedule, ranges)
def test_property_overrides_always_win(sched: Any, r: tuple[int, int]):
    layers, zone_name, overrides = sched
    start, end = _range(r)
    shifts = timeline(layers, zone_name, overrides, start, end)
    for o in overrides:
        s, e = max(o.start, start), min(o.end, end)
        if s >= e:
            continue
        # Over every override's span, only overrides are on call, and nobody is missing
        covering = [x for x in shifts if x.start < e and x.end > s]
        assert all(x.source == "override" for x in covering)
        assert covering[0].start <= s and covering[-1].end >= e
        assert all(a.end == b.start for a, b in itertools.pairwise(covering))
    # The last override given wins over the ones before it
    if overrides:
        last = overrides[-1]
        for x in shifts:
            if x.start < last.end and x.end > last.start:
                assert x.user_id == last.user_id


@PROPERTY
@given(schedule, ranges, st.lists(st.integers(1, 60 * 24 * 30 - 1), min_size=1, max_size=4))
def test_property_the_timeline_is_the_same_for_a_range_or_its_pieces(sched: Any, r: tuple[int, int], cuts: list[int]):
    layers, zone_name, overrides = sched
    start, end = _range(r)
    seams = sorted({start + timedelta(minutes=c) for c in cuts if c < r[1]})
    bounds = [start, *seams, end]
    whole = timeline(layers, zone_name, overrides, start, end)
    pieces = [timeline(layers, zone_name, overrides, a, b) for a, b in itertools.pairwise(bounds)]
    assert join_seams(pieces) == whole


@PROPERTY
@given(schedule, ranges)
def test_property_shift_at_agrees_with_the_timeline(sched: Any, r: tuple[int, int]):
    layers, zone_name, overrides = sched
    start, end = _range(r)
    shifts = timeline(layers, zone_name, overrides, start, end)
    probes = [start, end - timedelta(microseconds=1)] + [s.start for s in shifts[:5]] + [s.end for s in shifts[:5]]
    for at in probes:
        if not start <= at < end:
            continue
        found = shift_at(layers, zone_name, overrides, at)
        expected = next((s for s in shifts if s.start <= at < s.end), None)
        assert (found.user_id if found else None) == (expected.user_id if expected else None)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["America/New_York", "Europe/Berlin", "Australia/Sydney"]),
    st.integers(0, 364),
    st.sampled_from(["00:00", "01:30", "02:30", "09:00", "23:59"]),
    st.integers(1, 3),
)
def test_property_daily_handoffs_at_the_local_time(zone_name: str, day: int, handoff: str, length: int):
    tz = ZoneInfo(zone_name)
    start = datetime(2026, 1, 1, tzinfo=tz) + timedelta(days=day)
    daily = layer(
        users=[A, B, C], rotation={"unit": "days", "length": length}, start=start.isoformat(), handoff_time=handoff
    )
    shifts = timeline([daily], zone_name, [], start, start + timedelta(days=40))
    hh, mm = (int(x) for x in handoff.split(":"))
    for s in shifts[1:]:
        lt = s.start.astimezone(tz)
        # At the hand-off time; or, when it was skipped that day, as late as the clock jumped (an hour later)
        assert (lt.hour, lt.minute) == (hh, mm) or (lt.hour, lt.minute) == (hh + 1, mm)
        if (lt.hour, lt.minute) != (hh, mm):
            assert lt.utcoffset() != (lt - timedelta(hours=2)).utcoffset()
    for a, b in itertools.pairwise(shifts[1:]):
        assert (b.start.astimezone(tz).date() - a.start.astimezone(tz).date()).days == length


def test_people_who_left_count_as_nobody_and_the_layers_below_show_through():
    # Given A under a daily rotation of B and C, and an override for C; and C has left the organization
    low = layer(name="low", users=[A], start="2026-01-01T00:00:00Z")
    high = layer(name="high", users=[B, C], start="2026-01-01T00:00:00Z", handoff_time="00:00", time_zone="UTC")
    overrides = [
        OverrideSpan(B, utc(2026, 1, 1, 6), utc(2026, 1, 1, 8)),
        OverrideSpan(C, utc(2026, 1, 1, 7), utc(2026, 1, 1, 9)),
    ]
    shifts = timeline([low, high], "UTC", overrides, utc(2026, 1, 1), utc(2026, 1, 4), absent={C})
    # Then C's days are A's (the rotation keeps its order: B on the 3rd), and C's override is dropped (B's shows)
    assert [(s.user_id, s.start, s.end, s.layer) for s in shifts] == [
        (B, utc(2026, 1, 1), utc(2026, 1, 1, 6), "high"),
        (B, utc(2026, 1, 1, 6), utc(2026, 1, 1, 8), None),
        (B, utc(2026, 1, 1, 8), utc(2026, 1, 2), "high"),
        (A, utc(2026, 1, 2), utc(2026, 1, 3), "low"),
        (B, utc(2026, 1, 3), utc(2026, 1, 4), "high"),
    ]
    assert shift_at([low, high], "UTC", overrides, utc(2026, 1, 2, 12), absent={C}).user_id == A  # type: ignore[union-attr]


@PROPERTY
@given(schedule, ranges, st.lists(st.sampled_from(USERS), max_size=3), st.integers(1, 60 * 24 * 30 - 1))
def test_property_absent_people_never_appear_and_pieces_still_join(
    sched: Any, r: tuple[int, int], absent: list[uuid.UUID], cut: int
):
    layers, zone_name, overrides = sched
    start, end = _range(r)
    whole = timeline(layers, zone_name, overrides, start, end, absent)
    assert not {s.user_id for s in whole} & set(absent)
    if cut < r[1]:
        seam = start + timedelta(minutes=cut)
        parts = [timeline(layers, zone_name, overrides, a, b, absent) for a, b in ((start, seam), (seam, end))]
        assert join_seams(parts) == whole
