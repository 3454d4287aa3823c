"""The event schemas as published in docs/openapi.json (its ``webhooks`` section), as JSON Schema validators."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@cache
def published_document() -> dict[str, Any]:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def published_schema_ref(event_type: str) -> str:
    operation = published_document()["webhooks"][event_type]["post"]
    return operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]  # type: ignore[no-any-return]


@cache
def published_validator(event_type: str) -> Draft202012Validator:
    """A validator of the payload of ``event_type`` against the published schema (formats checked: uuid, date-time)."""
    root = {"$ref": published_schema_ref(event_type), "components": published_document()["components"]}
    return Draft202012Validator(root, format_checker=FormatChecker())


def published_errors(payload: dict[str, Any]) -> list[str]:
    """What is wrong with ``payload`` by its type's published schema ([] when it conforms)."""
    validator = published_validator(payload["type"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(payload)]
