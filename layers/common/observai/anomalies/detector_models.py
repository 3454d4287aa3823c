"""What the anomaly detectors API takes and returns: detectors, their bands and series, anomaly events and correlated
anomaly groups.

A detector's ``query`` is a metric query as the query API spells it, validated with that API's own types
(``observai.metrics.query_models``: metric name, filters, aggregation, group_by), so a bad filter is the same 422 at
``["body", "query", "filters", 0, "value"]``; its ``settings`` are ``DetectorSettings`` (a bad one: 422 at
``["body", "settings", "window"]``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from observai.anomalies.settings_models import DetectorSettings
from observai.metrics.query_models import (
    MAX_FILTERS,
    MAX_GROUP_BY,
    Aggregation,
    AttributeKey,
    MetricName,
    QueryFilter,
    distinct_keys,
)
from observai.patch_models import refuse_null, require_a_field

MIN_INTERVAL_S = 60
MAX_INTERVAL_S = 86400

DetectorName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
IntervalS = Annotated[
    int,
    Field(
        ge=MIN_INTERVAL_S,
        le=MAX_INTERVAL_S,
        description="Step of the watched series in seconds: whole minutes, 60 (1 min) to 86400 (1 day)",
    ),
]
EventStatus = Literal["open", "closed"]


# A detector watches at most this many metric series (its query's matches, before group_by): detect-anomalies
# pages through them (observai.anomalies.job), the API refuses a query matching more (422 too_many_series).
MAX_SERIES_PER_DETECTOR = 10_000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


def _whole_minutes(interval_s: int | None) -> int | None:
    if interval_s is not None and interval_s % 60:
        raise ValueError("interval_s is whole minutes (a multiple of 60: the rollups' resolution)")
    return interval_s


class DetectorQuery(_In):
    """The watched metric query: one baseline per series it yields (one per ``group_by`` combination)."""

    name: MetricName = Field(description="The metric name")
    filters: list[QueryFilter] = Field(default_factory=list, max_length=MAX_FILTERS)
    aggregation: Aggregation = "avg"
    group_by: list[AttributeKey] = Field(default_factory=list, max_length=MAX_GROUP_BY)

    _group_by = field_validator("group_by")(distinct_keys)


class DetectorIn(_In):
    """A new detector."""

    name: DetectorName
    description: Description = ""
    query: DetectorQuery
    interval_s: IntervalS = 60
    settings: DetectorSettings = Field(default_factory=DetectorSettings)
    enabled: bool = True

    _interval = field_validator("interval_s")(_whole_minutes)


class DetectorPatch(_In):
    """Change some fields; those left out keep their value. A new query, settings or interval_s resets the
    detector's baselines (see docs/anomalies-api.md)."""

    name: DetectorName | None = None
    description: Description | None = None
    query: DetectorQuery | None = None
    interval_s: IntervalS | None = None
    settings: DetectorSettings | None = None
    enabled: bool | None = None

    _interval = field_validator("interval_s")(_whole_minutes)
    _not_null = refuse_null("name", "description", "query", "interval_s", "settings", "enabled")
    _something = require_a_field()


class Detector(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    project_id: UUID
    name: str
    description: str
    query: dict[str, Any]
    interval_s: int
    settings: dict[str, Any]
    enabled: bool
    processed_until: datetime | None = Field(description="Every step before this instant has been scored")
    last_run_at: datetime | None
    last_error: str | None
    series: int = Field(description="How many series the detector keeps a baseline for")
    anomalous_series: int = Field(description="How many of them are anomalous now")
    series_matched: int | None = Field(
        default=None,
        description="How many metric series the query matched when the job last started a pass over them (before"
        " group_by; null: not run yet). A detector watches at most series_limit",
    )
    series_limit: int = Field(
        default=MAX_SERIES_PER_DETECTOR, description="The most metric series one detector's query may match"
    )
    created_at: datetime
    updated_at: datetime


class DetectorDeleted(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    deleted: bool = True


class BandPoint(BaseModel):
    """One scored step: the band (null while warming up), the actual value, the score in [0, 1] and the trigger
    rule's verdict."""

    model_config = ConfigDict(defer_build=True)

    time: datetime
    actual: float
    expected: float | None
    lower: float | None
    upper: float | None
    score: float
    is_anomaly: bool
    provisional: bool = Field(
        default=False,
        description="Scored from the raw points of a step still open (or not settled yet): scored again, final,"
        " by the run after it settles",
    )


class SeriesBands(BaseModel):
    model_config = ConfigDict(defer_build=True)
    series_id: int
    labels: dict[str, Any]
    points: list[BandPoint]


class DetectorSeries(BaseModel):
    """One series of a detector: its labels, the algorithm that scores it and why, whether it is anomalous now."""

    model_config = ConfigDict(defer_build=True)

    id: int
    detector_id: UUID
    labels: dict[str, Any]
    algorithm: str | None
    algorithm_reason: str | None
    anomalous: bool
    last_time: datetime | None = Field(description="The last scored point's time")
    updated_at: datetime


class AnomalyEvent(BaseModel):
    """A stretch of time one series spent anomalous: open until it recovers."""

    model_config = ConfigDict(defer_build=True)

    id: UUID
    project_id: UUID
    detector_id: UUID
    detector_name: str | None
    series_id: int
    group_id: UUID | None = Field(description="The correlated anomaly group it belongs to")
    status: EventStatus
    started_at: datetime
    ended_at: datetime | None
    peak_score: float
    peak_at: datetime
    expected_at_peak: float | None
    actual_at_peak: float
    direction: Literal["above", "below"] | None
    algorithm: str
    labels: dict[str, Any]
    metric: str | None = Field(description="The detector's metric name")
    created_at: datetime
    updated_at: datetime


class AnomalyGroup(BaseModel):
    """Anomalies of one project overlapping in time and sharing labels, across detectors: one incident's worth."""

    model_config = ConfigDict(defer_build=True)

    id: UUID
    project_id: UUID
    status: EventStatus
    started_at: datetime
    ended_at: datetime | None
    shared_labels: dict[str, Any]
    opening_labels: dict[str, Any] = Field(
        description="The labels the group shared when it opened: they never narrow (an anomaly rule's alert has them)"
    )
    reason: str
    peak_score: float
    members: list[AnomalyEvent]
    created_at: datetime
    updated_at: datetime
