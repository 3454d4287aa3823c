"""The events webhooks deliver: one schema per type, published in the OpenAPI document's ``webhooks`` section.

Every delivery's body is the envelope ``{"type", "timestamp", "data"}`` that ``observai.outbox`` records; ``data``
depends on the type. The models here are what the producers write (alerting's evaluation, the incident lifecycle,
and, for the types whose producers are still to come, the shape they are to write), with ``extra="forbid"`` so that
a test catches a producer sending a field nobody documented. The published schemas leave additional properties
open: receivers must ignore fields they do not know, so that adding one is not a breaking change.

Light at import (pydantic only): the OpenAPI generator and the tests use ``openapi_webhooks``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, create_model

TEST_EVENT_TYPE = "webhook.test"

Severity = Literal["critical", "error", "warning", "info"]
AlertState = Literal["inactive", "pending", "firing", "resolved"]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class _AlertData(_Data):
    rule_id: UUID
    rule_name: str
    rule_version: int = Field(ge=1, description="The version of the rule that evaluated")
    instance_id: UUID = Field(description="The alert: one per rule and label set (fingerprint)")
    fingerprint: str
    labels: dict[str, str] = Field(description="alertname, severity, the rule's labels and the series' labels")
    annotations: dict[str, str] = Field(description="The rule's annotations, rendered (summary, description...)")
    previous_state: AlertState
    value: float | None = Field(description="The value that decided the transition (null: no data)")
    at: datetime = Field(description="The evaluation's time")
    truncated: bool | None = Field(
        default=None, description="true when long label or annotation values were cut to keep the event under 20 kB"
    )


class AlertFiringData(_AlertData):
    state: Literal["firing"]


class AlertResolvedData(_AlertData):
    state: Literal["resolved"]
    reason: str | None = Field(
        default=None, description='Why, when not the condition clearing: "rule retired" (disabled or deleted)'
    )


class _IncidentData(_Data):
    incident_id: UUID
    project_id: UUID
    number: int = Field(ge=1, description="The incident's number in its project (#1, #2...)")
    title: str
    severity: Severity
    service: str | None = Field(description="The service every alert of the incident shares, if any")


class IncidentTriggeredData(_IncidentData):
    status: Literal["triggered"]
    reason: Literal["unacknowledged", "snooze ended"] | None = Field(
        default=None,
        description="Absent when the incident opens; else why it is triggered again (un-acknowledged by a person,"
        " or its snooze ended)",
    )


class IncidentAcknowledgedData(_IncidentData):
    status: Literal["acknowledged"]
    snoozed_until: datetime | None = Field(default=None, description="Set when acknowledged by a snooze: until when")


class IncidentResolvedData(_IncidentData):
    status: Literal["resolved"]
    reason: str = Field(description='"manual" (a person resolved it) or "all alerts resolved"')


class AnomalyDetectedData(_Data):
    anomaly_id: UUID = Field(description="The anomaly event (GET .../anomalies)")
    project_id: UUID
    detector_id: UUID | None = Field(default=None, description="The anomaly detector that found it")
    detector_name: str | None = Field(default=None, description="The detector's name")
    signal: Literal["metrics", "logs", "spans"]
    series: str = Field(description="What deviates: a metric name, or a derived series (error rate, log volume...)")
    labels: dict[str, str] = Field(description="The series' labels (service, host...)")
    window_start: datetime
    window_end: datetime
    observed: float = Field(description="The value observed over the window")
    expected: float = Field(description="The value the baseline predicted")
    lower: float | None = Field(default=None, description="The baseline band's lower bound")
    upper: float | None = Field(default=None, description="The baseline band's upper bound")
    score: float = Field(description="How far outside the band, squashed into [0, 1] (the same scale on every series)")
    direction: Literal["above", "below"]
    severity: Severity
    algorithm: str | None = Field(default=None, description="What drew the band (zscore, robust, seasonal...)")
    detected_at: datetime
    truncated: bool | None = Field(default=None, description="true when long label values were cut to stay under 20 kB")


class ExportCompletedData(_Data):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    export_id: UUID
    project_id: UUID
    signal: Literal["logs", "spans"]
    status: Literal["succeeded", "failed"]
    format: Literal["ndjson.gz"]
    from_: datetime = Field(alias="from")
    to: datetime
    row_count: int | None = Field(default=None, description="Rows written (when succeeded)")
    bytes: int | None = Field(default=None, description="Size of the gzip file (when succeeded)")
    error: str | None = Field(default=None, description="Why it failed (when failed)")
    finished_at: datetime
    expires_at: datetime | None = Field(
        default=None,
        description="When the file is deleted. No download link here (a pre-signed link is a credential): "
        "GET /v1/projects/{project_id}/exports/{export_id} makes one",
    )


class UsageQuotaReachedData(_Data):
    org_id: UUID
    project_id: UUID | None = Field(description="null when the quota is the organization's")
    quota: str = Field(description="Which quota: ingest_bytes, events, api_requests...")
    period_start: datetime
    period_end: datetime
    limit: int = Field(ge=0)
    used: int = Field(ge=0)
    threshold_percent: int = Field(ge=1, le=100, description="The share of the limit reached: 80 (a warning), 100")
    action: Literal["none", "throttled", "rejected"] = Field(
        description="What happens to further usage in the period: nothing yet, slowed down, or refused"
    )


class WebhookTestData(_Data):
    endpoint_id: UUID
    project_id: UUID
    message: str


_DATA: dict[str, tuple[str, type[_Data], str]] = {
    "alert.firing": ("AlertFiringEvent", AlertFiringData, "An alert started firing."),
    "alert.resolved": ("AlertResolvedEvent", AlertResolvedData, "A firing alert resolved."),
    "incident.triggered": (
        "IncidentTriggeredEvent",
        IncidentTriggeredData,
        "An incident opened, or was triggered again (un-acknowledged, or its snooze ended).",
    ),
    "incident.acknowledged": (
        "IncidentAcknowledgedEvent",
        IncidentAcknowledgedData,
        "Someone acknowledged (or snoozed) an incident.",
    ),
    "incident.resolved": ("IncidentResolvedEvent", IncidentResolvedData, "An incident resolved."),
    "anomaly.detected": ("AnomalyDetectedEvent", AnomalyDetectedData, "A series left its baseline band."),
    "export.completed": ("ExportCompletedEvent", ExportCompletedData, "An export finished (succeeded or failed)."),
    "usage.quota_reached": (
        "UsageQuotaReachedEvent",
        UsageQuotaReachedData,
        "Usage reached a share of a quota in the current period.",
    ),
    TEST_EVENT_TYPE: (
        "WebhookTestEvent",
        WebhookTestData,
        "Sent by POST /v1/projects/{project_id}/webhooks/{webhook_id}/test to one endpoint only.",
    ),
}


def _envelope(type_: str, name: str, data: type[_Data], description: str) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        name,
        __config__=ConfigDict(extra="forbid", title=name, json_schema_extra={"description": description}),
        type=(Literal[type_], Field(description="The event type")),
        timestamp=(datetime, Field(description="When the change happened (RFC 3339)")),
        data=(data, ...),
    )
    return model


# type → the model of its whole payload ({"type", "timestamp", "data"}).
EVENT_MODELS: dict[str, type[BaseModel]] = {
    type_: _envelope(type_, name, data, description) for type_, (name, data, description) in _DATA.items()
}


def validate_payload(payload: Any) -> BaseModel:
    """The payload as its type's model; pydantic's ValidationError if it does not match, ValueError if the type is
    unknown."""
    type_ = payload.get("type") if isinstance(payload, dict) else None
    model = EVENT_MODELS.get(type_) if isinstance(type_, str) else None
    if model is None:
        raise ValueError(f"unknown event type {type_!r}")
    return model.model_validate(payload)


def test_event_payload(*, endpoint_id: UUID, project_id: UUID, now: datetime) -> dict[str, Any]:
    """The payload of a ``webhook.test`` event (POST .../webhooks/{id}/test)."""
    data = WebhookTestData(
        endpoint_id=endpoint_id,
        project_id=project_id,
        message="A test event from ObservAI Hub: your endpoint received and, we hope, verified it.",
    )
    return {"type": TEST_EVENT_TYPE, "timestamp": now.isoformat(), "data": data.model_dump(mode="json")}


test_event_payload.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite its name


# ---------------------------------------------------------------------------------------------- OpenAPI


_HEADERS = (
    ("webhook-id", "The event's id: the same for every attempt and every endpoint; use it to drop duplicates."),
    (
        "webhook-timestamp",
        "This attempt's time, in integer seconds since the epoch; refuse messages too far from your clock "
        "(5 minutes) to stop replays.",
    ),
    (
        "webhook-signature",
        "Space-separated `v1,<base64 HMAC-SHA256>` signatures of `{webhook-id}.{webhook-timestamp}.{body}` keyed "
        "with the base64-decoded part of the endpoint's `whsec_` secret; during a secret rotation there is one per "
        "secret. Accept the message if any signature matches (Standard Webhooks; its libraries verify this).",
    ),
)

_RESPONSES = {
    "2XX": {"description": "Received. Only a 2xx counts as delivered; answer fast and work later."},
    "3XX": {"description": "A failure: redirects are not followed. The message is retried."},
    "410": {"description": "Gone: the endpoint is disabled and receives nothing more until re-enabled."},
    "429": {"description": "Retried, not before Retry-After (seconds or an HTTP date) when given."},
    "503": {"description": "Retried, not before Retry-After (seconds or an HTTP date) when given."},
    "default": {
        "description": "Any other answer, or none within 15 s, is a failure; retried about 0 s, 5 s, 5 min, 30 min, "
        "2 h, 5 h, 10 h, 14 h, 20 h and 24 h later (with jitter), then the message fails."
    },
}


def _strip_closed_objects(value: Any) -> Any:
    """The schema without ``additionalProperties: false``: receivers must accept fields added later."""
    if isinstance(value, dict):
        return {
            k: _strip_closed_objects(v) for k, v in value.items() if not (k == "additionalProperties" and v is False)
        }
    if isinstance(value, list):
        return [_strip_closed_objects(v) for v in value]
    return value


def openapi_webhooks(ref_prefix: str = "#/components/schemas/") -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI 3.1 ``webhooks`` map (one POST per event type) and the component schemas it refers to."""
    schemas: dict[str, Any] = {}
    webhooks: dict[str, Any] = {}
    for type_, model in sorted(EVENT_MODELS.items()):
        schema = model.model_json_schema(ref_template=ref_prefix + "{model}", mode="validation")
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = _strip_closed_objects(definition)
        schemas[model.__name__] = _strip_closed_objects(schema)
        webhooks[type_] = {
            "post": {
                "operationId": "webhook_" + type_.replace(".", "_"),
                "summary": type_,
                "description": _DATA[type_][2]
                + " Signed per Standard Webhooks (standardwebhooks.com): verify `webhook-signature` before trusting"
                " the body. Deliveries are at least once: the same `webhook-id` may arrive more than once.",
                "tags": ["Webhook events"],
                "security": [],
                "parameters": [
                    {"name": name, "in": "header", "required": True, "description": text, "schema": {"type": "string"}}
                    for name, text in _HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": ref_prefix + model.__name__}}},
                },
                "responses": _RESPONSES,
            }
        }
    return webhooks, schemas
