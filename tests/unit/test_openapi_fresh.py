"""docs/openapi.json is generated from the resolvers: it must match the code, and describe every route properly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from observai_local.openapi import HTTP_METHODS, OUTPUT_PATH, build_document, render, staleness_diff
from observai_local.template import load_template

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


def test_errors_are_documented_as_the_envelope(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        if "otlp" in op.get("tags", []):
            continue
        default = op["responses"].get("default")
        assert default, f"{method} {path} documents no error response"
        assert default["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
        if "422" in op["responses"]:
            assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
    assert "HTTPValidationError" not in document["components"]["schemas"]


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
    schemas = document["components"]["schemas"]
    for ref in {part.split('"', 1)[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.rsplit("/", 1)[1] in schemas, f"dangling {ref}"


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    validate(document)
