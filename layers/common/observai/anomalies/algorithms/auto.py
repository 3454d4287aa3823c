"""auto: picks per series from the series' own history, says which and why, and may change its mind as the history
grows (deterministically: the choice depends on the points so far only).

It runs two candidates side by side on every point: level_shift (robust median and MAD, re-baselined after a
sustained shift) and the seasonal profiles (daily, and weekly with ``season: auto``). Each keeps the running mean
of its absolute one-step prediction error. The band comes from:

- ``seasonal`` once a profile has its ~3 periods of history and predicts clearly better than the rolling median
  (its error below 80% of the median's; once chosen, it stays while below 90%: no flapping);
- ``robust`` for a flat or quantised series (a MAD of 0 over the window: the minimum band does the work);
- ``level_shift`` otherwise.

And a drift test beside them, for a slow leak no rolling band sees (the band follows the level as it creeps): a
long-run level (an exponential average of the rolling median over ``DRIFT_SPAN`` windows) against the rolling median.
When they are apart by more than the band's half-width (``deviations`` spreads, and the minimum band) and by more
than ``DRIFT_NOVELTY`` times the largest gap the series has shown before (decaying slowly: a daily cycle, or an
earlier drift, makes the gap ordinary), the point's band is drawn around the long-run level instead, named
``drift`` with its own reason, once: not again until the gap is back inside the band (a leak is announced once, not
on every point that follows), and the gaps of that excursion become ordinary (a daily cycle seen as a drift once is
not again).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observai.anomalies.algorithms.level_shift import LevelShift
from observai.anomalies.algorithms.seasonal import DAY, PERIODS_NEEDED, WEEK, Seasonal, track_error

PICK_SEASONAL = 0.8  # seasonal's error / the median's below this: seasonal
KEEP_SEASONAL = 0.9  # once seasonal, it stays while below this
DRIFT_SPAN = 8  # windows: the long-run level's horizon (an exponential average over about this many windows)
DRIFT_NOVELTY = 1.5  # a drift's gap exceeds the largest gap seen before by this factor
DRIFT_MEMORY = 4  # the largest gap seen decays over about this many spans
DRIFT_BAND = 0.25  # the drift band: this fraction of the test half-width around the long-run level


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
        # the drift test: the long-run level, its points, the largest ordinary gap (in spreads), and whether the
        # current gap was announced (not again until the gap is back inside the band)
        drift = state.get("dr") if state else None
        self.drift_level, self.drift_n, self.drift_max, self.drift_told, self.drift_sigma = (
            (float(drift[0]), int(drift[1]), float(drift[2]), bool(drift[3]), float(drift[4]))
            if drift
            else (0.0, 0, 0.0, False, 0.0)
        )
        span = DRIFT_SPAN * int(settings["window"])
        self._drift_alpha = 1.0 / span
        self._drift_decay = 1.0 - 1.0 / (DRIFT_MEMORY * span)
        self._drift_span = span
        self._deviations = float(settings["deviations"])
        self._min_abs = float(settings.get("min_band_abs") or 0.0)
        self._min_rel = float(settings.get("min_band_rel") or 0.0)
        self._drifted = False
        self._gap = 0.0
        self._over = False
        self._sigma = 0.0

    def dump(self) -> dict[str, Any]:
        return {
            "ls": self.rolling.dump(),
            "se": self.seasonal.dump() if self.seasonal else None,
            "err": self.rolling_err,
            "picked": self.picked,
            "dr": [self.drift_level, self.drift_n, self.drift_max, int(self.drift_told), self.drift_sigma],
        }

    def predict(self, t: float) -> tuple[float, float] | None:
        self._drifted, self._gap, self._over, self._sigma = False, 0.0, False, 0.0
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
        drifted = self._drift(rolling)
        if drifted is not None:
            return drifted
        return rolling

    def _drift(self, rolling: tuple[float, float] | None) -> tuple[float, float] | None:
        """The long-run level's band when the rolling median has crept away from it (see the module)."""
        if rolling is None or self.drift_n == 0:
            return None
        median, half = rolling
        level = self.drift_level
        gap = abs(median - level)
        self._sigma = sigma = half / self._deviations if self._deviations > 0 else 0.0
        # the spread the long run has seen (a creeping level widens the rolling spread as it goes)
        if 0.0 < self.drift_sigma < sigma:
            sigma = self.drift_sigma
            half = self._deviations * sigma
        floor = max(self._min_abs, self._min_rel * abs(level), 1e-12 * abs(level))
        spreads = gap / max(sigma, floor / max(self._deviations, 1.0), 1e-300)
        self._gap = spreads
        self._over = gap > max(half, floor)
        if (
            self.drift_n < self._drift_span
            or not self._over
            or self.drift_told
            or spreads <= DRIFT_NOVELTY * self.drift_max
        ):
            return None
        self._drifted = True
        self.name = "drift"
        direction = "up" if median > level else "down"
        self.reason = (
            f"auto: drift: the level crept {direction} {spreads:.1f} spreads from its long-run level"
            f" ({level:.6g}) over the last {self._drift_span} points"
        )
        # around the long-run level, narrower than the test's half-width (never than the fold's minimum band)
        return level, DRIFT_BAND * max(half, floor)

    def update(self, t: float, value: float, lower: float | None, upper: float | None) -> None:
        if self._rolling_expected is not None:
            alpha = self.seasonal.error_alpha() if self.seasonal is not None else 0.01
            self.rolling_err = track_error(self.rolling_err, abs(value - self._rolling_expected), alpha)
        self.rolling.update(t, value, lower, upper)
        if self.seasonal is not None:
            self.seasonal.update(t, value, lower, upper)
        self._drift_update(value)

    def _drift_update(self, value: float) -> None:
        level = self._rolling_expected if self._rolling_expected is not None else value
        if self.drift_n == 0:
            self.drift_level, self.drift_n = level, 1
            return
        if self._drifted:
            self.drift_told = True  # announced: not again until the gap is back inside the band
        elif not self._over:
            self.drift_told = False
        if self.drift_told:  # the whole announced excursion becomes ordinary (a cycle's swing, seen once)
            self.drift_max = max(self.drift_max, self._gap)
        self.drift_level += self._drift_alpha * (level - self.drift_level)
        if self._sigma > 0.0:
            if self.drift_sigma > 0.0:
                self.drift_sigma += self._drift_alpha * (self._sigma - self.drift_sigma)
            else:
                self.drift_sigma = self._sigma
        self.drift_n += 1
        # the largest ordinary gap (inside the band): a gap creeping past the band is measured against it
        self.drift_max *= self._drift_decay
        if not self._over and self._gap > self.drift_max:
            self.drift_max = self._gap
