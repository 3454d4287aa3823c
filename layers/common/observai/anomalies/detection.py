"""The one detection code path, shared by the detect-anomalies job and the backtest: a causal fold over a series'
points. ``score_points(settings, state, points)`` scores the points in order from a series' state (None: a new
series) and returns each point's step and the state after the last one. The job stores the state between runs;
the backtest starts from None. So scoring points in one call or in several (resuming from the returned state) gives
the same steps: the score of point i depends only on points 0..i.

The state is compact and JSON-serialisable (running sums, small ring buffers, per-slot seasonal profiles), never the
history: a run's cost grows with the number of series, not with their age.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ScoredPoint:
    """One point after scoring. ``expected``, ``lower`` and ``upper`` are the band (None while warming up);
    ``score`` in [0, 1] says how far outside the band the point is, squashed, so one threshold means the same on
    every series; ``is_anomaly`` is the trigger rule's verdict at this point (a fraction of the recent points outside
    the band, recovering after the recovery window), not the point's alone; ``algorithm`` the one that scored it."""

    time: datetime
    value: float
    expected: float | None
    lower: float | None
    upper: float | None
    score: float
    is_anomaly: bool
    algorithm: str


@dataclass(frozen=True)
class Scored:
    points: list[ScoredPoint]
    state: dict[str, Any]  # to store, and to pass to the next call
    algorithm: str  # what scored the last point (auto: what it picked)
    algorithm_reason: str  # why (auto's choice, or a fallback such as "seasonal: 1.2 of 3 periods of history")
    warmup_points: int  # how many of these points were scored before the baseline was warm


def score_points(
    settings: Mapping[str, Any], state: Mapping[str, Any] | None, points: Sequence[tuple[datetime, float]]
) -> Scored:
    """Score ``points`` (time ascending, finite values) from ``state``. ``settings`` is a validated
    DetectorSettings' ``model_dump()``."""
    from observai.anomalies.algorithms import fold

    return fold(settings, state, points)
