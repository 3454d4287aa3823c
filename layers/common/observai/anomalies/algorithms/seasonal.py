"""seasonal: the expected value is what the series did at the same time of day (or of week) in its history.

The history is kept as a profile of slots (daily: 96 quarter-hours; weekly: 168 hours), each with an exponentially
weighted mean and mean absolute deviation of the values that fell in it (about the last 4 periods count), so the
state stays the same size whatever the series' age. The expected value interpolates between the two nearest slot
centres; the spread pools the slot's own deviation with the series' overall deviation from its profile.

A profile needs about 3 periods of history (3 days, 3 weeks): until then, and for a slot with no data yet, the
band is robust's (rolling median and MAD), and the point says so (algorithm ``robust``, and the reason).
``season: auto`` keeps both profiles and uses the weekly one once it has 3 weeks and predicts better than the daily.
Once the profile draws the band, values far outside it move the profile only up to the band's edge: one incident
does not become "normal at this hour" the next day (a lasting change still moves it, a band's width per period)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from observai.anomalies.algorithms.robust import Robust

DAY = 86_400.0
WEEK = 7 * DAY
PERIODS_NEEDED = 3
MEMORY_PERIODS = 4.0  # a slot forgets with a time constant of about this many periods
MAD_TO_SIGMA = 1.2533  # mean absolute deviation → standard deviation, normal noise
POOL = 5.0  # the overall deviation weighs like this many observations of a slot's own
# The weekly profile's slots start on Monday 00:00 UTC (the epoch was a Thursday).
_WEEK_OFFSET = 3 * DAY


class Profile:
    __slots__ = ("count", "err", "mad", "mean", "period", "slot_s", "slots")

    def __init__(self, period: float, slots: int, state: dict[str, Any] | None) -> None:
        self.period = period
        self.slots = slots
        self.slot_s = period / slots
        if state:
            self.mean: list[float] = [float(v) for v in state["m"]]
            self.mad: list[float] = [float(v) for v in state["d"]]
            self.count: list[int] = [int(v) for v in state["c"]]
            self.err = float(state["e"])  # EWMA of the absolute error of this profile's predictions
        else:
            self.mean = [0.0] * slots
            self.mad = [0.0] * slots
            self.count = [0] * slots
            self.err = -1.0  # none yet

    def dump(self) -> dict[str, Any]:
        return {"m": self.mean, "d": self.mad, "c": self.count, "e": self.err}

    def position(self, t: float) -> float:
        offset = _WEEK_OFFSET if self.period == WEEK else 0.0
        return ((t + offset) % self.period) / self.slot_s

    def expect(self, t: float) -> tuple[float, float, int] | None:
        """(expected, slot deviation, slot observations) at ``t``, None when the slot has no data."""
        pos = self.position(t)
        k = int(pos) % self.slots
        count = self.count
        if count[k] == 0:
            return None
        frac = pos - int(pos) - 0.5  # where t sits from the slot's centre, in slots
        other = (k + 1) % self.slots if frac >= 0 else (k - 1) % self.slots
        if count[other] > 0:
            w = abs(frac)
            expected = (1.0 - w) * self.mean[k] + w * self.mean[other]
        else:
            expected = self.mean[k]
        return expected, self.mad[k], count[k]

    def learn(self, t: float, value: float, alpha_floor: float) -> None:
        k = int(self.position(t)) % self.slots
        c = self.count[k] + 1
        self.count[k] = c
        alpha = 1.0 / c
        if alpha < alpha_floor:
            alpha = alpha_floor
        deviation = abs(value - self.mean[k]) if c > 1 else 0.0
        self.mean[k] += alpha * (value - self.mean[k])
        if c > 1:
            self.mad[k] += alpha * (deviation - self.mad[k])

    def track_error(self, error: float, alpha: float) -> None:
        self.err = error if self.err < 0 else self.err + alpha * (error - self.err)


class Seasonal:
    name = "seasonal"

    def __init__(self, settings: Mapping[str, Any], state: dict[str, Any] | None) -> None:
        self.deviations = float(settings["deviations"])
        self.season = settings.get("season", "auto")
        self.fallback = Robust(settings, state.get("r") if state else None)
        self.daily = Profile(DAY, 96, state.get("day") if state else None) if self.season in ("auto", "daily") else None
        self.weekly = (
            Profile(WEEK, 168, state.get("week") if state else None) if self.season in ("auto", "weekly") else None
        )
        self.first = float(state["first"]) if state and state.get("first") is not None else None
        self.last = float(state["last_t"]) if state and state.get("last_t") is not None else None
        self.dt = float(state["dt"]) if state else 0.0  # EWMA of the spacing, seconds
        self.resid = float(state["resid"]) if state else -1.0  # EWMA of |value − profile|, the overall deviation
        self.name = "seasonal"
        self.reason = "seasonal"
        self._profile: Profile | None = None

    def dump(self) -> dict[str, Any]:
        return {
            "r": self.fallback.dump(),
            "day": self.daily.dump() if self.daily else None,
            "week": self.weekly.dump() if self.weekly else None,
            "first": self.first,
            "last_t": self.last,
            "dt": self.dt,
            "resid": self.resid,
        }

    def history_periods(self, t: float, period: float) -> float:
        return 0.0 if self.first is None else (t - self.first) / period

    def profile(self, t: float) -> Profile | None:
        """The profile to use at ``t`` (None: not enough history yet), and self.reason says why."""
        daily, weekly = self.daily, self.weekly
        if (
            weekly is not None
            and self.history_periods(t, WEEK) >= PERIODS_NEEDED
            and (daily is None or (0 <= weekly.err < 0.8 * daily.err and daily.err >= 0))
        ):
            self.reason = "seasonal: weekly profile"
            return weekly
        if daily is not None and self.history_periods(t, DAY) >= PERIODS_NEEDED:
            self.reason = "seasonal: daily profile"
            return daily
        if daily is None and weekly is None:
            self.reason = "seasonal: season is none, robust instead"
        else:
            period, label = (DAY, "days") if daily is not None else (WEEK, "weeks")
            have = self.history_periods(t, period)
            self.reason = f"seasonal: {have:.1f} of {PERIODS_NEEDED} {label} of history, robust until then"
        return None

    def predict_profile(self, t: float) -> tuple[float, float] | None:
        profile = self._profile = self.profile(t)
        if profile is None:
            return None
        found = profile.expect(t)
        if found is None:
            self.reason += " (no data in this slot yet, robust for this point)"
            return None
        expected, slot_mad, count = found
        overall = self.resid if self.resid >= 0 else slot_mad
        c = min(count, 20)
        mad = (c * slot_mad + POOL * overall) / (c + POOL)
        return expected, self.deviations * MAD_TO_SIGMA * mad

    def predict(self, t: float) -> tuple[float, float] | None:
        band = self.predict_profile(t)
        if band is not None:
            self.name = "seasonal"
            return band
        self.name = "robust"
        return self.fallback.predict(t)

    def alpha_floor(self, profile: Profile) -> float:
        """A slot's learning rate floor: about MEMORY_PERIODS periods of its points."""
        per_period = profile.slot_s / self.dt if self.dt > 0 else 1.0
        return 1.0 / (MEMORY_PERIODS * max(1.0, per_period))

    def update(self, t: float, value: float, lower: float | None, upper: float | None) -> None:
        self.fallback.update(t, value, lower, upper)
        if self.first is None:
            self.first = t
        if self.last is not None and t > self.last:
            step = t - self.last
            self.dt = step if self.dt <= 0 else self.dt + 0.05 * (step - self.dt)
        self.last = t
        # what the profile learns: the value, held to the band's edge when it is far outside
        learned = value
        if self.name == "seasonal" and lower is not None and upper is not None:
            learned = min(max(value, lower), upper)
        for profile in (self.daily, self.weekly):
            if profile is None:
                continue
            found = profile.expect(t)
            if found is not None:
                error = abs(learned - found[0])
                profile.track_error(error, 0.01)
                if profile is self._profile or (self._profile is None and profile is self.daily):
                    self.resid = error if self.resid < 0 else self.resid + 0.01 * (error - self.resid)
            profile.learn(t, learned, self.alpha_floor(profile))
        if not math.isfinite(self.resid):
            self.resid = -1.0
