"""What the exports API takes and returns."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from observai.timetext import AwareDateTimeText

Signal = Literal["logs", "spans"]
ExportStatus = Literal["queued", "running", "succeeded", "failed"]
SpanStatus = Literal["unset", "ok", "error"]

MAX_RANGE = timedelta(days=31)  # the longest plan retention is 90 days; one export covers a month at most
MAX_QUERY_LENGTH = 2000
MAX_FILTER_LENGTH = 512
FORMAT: Literal["ndjson.gz"] = "ndjson.gz"


class SpanFilters(BaseModel):
    """Equality filters on spans (all optional; every one given must match)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    service: str | None = Field(default=None, min_length=1, max_length=MAX_FILTER_LENGTH)
    name: str | None = Field(default=None, min_length=1, max_length=MAX_FILTER_LENGTH, description="Span name")
    status: SpanStatus | None = Field(default=None, description="Span status code")


class ExportRequest(BaseModel):
    """An export of ``signal`` rows whose time (logs) or start time (spans) is in [from, to)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
    signal: Signal
    from_: AwareDateTimeText = Field(alias="from", description="RFC 3339 start (inclusive)")
    to: AwareDateTimeText = Field(description=f"RFC 3339 end (exclusive); at most {MAX_RANGE.days} days after from")
    query: str = Field(
        default="",
        max_length=MAX_QUERY_LENGTH,
        description="Logs only: a logs query (the language of GET /logs); empty exports every line",
    )
    service: str | None = Field(default=None, min_length=1, max_length=MAX_FILTER_LENGTH, description="Spans only")
    name: str | None = Field(default=None, min_length=1, max_length=MAX_FILTER_LENGTH, description="Spans only")
    status: SpanStatus | None = Field(default=None, description="Spans only: the span status code")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.to <= self.from_:
            raise ValueError("to must be after from")
        if self.to - self.from_ > MAX_RANGE:
            raise ValueError(f"the range is at most {MAX_RANGE.days} days")
        if self.signal == "spans" and self.query.strip():
            raise ValueError("query applies to logs; filter spans with service, name and status")
        if self.signal == "logs" and (self.service or self.name or self.status):
            raise ValueError("service, name and status filter spans; filter logs with query")
        return self

    def span_filters(self) -> SpanFilters:
        return SpanFilters(service=self.service, name=self.name, status=self.status)


class ExportInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    project_id: UUID
    signal: Signal
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    query: str
    filters: SpanFilters
    status: ExportStatus
    format: Literal["ndjson.gz"] = FORMAT
    row_count: int | None = Field(default=None, description="Rows written (when succeeded)")
    bytes: int | None = Field(default=None, description="Size of the gzip file (when succeeded)")
    error: str | None = Field(default=None, description="Why it failed (when failed)")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = Field(default=None, description="When the file is deleted")
    download_url: str | None = Field(
        default=None, description="Pre-signed GET URL of the file (succeeded and not expired; on GET of one export)"
    )
    download_url_expires_at: datetime | None = None
