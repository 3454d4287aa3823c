"""robust: the band is the rolling median ± ``deviations`` scaled MADs (1.4826 × MAD estimates the standard deviation
of normal noise) of the last ``window`` points. A spike moves neither the median nor the MAD, so the band does not
widen behind an outlier. Flat and quantised series have a MAD of 0: the fold's minimum band (min_band_abs,
min_band_rel × |level| and the series' quantisation step) keeps them from flooding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observai.anomalies.algorithms.window import Window

MAD_TO_SIGMA = 1.4826


class Robust:
    name = "robust"

    def __init__(self, settings: Mapping[str, Any], state: dict[str, Any] | None) -> None:
        self.window = Window(settings["window"], state.get("w") if state else None, keep_sorted=True)
        self.deviations = float(settings["deviations"])
        self.reason = "robust: chosen in the settings"

    def dump(self) -> dict[str, Any]:
        return {"w": self.window.dump()}

    def predict(self, t: float) -> tuple[float, float] | None:
        w = self.window
        if len(w) < 2:
            return None
        median = w.median()
        return median, self.deviations * MAD_TO_SIGMA * w.mad(median)

    def update(self, t: float, value: float, lower: float | None, upper: float | None) -> None:
        self.window.push(value)
