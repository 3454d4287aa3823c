"""docs/openapi.json is generated from the resolvers: it must match the code, and describe every route properly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from observai_local.openapi import (
    HTML_OPERATIONS,
    HTTP_METHODS,
    OUTPUT_PATH,
    build_document,
    render,
    staleness_diff,
)
from observai_local.template import load_template

# Slack's interactivity Request URL answers what Slack reads (its message JSON), not the envelope (errors are).
SLACK_ACTIONS = ("POST", "/v1/integrations/slack/actions")
HINT = "docs/openapi.json is stale: run `python -m observai_local openapi --write` (or `make openapi`) and commit it"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def _schema(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/"), ref
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_committed_document_is_fresh(document: dict[str, Any]) -> None:
    assert OUTPUT_PATH.exists(), HINT
    committed = OUTPUT_PATH.read_text(encoding="utf-8")
    diff = staleness_diff(render(document), committed)
    assert not diff, HINT + "\n" + "\n".join(diff)


def test_every_template_route_is_documented(document: dict[str, Any]) -> None:
    documented = {(method, path) for method, path, _ in _operations(document)}
    in_template = {(r.method, r.path) for r in load_template().routes}
    assert in_template <= documented, sorted(in_template - documented)


def test_every_operation_has_a_2xx_envelope_response(document: dict[str, Any]) -> None:
    missing = []
    for method, path, op in _operations(document):
        if "otlp" in op.get("tags", []):
            continue  # OTLP/HTTP answers in protobuf or OTLP/JSON: see test_otlp_operations_document_protobuf
        if (method.lower(), path) in HTML_OPERATIONS or (method, path) == SLACK_ACTIONS:
            continue  # see test_incident_action_operations
        found = False
        for status, response in op.get("responses", {}).items():
            if not status.startswith("2"):
                continue
            schema = (response.get("content") or {}).get("application/json", {}).get("schema") or {}
            ref = schema.get("$ref")
            if ref and ref.rsplit("/", 1)[1].startswith("Envelope_"):
                target = _schema(document, ref)
                if {"data", "error", "meta"} <= set(target.get("properties", {})):
                    found = True
        if not found:
            missing.append(f"{method} {path}")
    assert not missing, f"operations without a 2xx response schema referencing the envelope: {missing}"


def test_otlp_operations_document_protobuf(document: dict[str, Any]) -> None:
    otlp = [(m, p, op) for m, p, op in _operations(document) if "otlp" in op.get("tags", [])]
    assert {p for _, p, _ in otlp} == {"/v1/traces", "/v1/metrics", "/v1/logs"}
    for _, _, op in otlp:
        assert set(op["requestBody"]["content"]) == {"application/x-protobuf", "application/json"}
        assert set(op["responses"]["200"]["content"]) == {"application/x-protobuf", "application/json"}
        assert op["security"], "OTLP routes need an API key"


def test_incident_action_operations(document: dict[str, Any]) -> None:
    # The signed links answer HTML pages, every status; Slack's route answers JSON; all three are public.
    assert {("get", "/v1/actions/incidents/{token}"), ("post", "/v1/actions/incidents/{token}")} == HTML_OPERATIONS
    for method, path in HTML_OPERATIONS:
        op = document["paths"][path][method]
        assert op["security"] == []
        assert set(op["responses"]) == {"200", "403", "404", "410", "503"}
        for response in op["responses"].values():
            assert set(response["content"]) == {"text/html"}
    slack = document["paths"][SLACK_ACTIONS[1]]["post"]
    assert slack["security"] == []
    assert set(slack["responses"]["200"]["content"]) == {"application/json"}
    assert {"400", "401", "413", "503"} <= set(slack["responses"])


def _resolve_response(doc: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    ref = response.get("$ref")
    if ref:
        assert ref.startswith("#/components/responses/"), ref
        return doc["components"]["responses"][ref.rsplit("/", 1)[1]]
    return response


def test_errors_are_documented_as_the_envelope(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        if "otlp" in op.get("tags", []) or (method.lower(), path) in HTML_OPERATIONS:
            continue
        assert "default" not in op["responses"], f"{method} {path}: each error status is documented, no catch-all"
        errors = {s: _resolve_response(document, r) for s, r in op["responses"].items() if s[0] in "45"}
        assert errors or (method, path) == ("GET", "/v1/health"), f"{method} {path} documents no error response"
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/ErrorEnvelope"), f"{method} {path} {status}"
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], f"{method} {path} {status}"
    assert "HTTPValidationError" not in document["components"]["schemas"]


def _errors(document: dict[str, Any], method: str, path: str) -> set[int]:
    return {int(s) for s in document["paths"][path][method.lower()]["responses"] if s[0] in "45"}


def test_each_route_documents_the_errors_it_can_answer(document: dict[str, Any]) -> None:
    # Liveness reads nothing and takes nothing: no error to document; readiness can only be unavailable.
    assert _errors(document, "GET", "/v1/health") == set()
    assert _errors(document, "GET", "/v1/health/ready") == {503}
    # Credentials, no parameters.
    assert _errors(document, "GET", "/v1/whoami") == {401, 403, 429, 503}
    # A body (malformed JSON, size, media type, validation) and a route-specific conflict (the slug).
    assert _errors(document, "POST", "/v1/orgs") == {400, 401, 403, 409, 413, 415, 422, 429, 503}
    # A path parameter: 404; validation of it: 422.
    assert _errors(document, "GET", "/v1/orgs/{org_id}") == {401, 403, 404, 422, 429, 503}
    # A cursor: 400 for an invalid one.
    assert 400 in _errors(document, "GET", "/v1/orgs/{org_id}/members")
    assert _errors(document, "DELETE", "/v1/orgs/{org_id}/members/{user_id}") == {401, 403, 404, 409, 422, 429, 503}
    for path in ("/v1/ingest", "/v1/traces", "/v1/metrics", "/v1/logs"):
        assert _errors(document, "POST", path) == {400, 401, 403, 409, 413, 415, 422, 429, 503}, path


def test_a_route_specific_error_keeps_the_standard_description(document: dict[str, Any]) -> None:
    response = document["paths"]["/v1/projects/{project_id}/metrics/query"]["post"]["responses"]["400"]
    assert "malformed_json" in response["description"] and "invalid_regex" in response["description"]


def test_security(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["supabaseJwt"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["supabaseJwt"]["description"],
    }
    assert schemes["apiKey"]["in"] == "header"
    assert schemes["apiKey"]["name"] == "x-api-key"
    assert document["security"] == [{"supabaseJwt": []}, {"apiKey": []}]
    ops = {(m, p): op for m, p, op in _operations(document)}
    assert ops[("GET", "/v1/health")]["security"] == []
    assert ops[("GET", "/v1/whoami")]["security"] == [{"supabaseJwt": []}, {"apiKey": []}]
    assert ops[("POST", "/v1/orgs")]["security"] == [{"supabaseJwt": []}]


def test_component_references_resolve(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    for ref in {part.split('"', 1)[0] for part in text.split('"$ref": "')[1:]}:
        _, _, section, name = ref.split("/")
        assert name in document["components"][section], f"dangling {ref}"


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    validate(document)
