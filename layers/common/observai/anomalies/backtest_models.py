"""The backtest's request and response: a detector's settings and a series' points in; per point, the score, the
verdict and the band out (the same fold as the detect-anomalies job: observai.anomalies.detection)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from observai.anomalies.settings_models import DetectorSettings
from observai.timetext import AwareDateTimeText

MAX_POINTS = 50_000  # the response (five numbers a point) stays within Lambda's 6 MB
MAX_BODY_BYTES = 4 * 1024 * 1024  # 50,000 points of generous JSON; API Gateway itself takes 10 MB


class BacktestPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    time: AwareDateTimeText
    value: Annotated[float, Field(strict=True, allow_inf_nan=False)]


class BacktestIn(BaseModel):
    """``points`` in ascending time order (strictly: one value per time), finite values."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    detector: DetectorSettings
    points: Annotated[list[BacktestPoint], Field(min_length=1)]  # at most MAX_POINTS: 413 beyond


class BacktestResult(BaseModel):
    """One entry per point, in order. ``expected``, ``lower`` and ``upper`` are null while the series warms up
    (the first ``warmup_points``). ``algorithm`` is what scored the last point (auto: what it picked) and
    ``algorithm_reason`` why; ``algorithms`` the same per point."""

    model_config = ConfigDict(defer_build=True)

    scores: list[float]
    is_anomaly: list[bool]
    expected: list[float | None]
    lower: list[float | None]
    upper: list[float | None]
    algorithms: list[str]
    algorithm: str
    algorithm_reason: str
    warmup_points: int
