"""The event schemas: every type published in the OpenAPI document's webhooks section, with its headers, and the
outbox's 20 kB limit (fit shortens what users size; emit refuses the rest)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from observai import outbox
from observai.webhooks.events import (
    EVENT_MODELS,
    TEST_EVENT_TYPE,
    openapi_webhooks,
    test_event_payload,
    validate_payload,
)
from pydantic import ValidationError

from tests.helpers.webhook_schemas import published_document, published_errors

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
ALL_TYPES = outbox.EVENT_TYPES | {TEST_EVENT_TYPE}


def _alert_data(**over: object) -> dict[str, object]:
    # The shape observai.alerts.evaluation writes for a transition to firing.
    data: dict[str, object] = {
        "rule_id": str(uuid.uuid4()),
        "rule_name": "High CPU",
        "rule_version": 1,
        "instance_id": str(uuid.uuid4()),
        "fingerprint": "a1b2c3d4e5f60718",
        "labels": {"alertname": "High CPU", "severity": "critical", "host": "a"},
        "annotations": {"summary": "a at 90.0"},
        "state": "firing",
        "previous_state": "inactive",
        "value": 90.0,
        "at": NOW.isoformat(),
    }
    data.update(over)
    return data


def test_every_event_type_has_a_model() -> None:
    assert set(EVENT_MODELS) == ALL_TYPES


def test_the_published_document_has_every_type_with_its_headers_and_schema() -> None:
    # Given the committed docs/openapi.json
    doc = published_document()
    # Then it is OpenAPI 3.1 with one webhook per event type
    assert doc["openapi"].startswith("3.1")
    assert set(doc["webhooks"]) == ALL_TYPES
    schemas = doc["components"]["schemas"]
    for event_type, item in doc["webhooks"].items():
        operation = item["post"]
        # each a POST with the three Standard Webhooks headers, required
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert all(p["required"] for p in headers.values())
        # and a JSON body whose schema is in the components, fixing the type
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        assert schema["properties"]["type"]["const"] == event_type
        assert set(schema["required"]) == {"type", "timestamp", "data"}
        # and success is a 2xx only
        assert "2XX" in operation["responses"] and "410" in operation["responses"]


def test_published_schemas_leave_objects_open_for_fields_added_later() -> None:
    def closed(value: object) -> bool:
        if isinstance(value, dict):
            return value.get("additionalProperties") is False or any(closed(v) for v in value.values())
        return isinstance(value, list) and any(closed(v) for v in value)

    _, schemas = openapi_webhooks()
    assert not closed(schemas)
    assert closed(EVENT_MODELS["alert.firing"].model_json_schema())  # the models themselves are closed


def test_a_payload_of_each_documented_shape_validates_and_a_wrong_one_does_not() -> None:
    # Given an alert.firing payload as the evaluation writes it
    payload = {"type": "alert.firing", "timestamp": NOW.isoformat(), "data": _alert_data()}
    # Then it validates by the model and by the published schema
    validate_payload(payload)
    assert published_errors(payload) == []
    # And a wrong state, a missing field, a bad id are refused by both
    for bad in (
        _alert_data(state="resolved"),
        {k: v for k, v in _alert_data().items() if k != "rule_id"},
        _alert_data(instance_id="not-a-uuid"),
    ):
        wrong = {**payload, "data": bad}
        with pytest.raises(ValidationError):
            validate_payload(wrong)
        assert published_errors(wrong) != []
    # And a field nobody documented is refused by the model (the producers' check), accepted by the published schema
    extra = {**payload, "data": _alert_data(surprise=1)}
    with pytest.raises(ValidationError):
        validate_payload(extra)
    assert published_errors(extra) == []


def test_the_test_event_payload_validates() -> None:
    payload = test_event_payload(endpoint_id=uuid.uuid4(), project_id=uuid.uuid4(), now=NOW)
    validate_payload(payload)
    assert published_errors(payload) == []


def test_unknown_types_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        validate_payload({"type": "alert.exploded", "timestamp": NOW.isoformat(), "data": {}})


def test_fit_leaves_small_data_alone() -> None:
    data = _alert_data()
    assert outbox.fit("alert.firing", data, NOW) == data


def test_fit_cuts_the_longest_values_until_the_event_is_under_20_kb() -> None:
    # Given an alert with 50 labels of 1 kB and 20 annotations of 4 kB (what rules allow)
    labels = {f"label_{i}": f"{i}" * 1024 for i in range(50)}
    annotations = {f"note_{i}": "é" * 4000 for i in range(20)}
    data = _alert_data(labels=labels, annotations=annotations)
    # When it is fitted
    fitted = outbox.fit("alert.firing", data, NOW)
    # Then the payload is under 20 kB, says it was truncated, and still validates
    payload = {"type": "alert.firing", "timestamp": NOW.isoformat(), "data": fitted}
    assert outbox.payload_size(payload) <= outbox.MAX_PAYLOAD_BYTES
    assert fitted["truncated"] is True
    validate_payload(payload)
    assert published_errors(payload) == []
    # And every label is still there, ids untouched, cut values end with an ellipsis
    assert set(fitted["labels"]) == set(labels) and fitted["rule_id"] == data["rule_id"]
    assert all(v == labels[k] or v.endswith("…") for k, v in fitted["labels"].items())
    # And the caller's data was not changed
    assert data["labels"] == labels


def test_fit_refuses_what_cannot_be_cut_to_size() -> None:
    # 400 labels of 64 characters: no value long enough to cut
    data = _alert_data(labels={f"k{i:04d}": "v" * 64 for i in range(400)})
    with pytest.raises(ValueError, match="over the 20000 bytes"):
        outbox.fit("alert.firing", data, NOW)
