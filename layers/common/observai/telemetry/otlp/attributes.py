"""OTLP common messages (AnyValue, KeyValue, InstrumentationScope) to plain JSON-able Python values.

AnyValue maps to JSON as: string, bool, int, double (non-finite doubles become the strings "NaN",
"Infinity" and "-Infinity", as in the protobuf JSON mapping, because JSON and Postgres jsonb have no
such numbers), array → list, kvlist → dict (the last of duplicate keys wins), bytes → base64 string,
an empty AnyValue → None.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1 import common_pb2

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def json_float(value: float) -> float | str:
    """A double as JSON can carry it: finite as is, NaN and infinities as the protobuf JSON strings."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NON_FINITE[value]


def any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as a JSON-able Python value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return json_float(value.double_value)
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None  # unset, or string_value_strindex (a profiles-only dictionary reference)


def attributes(key_values: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    """A repeated KeyValue as a dict; string values, by far the most common, take the short path."""
    result: dict[str, Any] = {}
    for kv in key_values:
        value = kv.value
        if value.WhichOneof("value") == "string_value":
            result[kv.key] = value.string_value
        else:
            result[kv.key] = any_value(value)
    return result


def scope(instrumentation_scope: common_pb2.InstrumentationScope) -> dict[str, Any]:
    """The instrumentation scope as {"name", "version", "attributes"} (empty strings → None)."""
    return {
        "name": instrumentation_scope.name or None,
        "version": instrumentation_scope.version or None,
        "attributes": attributes(instrumentation_scope.attributes),
    }


def body_text(value: common_pb2.AnyValue) -> str:
    """A log body as text: a string body as is, any other AnyValue as compact JSON, no body as ""."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    return json.dumps(any_value(value), separators=(",", ":"), ensure_ascii=False)
