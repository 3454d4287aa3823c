"""Response models of the logs API: log lines, the severity histogram and a line's context."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from observai.logs.query_language import LEVELS


def level_of(severity_number: int) -> str:
    """The OTel level name of a SeverityNumber: 0 unspecified, 1-4 trace, 5-8 debug, … 21-24 fatal."""
    return LEVELS[min(max((severity_number + 3) // 4, 0), len(LEVELS) - 1)]


class LogItem(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: str = Field(description="The line's id (decimal string): the handle of the context route")
    time: datetime
    observed_time: datetime | None = None
    severity: str = Field(description="Level from severity_number: unspecified, trace, debug, info, warn, error, fatal")
    severity_number: int = Field(description="OTel SeverityNumber, 0 to 24")
    severity_text: str | None = None
    service: str | None = None
    body: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    trace_id: str | None = None
    span_id: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LogItem:
        return cls(
            id=str(row["id"]),
            time=row["time"],
            observed_time=row["observed_time"],
            severity=level_of(row["severity_number"]),
            severity_number=row["severity_number"],
            severity_text=row["severity_text"],
            service=row["service"],
            body=row["body"],
            attributes=row["attributes"],
            resource=row["resource"],
            trace_id=row["trace_id"],
            span_id=row["span_id"],
        )


class LevelCounts(BaseModel):
    model_config = ConfigDict(defer_build=True)
    unspecified: int = 0
    trace: int = 0
    debug: int = 0
    info: int = 0
    warn: int = 0
    error: int = 0
    fatal: int = 0


class HistogramBucket(BaseModel):
    model_config = ConfigDict(defer_build=True)
    start: datetime = Field(description="Start of the bucket (inclusive); it lasts bucket_seconds")
    total: int
    counts: LevelCounts


class LogHistogram(BaseModel):
    model_config = ConfigDict(defer_build=True)
    start: datetime = Field(description="Start of the first bucket (the range start, aligned down to a bucket)")
    end: datetime = Field(description="End of the range (exclusive)")
    bucket_seconds: int
    total: int
    counts: LevelCounts = Field(description="Totals per level over the whole range")
    buckets: list[HistogramBucket]
    exact: bool = Field(
        default=True,
        description="False when the counts are estimates: a free-text query matching very many lines is counted on"
        " an even sample of each bucket's time (sample_fraction of it) and scaled up; narrow the range for exact"
        " counts",
    )
    sample_fraction: float | None = Field(
        default=None, description="The share of each bucket's time counted, when exact is false"
    )


class LogContext(BaseModel):
    model_config = ConfigDict(defer_build=True)
    log: LogItem
    before: list[LogItem] = Field(description="Earlier lines of the same service, oldest first")
    after: list[LogItem] = Field(description="Later lines of the same service, oldest first")
