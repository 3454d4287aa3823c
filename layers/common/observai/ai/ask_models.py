"""Questions in plain language: what the ask routes take, what the model must answer (its response schemas), and
what the routes return (the query that ran, so the user can see and edit it, and its results)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from observai.logs.models import LogItem
from observai.metrics.query_models import Aggregation, FilterOp, QueryResponse
from observai.timetext import AwareDateTimeText

MAX_QUESTION = 500
ASK_LOG_LINES = 50  # lines returned with the answer (follow next_cursor with GET /logs for more)
MAX_ASK_QUERIES = 5


class AskIn(BaseModel):
    """A question, and optionally the time range it is about (else the model picks one from the question)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
    question: str = Field(min_length=1, max_length=MAX_QUESTION, description="The question, 1 to 500 characters")
    from_: AwareDateTimeText | None = Field(
        default=None, alias="from", description="RFC 3339 start: when given, the query runs over [from, to)"
    )
    to: AwareDateTimeText | None = Field(default=None, description="RFC 3339 end (exclusive)")

    @model_validator(mode="after")
    def _checked(self) -> Self:
        if not self.question.strip():
            raise ValueError("question is blank")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in self.question):
            raise ValueError("question holds control characters")
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("from must be before to")
        return self


# --- what the model answers (response schemas: plain types, so any provider's structured output takes them) ---

ModelText = Annotated[str, StringConstraints(max_length=2_000)]


class LogQueryAnswer(BaseModel):
    """The model's translation of a question about logs."""

    model_config = ConfigDict(populate_by_name=True, defer_build=True)
    query: ModelText = Field(description="One query in the log query language (never SQL)")
    from_: str | None = Field(default=None, alias="from", description="RFC 3339 start, or null for the default")
    to: str | None = Field(default=None, description="RFC 3339 end, or null for now")
    explanation: Annotated[str, StringConstraints(max_length=1_000)] = Field(
        description="One or two sentences: what the query looks for"
    )


class MetricFilterAnswer(BaseModel):
    model_config = ConfigDict(defer_build=True)
    attribute: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    op: FilterOp
    value: Annotated[str, StringConstraints(max_length=1_024)] | None = Field(
        default=None, description="For =, !=, =~, !~ (text; 200 or true also match the number or boolean)"
    )
    values: list[Annotated[str, StringConstraints(max_length=1_024)]] | None = Field(
        default=None, description="For in and not_in"
    )


class MetricQueryAnswer(BaseModel):
    model_config = ConfigDict(populate_by_name=True, defer_build=True)
    name: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(description="A known metric name")
    filters: list[MetricFilterAnswer] = Field(default_factory=list)
    from_: str = Field(alias="from", description="RFC 3339 start")
    to: str = Field(description="RFC 3339 end")
    step: int | None = Field(default=None, description="Slot width in seconds, or null for automatic")
    aggregation: Aggregation = "avg"
    group_by: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(default_factory=list)


class MetricsQueryAnswer(BaseModel):
    """The model's translation of a question about metrics: a metrics query request."""

    model_config = ConfigDict(defer_build=True)

    queries: list[MetricQueryAnswer] = Field(min_length=1, max_length=MAX_ASK_QUERIES)
    explanation: Annotated[str, StringConstraints(max_length=1_000)] = Field(
        description="One or two sentences: what the queries show"
    )


# --- what the routes return --------------------------------------------------------------------------------------


class AskLogsAnswer(BaseModel):
    model_config = ConfigDict(defer_build=True)
    query: str = Field(description="The log query that ran (the q of GET /logs: edit it and search again)")
    from_: datetime = Field(serialization_alias="from", description="Start of the range it ran over (inclusive)")
    to: datetime = Field(description="End of the range (exclusive)")
    explanation: str = Field(description="The model's words on what the query looks for")
    attempts: int = Field(description="Model calls it took: 1, or 2 when the first answer was rejected")
    results: list[LogItem] = Field(description=f"The newest matching lines (at most {ASK_LOG_LINES})")
    next_cursor: str | None = Field(
        description="More lines: GET /logs with this q, from, to and cursor (null when there are no more)"
    )


class AskMetricsAnswer(BaseModel):
    model_config = ConfigDict(defer_build=True)
    request: dict[str, Any] = Field(
        description="The metrics query request that ran (the body of POST /metrics/query: edit it and query again)"
    )
    explanation: str
    attempts: int = Field(description="Model calls it took: 1, or 2 when the first answer was rejected")
    results: QueryResponse
