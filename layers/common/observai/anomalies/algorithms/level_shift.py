"""level_shift (agile): the robust band (rolling median ± scaled MADs) that re-baselines after a sustained shift.

When ``hold`` points in a row leave the band on the same side, the series has moved to a new level: the window
forgets everything but those points, so the band follows the new level at once instead of after half a window (the
robust median needs window/2 points of the new level). Until the window fills again, the band's spread is at least
the spread measured before the shift, so a handful of points cannot make it too narrow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observai.anomalies.algorithms.robust import MAD_TO_SIGMA
from observai.anomalies.algorithms.window import Window


def hold_for(settings: Mapping[str, Any]) -> int:
    """Points in a row outside the band, on one side, that make a shift sustained."""
    return max(5, int(settings["trigger_window"]), int(settings["window"]) // 12)


class LevelShift:
    name = "level_shift"

    def __init__(self, settings: Mapping[str, Any], state: dict[str, Any] | None) -> None:
        self.window = Window(settings["window"], state.get("w") if state else None, keep_sorted=True)
        self.deviations = float(settings["deviations"])
        self.hold = hold_for(settings)
        self.run = int(state["run"]) if state else 0  # points in a row outside; the sign is the side
        self.scale = float(state["scale"]) if state else 0.0  # the spread before the last shift
        self.shifts = int(state["shifts"]) if state else 0
        self.reason = "level_shift: chosen in the settings"

    def dump(self) -> dict[str, Any]:
        return {"w": self.window.dump(), "run": self.run, "scale": self.scale, "shifts": self.shifts}

    def spread(self) -> float:
        w = self.window
        median = w.median()
        sigma = MAD_TO_SIGMA * w.mad(median)
        if len(w) < w.size // 2 and self.scale > sigma:
            sigma = self.scale
        return sigma

    def predict(self, t: float) -> tuple[float, float] | None:
        w = self.window
        if len(w) < 2:
            return None
        return w.median(), self.deviations * self.spread()

    def update(self, t: float, value: float, lower: float | None, upper: float | None) -> None:
        w = self.window
        if lower is None or upper is None:
            self.run = 0
        elif value > upper:
            self.run = self.run + 1 if self.run > 0 else 1
        elif value < lower:
            self.run = self.run - 1 if self.run < 0 else -1
        else:
            self.run = 0
        if abs(self.run) >= self.hold:
            self.scale = self.spread()
            w.push(value)
            w.keep_last(self.hold)
            self.run = 0
            self.shifts += 1
        else:
            w.push(value)
