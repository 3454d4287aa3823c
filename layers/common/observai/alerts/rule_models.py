"""Alert rules as the API takes and returns them: the rule, and its condition, one model per kind.

A condition is a discriminated union on ``kind``; a new kind (the anomaly detection issue's ``anomaly``) is one
more model in ``Condition`` and one evaluator in ``observai.alerts.kinds``. Everything is validated here, so a bad
rule is a 422 naming the field (``["body", "condition", "threshold"]``, ``["body", "annotations", "summary"]``)
before anything is stored.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from observai.alerts import templates
from observai.alerts.durations import DurationS
from observai.alerts.labels import RESERVED
from observai.metrics.query_models import (
    MAX_FILTERS,
    MAX_GROUP_BY,
    Aggregation,
    AttributeKey,
    MetricName,
    QueryFilter,
    distinct_keys,
)

Comparison = Literal[">", ">=", "<", "<=", "==", "!="]
Severity = Literal["critical", "error", "warning", "info"]
MAX_LABELS = 50
MAX_ANNOTATIONS = 20
MAX_LABEL_VALUE = 1024
MAX_WINDOW_S = 7 * 86400
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LOG_GROUP_FIELD = re.compile(r"^(service|severity|attributes\.[^\x00]{1,256}|resource\.[^\x00]{1,256})$")

RuleName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Window = Annotated[DurationS, Field(ge=60, le=MAX_WINDOW_S, description="How far back the condition looks (5m, 1h...)")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("the threshold must be a finite number")
    return value


class MetricCondition(_In):
    """A metric query as the query API spells it, aggregated over ``window``, compared to ``threshold``: one alert
    instance per ``group_by`` combination."""

    kind: Literal["metric"]
    metric: MetricName
    filters: list[QueryFilter] = Field(default_factory=list, max_length=MAX_FILTERS)
    aggregation: Aggregation = "avg"
    group_by: list[AttributeKey] = Field(default_factory=list, max_length=MAX_GROUP_BY)
    window: Window = 300
    op: Comparison
    threshold: StrictFloat | StrictInt

    _threshold = field_validator("threshold")(_finite)

    @field_validator("window")
    @classmethod
    def _whole_minutes(cls, window: int) -> int:
        if window % 60:
            raise ValueError("a metric window is whole minutes (the rollups' resolution)")
        return window

    _group_by = field_validator("group_by")(distinct_keys)


class LogCondition(_In):
    """The number of log lines matching ``query`` (the logs query language) over ``window``, compared to
    ``threshold``, counted per ``group_by`` field: ``service``, ``severity``, ``attributes.<key>`` or
    ``resource.<key>``."""

    kind: Literal["log"]
    query: Annotated[str, StringConstraints(max_length=2000)] = ""
    group_by: list[Annotated[str, StringConstraints(pattern=LOG_GROUP_FIELD.pattern)]] = Field(
        default_factory=lambda: ["service"], max_length=3
    )
    window: Window = 300
    op: Comparison = ">"
    threshold: StrictFloat | StrictInt

    _threshold = field_validator("threshold")(_finite)

    @field_validator("query")
    @classmethod
    def _parses(cls, query: str) -> str:
        from observai.errors import QuerySyntaxError
        from observai.logs.query_language import compile_log_query

        try:
            compile_log_query(query)
        except QuerySyntaxError as exc:
            raise ValueError(f"{exc.message} (at character {exc.position})") from None
        return query


class AbsenceCondition(_In):
    """Nothing arrived for ``duration``: from a metric (per ``group_by`` series that sent before, or at all), or
    from a service (no log line, span or metric point)."""

    kind: Literal["absence"]
    target: Literal["metric", "service"]
    # validate_default: a target without its metric or service is refused on that field, even when left out.
    metric: MetricName | None = Field(default=None, validate_default=True)
    filters: list[QueryFilter] = Field(default_factory=list, max_length=MAX_FILTERS)
    group_by: list[AttributeKey] = Field(default_factory=list, max_length=MAX_GROUP_BY)
    service: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, validate_default=True
    )
    duration: Annotated[DurationS, Field(ge=60, le=MAX_WINDOW_S, description="Silent this long: the alert fires")] = 600

    @field_validator("metric")
    @classmethod
    def _metric_target(cls, metric: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("target") == "metric" and not metric:
            raise ValueError("a metric absence names the metric")
        return metric

    @field_validator("service")
    @classmethod
    def _service_target(cls, service: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("target") == "service" and not service:
            raise ValueError("a service absence names the service")
        return service


class AnomalyCondition(_In):
    """Anomalies found by the project's detectors (docs/anomalies-api.md): with ``per: group`` (the default) one
    alert per open correlated anomaly group (labels: the group's shared labels and ``anomaly_group_id``), so a
    problem seen by several detectors or series notifies once; with ``per: series`` one alert per open anomaly
    event (labels: the series' labels and ``anomaly_detector_id``). The value is the peak score in [0, 1]; the
    condition holds while the anomaly is open and its peak score is at least ``min_score``."""

    kind: Literal["anomaly"]
    detector_id: UUID | None = Field(default=None, description="Only this detector's anomalies; null: any detector")
    matchers: dict[AttributeKey, Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]] = Field(
        default_factory=dict,
        max_length=MAX_FILTERS,
        description="Label equality: only groups (or series) whose labels hold each key with this value",
    )
    min_score: Annotated[float, Field(ge=0, le=1, description="The peak score an anomaly must reach (0 to 1)")] = 0.0
    per: Literal["group", "series"] = "group"


Condition = Annotated[MetricCondition | LogCondition | AbsenceCondition | AnomalyCondition, Field(discriminator="kind")]

LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME.pattern)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    reserved = sorted(RESERVED & labels.keys())
    if reserved:
        raise ValueError(f"{', '.join(reserved)} is set by the rule itself (its name and severity)")
    return labels


def _check_template(source: str) -> str:
    try:
        templates.check(source)
    except templates.TemplateError as exc:
        raise ValueError(str(exc)) from None
    return source


# Checked one by one, so a 422 names the annotation: ["body", "annotations", "summary"].
TemplateText = Annotated[str, StringConstraints(max_length=templates.MAX_TEMPLATE), AfterValidator(_check_template)]


def _check_annotations(annotations: dict[str, str]) -> dict[str, str]:
    if len(annotations) > MAX_ANNOTATIONS:
        raise ValueError(f"at most {MAX_ANNOTATIONS} annotations")
    return annotations


class RuleIn(_In):
    """A new alert rule (or a whole replacement with PUT)."""

    name: RuleName
    condition: Condition
    for_: Annotated[DurationS, Field(ge=0, le=86400, description="Pending this long before firing (0: at once)")] = (
        Field(default=0, alias="for")
    )
    keep_firing_for: Annotated[
        DurationS, Field(ge=0, le=86400, description="Keep firing this long after the condition clears")
    ] = 0
    interval: Annotated[DurationS, Field(ge=60, le=86400, description="How often the rule is evaluated (1m+)")] = 60
    severity: Severity = "warning"
    labels: dict[LabelName, LabelValue] = Field(default_factory=dict)
    annotations: dict[LabelName, TemplateText] = Field(
        default_factory=dict,
        description="Templates rendered per alert: summary, description, runbook_url...; variables value, labels,"
        " threshold, rule",
    )
    enabled: bool = True

    _labels = field_validator("labels")(_check_labels)
    _annotations = field_validator("annotations")(_check_annotations)


class RulePatch(_In):
    """Change some fields of a rule; those left out keep their value. Any change makes a new version."""

    name: RuleName | None = None
    condition: Condition | None = None
    for_: Annotated[DurationS, Field(ge=0, le=86400)] | None = Field(default=None, alias="for")
    keep_firing_for: Annotated[DurationS, Field(ge=0, le=86400)] | None = None
    interval: Annotated[DurationS, Field(ge=60, le=86400)] | None = None
    severity: Severity | None = None
    labels: dict[LabelName, LabelValue] | None = None
    annotations: dict[LabelName, TemplateText] | None = None
    enabled: bool | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str] | None) -> dict[str, str] | None:
        return None if labels is None else _check_labels(labels)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str] | None) -> dict[str, str] | None:
        return None if annotations is None else _check_annotations(annotations)


class RuleEvaluation(BaseModel):
    """The outcome of the rule's last evaluation."""

    model_config = ConfigDict(defer_build=True)

    last_eval_at: datetime | None
    lag_ms: int | None = Field(description="How late the last evaluation started after it was due")
    duration_ms: int | None
    next_eval_at: datetime
    error: str | None = Field(description="Why the last evaluation failed (the alerts keep their state)")
    error_at: datetime | None


class Rule(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    project_id: UUID
    name: str
    condition: dict[str, Any]
    for_: int = Field(serialization_alias="for", description="Seconds")
    keep_firing_for: int
    interval: int
    severity: Severity
    labels: dict[str, str]
    annotations: dict[str, str]
    enabled: bool
    version: int
    created_at: datetime
    updated_at: datetime
    evaluation: RuleEvaluation


class RuleDeleted(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    deleted: bool = True
    resolved_alerts: int = Field(
        description="Firing alerts of the rule resolved by the deletion (their resolution is notified)"
    )


class RuleVersion(BaseModel):
    """A rule as it was saved at one version: ``definition`` is the rule's body (as POST/PUT take it, durations in
    seconds; without ``enabled``, which switches a rule on and off and is no part of its definition)."""

    model_config = ConfigDict(defer_build=True)

    rule_id: UUID
    version: int
    definition: dict[str, Any]
    created_by: UUID | None
    created_at: datetime


AlertState = Literal["inactive", "pending", "firing", "resolved"]


class AlertInstance(BaseModel):
    """One alert: a result series of a rule, identified by its labels' fingerprint, in its current state."""

    model_config = ConfigDict(defer_build=True)

    id: UUID
    rule_id: UUID
    rule_version: int = Field(description="The version of the rule that last evaluated it")
    rule_name: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: AlertState
    value: float | None
    active_at: datetime | None = Field(description="Since when the condition holds (pending or firing)")
    fired_at: datetime | None = Field(description="When it last went firing")
    resolved_at: datetime | None = Field(description="When it last resolved")
    last_eval_at: datetime
    updated_at: datetime


class AlertTransition(BaseModel):
    """One state change of one alert of the rule, with the value that caused it."""

    model_config = ConfigDict(defer_build=True)

    id: int
    at: datetime
    instance_id: UUID
    fingerprint: str
    labels: dict[str, str]
    from_state: AlertState
    to_state: AlertState
    value: float | None
    rule_version: int
