"""A Batch to compact JSON and back, exactly: how a validated batch travels through the spool (SQS, S3).

Each item is an object of its dataclass fields; fields equal to their default are left out (most of them,
for most items), enums are written as their values and restored by field type. Integers (nanosecond
times) and floats survive unchanged (Python's JSON writes the shortest repr that reads back the same
float; NaN and infinities are written as NaN/Infinity, which Python reads back). The output is ASCII.

``{"v": 1, "metrics": [...], "logs": [...], "spans": [...], "rejected": [...]}``; empty lists are omitted.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from observai.telemetry.model import Batch, LogRecord, MetricPoint, MetricType, Rejection, Signal, Span, Temporality

VERSION = 1

_MISSING = object()

# Fields whose values are enums, restored from their string values.
_ENUM_FIELDS: dict[type, dict[str, type]] = {
    MetricPoint: {"type": MetricType, "temporality": Temporality},
    LogRecord: {},
    Span: {},
    Rejection: {"signal": Signal},
}

_LISTS: tuple[tuple[str, type], ...] = (
    ("metrics", MetricPoint),
    ("logs", LogRecord),
    ("spans", Span),
    ("rejected", Rejection),
)


def _field_specs(cls: type) -> tuple[tuple[str, Any, Any], ...]:
    """(name, default, default_factory) per field; _MISSING where there is none."""
    specs = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else _MISSING
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else _MISSING
        specs.append((f.name, default, factory))
    return tuple(specs)


_SPECS = {cls: _field_specs(cls) for _, cls in _LISTS}


def _item_to_obj(item: Any, specs: tuple[tuple[str, Any, Any], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, default, factory in specs:
        value = getattr(item, name)
        if default is not _MISSING:
            if value is default or (value == default and type(value) is type(default)):
                continue
        elif factory is not _MISSING and not value and value == factory():
            continue
        out[name] = value
    return out


def _item_from_obj(cls: type, obj: Any) -> Any:
    if not isinstance(obj, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(obj).__name__}")
    enums = _ENUM_FIELDS[cls]
    if enums:
        obj = dict(obj)
        for name, enum in enums.items():
            value = obj.get(name)
            if value is not None:
                obj[name] = enum(value)
    try:
        return cls(**obj)
    except TypeError as exc:  # an unknown or missing field
        raise ValueError(f"{cls.__name__}: {exc}") from exc


def batch_to_obj(batch: Batch) -> dict[str, Any]:
    """The JSON-able form of ``batch`` (for embedding in a larger document, as the spool does)."""
    out: dict[str, Any] = {"v": VERSION}
    batch.complete()
    for key, cls in _LISTS:
        items = getattr(batch, key)
        if items:
            specs = _SPECS[cls]
            out[key] = [_item_to_obj(item, specs) for item in items]
    return out


def batch_from_obj(obj: Any) -> Batch:
    """The Batch from its JSON-able form; ValueError when it is not one."""
    if not isinstance(obj, dict):
        raise ValueError("a batch must be a JSON object")
    if obj.get("v") != VERSION:
        raise ValueError(f"unsupported batch encoding version {obj.get('v')!r}")
    unknown = set(obj) - {"v"} - {key for key, _ in _LISTS}
    if unknown:
        raise ValueError(f"unknown batch keys: {sorted(unknown)}")
    lists: dict[str, list[Any]] = {}
    for key, cls in _LISTS:
        items = obj.get(key, [])
        if not isinstance(items, list):
            raise ValueError(f"{key} must be a list")
        lists[key] = [_item_from_obj(cls, item) for item in items]
    return Batch(metrics=lists["metrics"], logs=lists["logs"], spans=lists["spans"], rejected=lists["rejected"])


def dumps(obj: Any) -> bytes:
    """Compact ASCII JSON (safe in an SQS message body)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def batch_to_json(batch: Batch) -> bytes:
    return dumps(batch_to_obj(batch))


def batch_from_json(data: bytes | str) -> Batch:
    """ValueError when ``data`` is not a batch this codec wrote."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    return batch_from_obj(obj)
