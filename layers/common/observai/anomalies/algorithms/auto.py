"""auto: picks per series from the series' own history, says which and why, and may change its mind as the history
grows (deterministically: the choice depends on the points so far only).

It runs two candidates side by side on every point: level_shift (robust median and MAD, re-baselined after a
sustained shift) and the seasonal profiles (daily, and weekly with ``season: auto``). Each keeps the running mean
of its absolute one-step prediction error. The band comes from:

- ``seasonal`` once a profile has its ~3 periods of history and predicts clearly better than the rolling median
  (its error below 80% of the median's; once chosen, it stays while below 90%: no flapping);
- ``robust`` for a flat or quantised series (a MAD of 0 over the window: the minimum band does the work);
- ``level_shift`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observai.anomalies.algorithms.level_shift import LevelShift
from observai.anomalies.algorithms.seasonal import DAY, PERIODS_NEEDED, WEEK, Seasonal, track_error

PICK_SEASONAL = 0.8  # seasonal's error / the median's below this: seasonal
KEEP_SEASONAL = 0.9  # once seasonal, it stays while below this


class Auto:
    def __init__(self, settings: Mapping[str, Any], state: dict[str, Any] | None) -> None:
        self.rolling = LevelShift(settings, state.get("ls") if state else None)
        self.seasonal = (
            Seasonal(settings, state.get("se") if state else None, with_fallback=False)
            if settings.get("season") != "none"
            else None
        )
        self.rolling_err = float(state["err"]) if state else -1.0
        self.picked = str(state["picked"]) if state else "level_shift"
        self.name = self.picked
        self.reason = "auto: level_shift until the history says more"
        self._rolling_expected: float | None = None

    def dump(self) -> dict[str, Any]:
        return {
            "ls": self.rolling.dump(),
            "se": self.seasonal.dump() if self.seasonal else None,
            "err": self.rolling_err,
            "picked": self.picked,
        }

    def predict(self, t: float) -> tuple[float, float] | None:
        rolling = self.rolling.predict(t)
        self._rolling_expected = rolling[0] if rolling is not None else None
        seasonal = self.seasonal
        season_band = seasonal.predict_profile(t) if seasonal is not None else None
        if season_band is not None and seasonal is not None and seasonal._profile is not None:
            ratio = seasonal._profile.err / self.rolling_err if self.rolling_err > 0 else 1.0
            if seasonal._profile.err < 0:
                ratio = 1.0
            limit = KEEP_SEASONAL if self.picked == "seasonal" else PICK_SEASONAL
            if ratio < limit:
                self.picked = self.name = seasonal.name = "seasonal"  # the profile drew the band
                period = "weekly" if seasonal._profile.period == WEEK else "daily"
                self.reason = (
                    f"auto: seasonal ({period}): the {period} profile's error is {ratio:.0%} of the rolling median's"
                )
                return season_band
            why = f"the seasonal profile's error is {ratio:.0%} of the rolling median's"
        elif seasonal is None:
            why = "season is none"
        else:
            have = seasonal.history_periods(t, DAY)
            why = f"{have:.1f} of {PERIODS_NEEDED} days of history to judge seasonality"
        if seasonal is not None:
            seasonal.name = "robust"  # the profile learns the values as they come
        if rolling is not None and rolling[1] == 0.0:
            self.picked = self.name = "robust"
            self.reason = f"auto: robust: flat or quantised series (no spread over the window); {why}"
        else:
            self.picked = self.name = "level_shift"
            self.reason = f"auto: level_shift: {why}"
        return rolling

    def update(self, t: float, value: float, lower: float | None, upper: float | None) -> None:
        if self._rolling_expected is not None:
            alpha = self.seasonal.error_alpha() if self.seasonal is not None else 0.01
            self.rolling_err = track_error(self.rolling_err, abs(value - self._rolling_expected), alpha)
        self.rolling.update(t, value, lower, upper)
        if self.seasonal is not None:
            self.seasonal.update(t, value, lower, upper)
