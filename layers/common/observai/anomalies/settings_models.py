"""A detector's settings: which algorithm draws the band, how wide, which side counts, and the trigger rule.

Validated where they enter (the detector CRUD and the backtest): a bad value is a 422 naming the field
(``["body", "settings", "window"]``). The fold (observai.anomalies.algorithms) reads ``model_dump()``: every field
has a concrete value there (``warmup`` defaults to ``window``). See docs/anomalies.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ALGORITHMS = ("zscore", "robust", "seasonal", "level_shift", "auto")
Algorithm = Literal["zscore", "robust", "seasonal", "level_shift", "auto"]
Direction = Literal["above", "below", "both"]
Season = Literal["auto", "daily", "weekly", "none"]

MIN_WINDOW = 10
MAX_WINDOW = 10_080  # a week of 1-minute points
MAX_WARMUP = 100_000
MAX_TRIGGER_WINDOW = 1_000
MAX_RECOVERY_WINDOW = 10_000

# Strict: JSON numbers only ("3" is refused); an integer is fine where a float is expected, never a bool.
_Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_Int = Annotated[int, Field(strict=True)]


class DetectorSettings(BaseModel):
    """How a detector scores a series. ``window`` points make the rolling baseline; the band is ``deviations``
    spreads wide around the expected value, never narrower than ``min_band_abs`` nor ``min_band_rel`` × |expected|
    (nor the series' own quantisation step); a point is outside when it leaves the band on a watched side
    (``direction``). The series is anomalous when at least ``trigger_fraction`` of the last ``trigger_window`` points
    are outside, and recovers after ``recovery_window`` points in a row back inside. The first ``warmup`` points of a
    series have no band and are never anomalous."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    algorithm: Algorithm = Field(
        default="auto", description="zscore, robust, seasonal, level_shift, or auto (picks per series from its history)"
    )
    window: Annotated[_Int, Field(ge=MIN_WINDOW, le=MAX_WINDOW)] = Field(
        default=60, description="points in the rolling baseline (10 to 10,080)"
    )
    deviations: Annotated[_Float, Field(ge=0.5, le=20)] = Field(
        default=3.0,
        description="the band's half-width in spreads (standard deviations, or scaled MADs): the sensitivity",
    )
    direction: Direction = Field(default="both", description="which side of the band counts: above, below or both")
    min_band_abs: Annotated[_Float, Field(ge=0, le=1e15)] = Field(
        default=0.0, description="the band's half-width is at least this, in the series' unit"
    )
    min_band_rel: Annotated[_Float, Field(ge=0, le=10)] = Field(
        default=0.05, description="the band's half-width is at least this fraction of |expected|"
    )
    warmup: Annotated[_Int, Field(ge=2, le=MAX_WARMUP)] | None = Field(
        default=None, description="points before a series has a band (default: window)"
    )
    trigger_fraction: Annotated[_Float, Field(gt=0, le=1)] = Field(
        default=0.5, description="anomalous when at least this fraction of the last trigger_window points are outside"
    )
    trigger_window: Annotated[_Int, Field(ge=1, le=MAX_TRIGGER_WINDOW)] = Field(
        default=3, description="points the trigger rule looks back over"
    )
    recovery_window: Annotated[_Int, Field(ge=1, le=MAX_RECOVERY_WINDOW)] = Field(
        default=5, description="points in a row back inside the band before an anomalous series recovers"
    )
    season: Season = Field(
        default="auto", description="the seasonal algorithm's period: daily, weekly, auto (from the history) or none"
    )

    @model_validator(mode="after")
    def _warmup_defaults_to_window(self) -> DetectorSettings:
        if self.warmup is None:
            self.warmup = self.window
        return self


_DEFAULTS: dict[str, Any] = {}


def default_settings() -> dict[str, Any]:
    """The defaults as the fold reads them (a copy)."""
    if not _DEFAULTS:
        _DEFAULTS.update(DetectorSettings().model_dump())
    return dict(_DEFAULTS)
