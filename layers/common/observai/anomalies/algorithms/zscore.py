"""zscore: the band is the rolling mean ± ``deviations`` standard deviations of the last ``window`` points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observai.anomalies.algorithms.window import Window


class ZScore:
    name = "zscore"

    def __init__(self, settings: Mapping[str, Any], state: dict[str, Any] | None) -> None:
        self.window = Window(settings["window"], state.get("w") if state else None)
        self.deviations = float(settings["deviations"])
        self.reason = "zscore: chosen in the settings"

    def dump(self) -> dict[str, Any]:
        return {"w": self.window.dump()}

    def predict(self, t: float) -> tuple[float, float] | None:
        """(expected, half-width) from the points so far; None before two points."""
        w = self.window
        if len(w) < 2:
            return None
        return w.mean, self.deviations * w.stdev()

    def update(self, t: float, value: float, lower: float | None, upper: float | None) -> None:
        self.window.push(value)
