"""The detection algorithms and their fold (observai.anomalies.detection.score_points).

Each algorithm (one module each: zscore, robust, seasonal, level_shift, auto) answers two questions in order for
every point: ``predict(t)``, the expected value and the band's half-width from the points before this one (None while
it cannot tell yet), then ``update(t, value)``. The fold does the rest, the same for all of them:

- the minimum band: half-width ≥ max(min_band_abs, min_band_rel × |expected|, the series' quantisation step);
- warm-up: the first ``warmup`` points of a series have no band, score 0 and are never anomalous;
- the score in [0, 1]: 0 inside the band (or outside on a side ``direction`` does not watch), else
  1 − exp(−d) where d is the distance beyond the band in half-widths (d = 1: twice as far out as the band is wide:
  0.63; d = 3: 0.95);
- the trigger rule: anomalous once at least ``trigger_fraction`` of the last ``trigger_window`` points are outside
  (on a watched side); recovers after ``recovery_window`` points in a row back inside.

Causal and deterministic: a point's band comes from the points before it, its verdict from it and them; the state
(JSON: floats, small lists) is all that is carried, so scoring in one call or in several resuming from the returned
state gives the same floats. See docs/anomalies.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from observai.anomalies.algorithms.window import clamp

if TYPE_CHECKING:
    from observai.anomalies.detection import Scored

STATE_VERSION = 1
# The settings that shape an algorithm's state: another value starts the baseline again.
_SHAPING = ("algorithm", "window", "season")
_KEYS = (
    "algorithm",
    "window",
    "deviations",
    "direction",
    "min_band_abs",
    "min_band_rel",
    "warmup",
    "trigger_fraction",
    "trigger_window",
    "recovery_window",
    "season",
)


def _algorithm_class(name: str) -> Any:
    if name == "zscore":
        from observai.anomalies.algorithms.zscore import ZScore

        return ZScore
    if name == "robust":
        from observai.anomalies.algorithms.robust import Robust

        return Robust
    if name == "seasonal":
        from observai.anomalies.algorithms.seasonal import Seasonal

        return Seasonal
    if name == "level_shift":
        from observai.anomalies.algorithms.level_shift import LevelShift

        return LevelShift
    if name == "auto":
        from observai.anomalies.algorithms.auto import Auto

        return Auto
    raise ValueError(f"unknown algorithm {name!r}")


def _epoch(time: datetime) -> float:
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return time.timestamp()


def fold(
    settings: Mapping[str, Any], state: Mapping[str, Any] | None, points: Sequence[tuple[datetime, float]]
) -> Scored:
    from observai.anomalies.detection import Scored, ScoredPoint

    if any(key not in settings for key in _KEYS):  # stored before a setting existed: its default
        from observai.anomalies.settings_models import default_settings

        settings = {**default_settings(), "warmup": None, **settings}  # warmup: the window
    shape = [settings[key] for key in _SHAPING]
    if not state or state.get("v") != STATE_VERSION or state.get("shape") != shape:
        state = None
    algorithm = _algorithm_class(settings["algorithm"])(settings, state.get("a") if state else None)

    warmup = int(settings["warmup"] if settings.get("warmup") is not None else settings["window"])
    watch_above = settings["direction"] in ("above", "both")
    watch_below = settings["direction"] in ("below", "both")
    min_abs = float(settings["min_band_abs"])
    min_rel = float(settings["min_band_rel"])
    trigger_window = int(settings["trigger_window"])
    needed = math.ceil(float(settings["trigger_fraction"]) * trigger_window - 1e-9)
    recovery_window = int(settings["recovery_window"])

    if state:
        seen = int(state["n"])
        quantum = state["q"]
        last_value = state["last"]
        recent = [bool(flag) for flag in state["recent"]][-trigger_window:]
        anomalous = bool(state["anomalous"])
        inside_run = int(state["inside_run"])
    else:
        seen = 0
        quantum = None
        last_value = None
        recent = []
        anomalous = False
        inside_run = 0
    outside_count = sum(recent)

    out: list[ScoredPoint] = []
    append = out.append
    warmup_points = 0
    name = algorithm.name
    for time, raw in points:
        value = float(raw)
        t = _epoch(time)
        x = clamp(value)
        prediction = algorithm.predict(t)
        name = algorithm.name
        if seen < warmup or prediction is None:
            warmup_points += 1
            lower = upper = None
            append(ScoredPoint(time, value, None, None, None, 0.0, False, name))
        else:
            expected, half = prediction
            floor = min_rel * abs(expected)
            if floor < 1e-12 * abs(expected):  # rounding is never an anomaly
                floor = 1e-12 * abs(expected)
            if min_abs > floor:
                floor = min_abs
            if quantum is not None and quantum > floor:
                floor = quantum
            if not half >= floor:  # also replaces a NaN half-width
                half = floor
            lower = expected - half
            upper = expected + half
            if watch_above and x > upper:
                excess = x - upper
            elif watch_below and x < lower:
                excess = lower - x
            else:
                excess = 0.0
            if excess > 0.0:
                score = 1.0 - math.exp(-excess / half) if half > 0.0 else 1.0
                outside = True
            else:
                score = 0.0
                outside = False
            # the trigger rule
            recent.append(outside)
            outside_count += outside
            if len(recent) > trigger_window:
                outside_count -= recent.pop(0)
            if anomalous:
                inside_run = 0 if outside else inside_run + 1
                if inside_run >= recovery_window:
                    anomalous = False
                    inside_run = 0
            elif outside_count >= needed:
                anomalous = True
                inside_run = 0
            append(ScoredPoint(time, value, expected, lower, upper, score, anomalous, name))
        algorithm.update(t, x, lower, upper)
        seen += 1
        if last_value is not None:
            step = abs(x - last_value)
            if step > 0.0 and (quantum is None or step < quantum):
                quantum = step
        last_value = x

    new_state = {
        "v": STATE_VERSION,
        "shape": shape,
        "n": seen,
        "q": quantum,
        "last": last_value,
        "recent": [int(flag) for flag in recent],
        "anomalous": anomalous,
        "inside_run": inside_run,
        "a": algorithm.dump(),
    }
    return Scored(
        points=out,
        state=new_state,
        algorithm=name,
        algorithm_reason=algorithm.reason,
        warmup_points=warmup_points,
    )
