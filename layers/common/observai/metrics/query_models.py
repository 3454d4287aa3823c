"""Request and response models of the metrics API: the query request and its results, the catalogue, definitions,
series and cardinality.

Everything a client sends is validated here, field by field, so a bad query is a 422 that names the field
(``["body", "queries", 0, "filters", 1, "value"]``) before anything reaches the database.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from observai.timetext import AwareDateTimeText

MAX_QUERIES = 10
MAX_RANGE = timedelta(days=400)
MAX_STEP_S = 400 * 86400
MAX_FILTERS = 20
MAX_GROUP_BY = 10
MAX_IN_VALUES = 100
MAX_REGEX_LENGTH = 256
MAX_NAME_LENGTH = 512
MAX_ATTRIBUTE_KEY_LENGTH = 256
MAX_STRING_VALUE_LENGTH = 1024

Aggregation = Literal["avg", "sum", "min", "max", "count", "last", "rate", "increase", "p50", "p90", "p95", "p99"]
FilterOp = Literal["=", "!=", "in", "not_in", "=~", "!~"]
MetricTypeName = Literal["gauge", "sum", "histogram", "exponential_histogram", "summary"]
PERCENTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
COUNTER_AGGREGATIONS = frozenset({"rate", "increase"})

MetricName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_KEY_LENGTH)]
QueryId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# Strict: JSON true stays a boolean and 200 a number ("200" is another value: attributes compare with their JSON type).
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


def _check_scalar(value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_STRING_VALUE_LENGTH:
        raise ValueError(f"string values are at most {MAX_STRING_VALUE_LENGTH} characters")


def distinct_keys(keys: list[str]) -> list[str]:
    """A ``group_by`` names each attribute once (the metric query's, an alert rule's, a detector's)."""
    if len(set(keys)) != len(keys):
        raise ValueError("group_by keys must be distinct")
    return keys


class QueryFilter(_In):
    """One condition on a series attribute. ``=`` and ``!=`` take a scalar, ``in`` and ``not_in`` a list of
    scalars, ``=~`` and ``!~`` a regular expression (POSIX-style, matched against the whole value as text).
    A series without the attribute: ``!=``, ``not_in`` and ``!~`` match it; regexes see it as ``""``."""

    attribute: AttributeKey
    op: FilterOp
    value: Scalar | Annotated[list[Scalar], Field(min_length=1, max_length=MAX_IN_VALUES)]

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:
            return value  # the op itself is invalid: reported on its own field
        if op in ("in", "not_in"):
            if not isinstance(value, list):
                raise ValueError(f"{op} takes a list of values")
            for item in value:
                _check_scalar(item)
            return value
        if isinstance(value, list):
            raise ValueError(f"{op} takes one value, not a list")
        if op in ("=~", "!~"):
            if not isinstance(value, str):
                raise ValueError(f"{op} takes a regular expression (a string)")
            if len(value) > MAX_REGEX_LENGTH:
                raise ValueError(f"regular expressions are at most {MAX_REGEX_LENGTH} characters")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
            return value
        _check_scalar(value)
        return value


class MetricQuery(_In):
    """One series query (a dashboard panel): points of ``name`` between ``from`` and ``to``, filtered, bucketed
    into ``step``-second slots and aggregated per slot and per ``group_by`` combination."""

    id: QueryId | None = Field(default=None, description="Echoed in the result; default q0, q1... by position")
    name: MetricName
    filters: list[QueryFilter] = Field(default_factory=list, max_length=MAX_FILTERS)
    from_: AwareDateTimeText = Field(alias="from", description="RFC 3339 start (inclusive; aligned down to the step)")
    to: AwareDateTimeText = Field(description="RFC 3339 end (exclusive; aligned up to the step)")
    step: int | None = Field(
        default=None,
        ge=1,
        le=MAX_STEP_S,
        description="Slot width in seconds; default: about 300 slots, rounded to 60/300/3600/86400 from 60 s up",
    )
    aggregation: Aggregation = "avg"
    group_by: list[AttributeKey] = Field(default_factory=list, max_length=MAX_GROUP_BY)

    @field_validator("to")
    @classmethod
    def _range(cls, to: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("from_")
        if start is None:
            return to
        if to <= start:
            raise ValueError("to must be after from")
        if to - start > MAX_RANGE:
            raise ValueError(f"the range is at most {MAX_RANGE.days} days")
        return to

    _group_by = field_validator("group_by")(distinct_keys)


class QueryRequest(_In):
    queries: list[MetricQuery] = Field(min_length=1, max_length=MAX_QUERIES)

    @model_validator(mode="after")
    def _ids(self) -> QueryRequest:
        for index, query in enumerate(self.queries):
            if query.id is None:
                query.id = f"q{index}"
        ids = [q.id for q in self.queries]
        if len(set(ids)) != len(ids):
            raise ValueError("query ids must be distinct")
        return self


class SeriesPoints(BaseModel):
    model_config = ConfigDict(defer_build=True)
    labels: dict[str, Any] = Field(description="The group_by attributes of this series (null when absent)")
    points: list[tuple[int, float]] = Field(description="[unix seconds of the slot start, value], slots with data")


class QueryResult(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: str
    name: str
    aggregation: Aggregation
    resolution: Literal["raw", 60, 300, 3600, 86400] = Field(description="raw points, or the rollup read (seconds)")
    source: Literal["group", "series", "raw"] = Field(
        description="What the rollup slots were read from: group rollups (one row per group and slot, when the"
        " query groups by nothing or by one low-cardinality attribute and filters on it only), per-series"
        " rollups, or raw points (resolution raw)"
    )
    step: int
    start: int = Field(description="Unix seconds: from, aligned down to the step")
    end: int = Field(description="Unix seconds: to, aligned up to the step")
    raw_from: int | None = Field(
        description="Unix seconds from which slots were read from raw points (all, for raw; the last few minutes,"
        " not rolled up yet, for a rollup); null when none were"
    )
    series_matched: int
    series: list[SeriesPoints]


class QueryResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)
    results: list[QueryResult]


# --- catalogue, definitions, series ----------------------------------------------------------------------------


class MetricDefinitionPatch(_In):
    """Create or update a definition: fields left out keep their value, null clears one."""

    type: MetricTypeName | None = None
    unit: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class MetricDefinition(BaseModel):
    model_config = ConfigDict(defer_build=True)
    name: str
    type: MetricTypeName | None
    unit: str | None
    description: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class MetricDefinitionDeleted(BaseModel):
    model_config = ConfigDict(defer_build=True)
    name: str
    deleted: bool = True


class MetricInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)
    name: str
    type: MetricTypeName | None = Field(description="The definition's, else what ingestion saw")
    unit: str | None
    description: str | None
    series_count: int
    defined: bool = Field(description="A custom definition exists for this name")
    last_seen_at: datetime | None = Field(description="Newest point's series activity; null when never ingested")


class SeriesInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)
    series_id: str = Field(description="Stable 63-bit id, as a string (JSON numbers lose precision past 2^53)")
    attributes: dict[str, Any]
    type: MetricTypeName
    unit: str | None
    monotonic: bool | None
    temporality: str | None
    created_at: datetime
    last_seen_at: datetime


class AttributeCardinality(BaseModel):
    model_config = ConfigDict(defer_build=True)
    key: str
    distinct_values: int
    series: int = Field(description="Series carrying this attribute")


class Cardinality(BaseModel):
    model_config = ConfigDict(defer_build=True)
    name: str
    series_count: int = Field(description="Series examined (all matching ones unless sampled)")
    sampled: bool = Field(description="True when only the first series_count series were examined")
    attributes: list[AttributeCardinality] = Field(description="Keys with the most distinct values first")
