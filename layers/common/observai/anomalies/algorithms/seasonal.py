"""seasonal: the expected value is what the series did at the same time of day (or of week) in its history.

The history is kept as a profile of slots (daily: 96 quarter-hours; weekly: 84 two-hour slots), each with an
exponentially weighted mean and mean absolute deviation of the values that fell in it (about the last 4 periods
count; 7 significant digits, relative to the profile's first value), so the state stays small (~4 KB of JSON) and
the same size whatever the series' age. The expected value interpolates between the two nearest slot
centres, plus a level correction: the recent mean (an EWMA over about ``window`` points) of value − profile, so a
level shift or a drift is followed as a rolling baseline follows it, while the day's shape stays. The spread pools
the slot's own deviation with the series' overall deviation from its profile.

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
DAILY_SLOTS = 96  # quarter-hours
WEEKLY_SLOTS = 84  # two-hour slots
MEMORY_PERIODS = 4.0  # a slot forgets with a time constant of about this many periods
MAD_TO_SIGMA = 1.2533  # mean absolute deviation → standard deviation, normal noise
POOL = 5.0  # the overall deviation weighs like this many observations of a slot's own
# The weekly profile's slots start on Monday 00:00 UTC (the epoch was a Thursday).
_WEEK_OFFSET = 3 * DAY


def _digits(x: float) -> float:
    """``x`` to 7 significant digits (its JSON is short)."""
    return float(f"{x:.7g}")


def track_error(running: float, error: float, alpha: float) -> float:
    """A running mean of absolute prediction errors (negative: none yet), each error held to 4× the running mean so
    an anomaly, the very thing to detect, does not make a predictor look bad."""
    if running < 0:
        return error
    if error > 4.0 * running:
        error = 4.0 * running
    return running + alpha * (error - running)


class Profile:
    __slots__ = ("count", "err", "mad", "mean", "offset", "period", "ref", "slot_s", "slots")

    def __init__(self, period: float, slots: int, state: dict[str, Any] | None) -> None:
        self.period = period
        self.slots = slots
        self.slot_s = period / slots
        if state:
            self.ref: float | None = state["r"]  # the first value learned: slot means are relative to it
            self.mean: list[float] = list(state["m"])  # JSON numbers: floats (ints work the same)
            self.mad: list[float] = list(state["d"])
            self.count: list[int] = list(state["c"])
            self.err = float(state["e"])  # EWMA of the absolute error of this profile's predictions
            self.offset = float(state["o"])  # EWMA of value − profile: the recent level correction
        else:
            self.ref = None
            self.mean = [0.0] * slots
            self.mad = [0.0] * slots
            self.count = [0] * slots
            self.err = -1.0  # none yet
            self.offset = 0.0

    def dump(self) -> dict[str, Any]:
        return {"r": self.ref, "m": self.mean, "d": self.mad, "c": self.count, "e": self.err, "o": self.offset}

    def position(self, t: float) -> float:
        offset = _WEEK_OFFSET if self.period == WEEK else 0.0
        return ((t + offset) % self.period) / self.slot_s

    def expect(self, t: float) -> tuple[float, float, int] | None:
        """(expected, slot deviation, slot observations) at ``t``, None when the slot has no data. The expected value
        is the profile's plus the recent level correction (``offset``)."""
        pos = self.position(t)
        k = int(pos) % self.slots
        count = self.count
        if count[k] == 0:
            return None
        frac = pos - int(pos) - 0.5  # where t sits from the slot's centre, in slots
        other = (k + 1) % self.slots if frac >= 0 else (k - 1) % self.slots
        if count[other] > 0:
            w = abs(frac)
            expected = self.mean[k] + w * (self.mean[other] - self.mean[k])  # equal slots: exactly their mean
        else:
            expected = self.mean[k]
        ref = self.ref if self.ref is not None else 0.0  # (set with the first count)
        return ref + expected + self.offset, self.mad[k], count[k]

    def learn(self, t: float, value: float, raw: float, alpha_floor: float) -> None:
        """The slot's mean learns ``value`` (held to the band), its deviation the ``raw`` value's (held to 4× the
        slot's deviation: the spread is not shrunk by the holding, nor blown up by one incident). Both are kept to
        7 significant digits, relative to the profile's first value: the stored state is half the size, and what
        is stored is exactly what the fold computed with."""
        k = int(self.position(t)) % self.slots
        c = self.count[k] + 1
        self.count[k] = c
        if self.ref is None:
            self.ref = value
        ref = self.ref
        mean = self.mean[k]
        if c > 1:
            deviation = abs(raw - ref - mean)
            mad = self.mad[k]
            if c > 2 and deviation > 4.0 * mad:
                deviation = 4.0 * mad
            beta = 1.0 / (c - 1)
            self.mad[k] = _digits(mad + (beta if beta > alpha_floor else alpha_floor) * (deviation - mad))
        alpha = 1.0 / c
        if alpha < alpha_floor:
            alpha = alpha_floor
        self.mean[k] = _digits(mean + alpha * (value - ref - mean))

    def track(self, error: float, residual: float, alpha: float, offset_alpha: float) -> None:
        """After a prediction: its absolute error (the raw value's), and the level correction (value − profile,
        the value held to the band, smoothed)."""
        self.err = track_error(self.err, error, alpha)
        self.offset += offset_alpha * residual


class Seasonal:
    name = "seasonal"

    def __init__(
        self, settings: Mapping[str, Any], state: dict[str, Any] | None, *, with_fallback: bool = True
    ) -> None:
        self.deviations = float(settings["deviations"])
        self.offset_alpha = 2.0 / (int(settings["window"]) + 1)
        self.season = settings.get("season", "auto")
        # robust until the profile has its history (auto has its own rolling baseline: no second window there)
        self.fallback = Robust(settings, state.get("r") if state else None) if with_fallback else None
        self.daily = (
            Profile(DAY, DAILY_SLOTS, state.get("day") if state else None) if self.season in ("auto", "daily") else None
        )
        self.weekly = (
            Profile(WEEK, WEEKLY_SLOTS, state.get("week") if state else None)
            if self.season in ("auto", "weekly")
            else None
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
            "r": self.fallback.dump() if self.fallback is not None else None,
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
        return self.fallback.predict(t) if self.fallback is not None else None

    def error_alpha(self) -> float:
        """The running errors remember about a day of points (between 20 and 1,000 points)."""
        alpha = self.dt / DAY if self.dt > 0 else 0.01
        return min(0.05, max(0.001, alpha))

    def alpha_floor(self, profile: Profile) -> float:
        """A slot's learning rate floor: about MEMORY_PERIODS periods of its points."""
        per_period = profile.slot_s / self.dt if self.dt > 0 else 1.0
        return 1.0 / (MEMORY_PERIODS * max(1.0, per_period))

    def update(self, t: float, value: float, lower: float | None, upper: float | None) -> None:
        if self.fallback is not None:
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
                error = abs(value - found[0])
                alpha = self.error_alpha()
                profile.track(error, learned - found[0], alpha, self.offset_alpha)
                if profile is self._profile or (self._profile is None and profile is self.daily):
                    self.resid = track_error(self.resid, error, alpha)
            profile.learn(t, learned, value, self.alpha_floor(profile))
        if not math.isfinite(self.resid):
            self.resid = -1.0
