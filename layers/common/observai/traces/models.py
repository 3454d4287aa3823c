"""Response models of the traces API: one trace (spans in tree order, summary, correlated logs), trace search
rows, and per-service request statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SpanKind = Literal["internal", "server", "client", "producer", "consumer"]
StatusCode = Literal["unset", "ok", "error"]


class TraceSpan(BaseModel):
    model_config = ConfigDict(defer_build=True)
    span_id: str
    parent_span_id: str | None
    depth: int = Field(description="0 for a root; a child is one deeper than its parent")
    orphan: bool = Field(description="True when the span names a parent that is not in the trace: shown as a root")
    child_count: int
    name: str
    kind: SpanKind
    service: str | None
    start_time: datetime
    end_time: datetime
    start_offset_ms: float = Field(description="Milliseconds from the trace's first span start")
    duration_ms: float
    status_code: StatusCode
    status_message: str | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: dict[str, Any] | None
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    trace_state: str | None


class TraceSummary(BaseModel):
    model_config = ConfigDict(defer_build=True)
    span_count: int
    services: list[str] = Field(description="Services with spans in the trace, by name")
    start_time: datetime
    end_time: datetime
    duration_ms: float = Field(description="From the first span start to the last span end")
    error_count: int = Field(description="Spans with status error")
    root_count: int = Field(description="Roots of the tree: the true root, plus every orphan")
    orphan_count: int


class TraceLog(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: str = Field(description="The line's id (decimal string, as in /logs): the handle of the logs context route")
    time: datetime
    severity_number: int
    severity_text: str | None
    service: str | None
    body: str
    span_id: str | None
    attributes: dict[str, Any]


class Trace(BaseModel):
    model_config = ConfigDict(defer_build=True)
    trace_id: str
    summary: TraceSummary
    spans: list[TraceSpan] = Field(
        description="The tree in depth-first order: every span right after its parent, siblings by start time;"
        " depth and parent_span_id give the nesting"
    )
    spans_truncated: bool = Field(description="True when the trace has more spans than the route returns")
    logs: list[TraceLog] = Field(description="Logs carrying the trace id, oldest first")
    logs_truncated: bool = Field(description="True when more logs carry the trace id than the route returns")


class TraceListItem(BaseModel):
    model_config = ConfigDict(defer_build=True)
    trace_id: str
    root_name: str = Field(description="Name of the root span (the earliest span without a parent, else the earliest)")
    root_service: str | None
    start_time: datetime = Field(description="Start of the trace's first span")
    duration_ms: float
    span_count: int
    error_count: int
    has_error: bool
    services: list[str]
    matched_at: datetime = Field(description="Start of the trace's newest span matching the filters: the list order")


class ServiceStats(BaseModel):
    model_config = ConfigDict(defer_build=True)
    service: str | None
    span_count: int = Field(description="All spans of the service in the window")
    requests: int = Field(description="Request spans: kind server or consumer, or root spans (no parent)")
    request_rate_per_s: float = Field(description="requests / window length in seconds")
    errors: int = Field(description="Request spans with status error")
    error_rate: float | None = Field(description="errors / requests; null without requests")
    p50_ms: float | None = Field(description="Median request duration (nearest rank)")
    p95_ms: float | None = Field(description="95th percentile request duration (nearest rank)")


class ServiceStatsWindow(BaseModel):
    model_config = ConfigDict(defer_build=True)
    start: datetime = Field(description="The window read: [start, end)")
    end: datetime
    seconds: float
    services: list[ServiceStats]
