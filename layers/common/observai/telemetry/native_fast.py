"""The fast path of the native format: msgspec decodes and validates a clean batch in one pass.

The same schema as the pydantic TypedDicts of ``native`` (which stay the source of truth: the OpenAPI document,
and every rejection with its reason), but never laxer: anything pydantic would reject, msgspec rejects too, and
some things pydantic accepts (numeric strings, unix timestamps as datetimes, ``5.0`` for an int, NaN) it rejects
as well. On any msgspec error the caller falls back to pydantic, so rejections and reasons are pydantic's.
A test (tests/unit/test_native_fast.py) keeps the field names and required fields of both schemas the same.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# Python's re (msgspec's) lets "$" match before a final newline; pydantic's regex does not: \Z is its end.
HexTraceId = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{32}\Z")]
HexSpanId = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{16}\Z")]
EventId = Annotated[str, Meta(min_length=1, max_length=128)]
Name = Annotated[str, Meta(min_length=1, max_length=512)]
Attributes = dict[str, Any]
Str32 = Annotated[str, Meta(max_length=32)]
Str64 = Annotated[str, Meta(max_length=64)]
Str256 = Annotated[str, Meta(max_length=256)]
Str1024 = Annotated[str, Meta(max_length=1024)]


class _Base(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True, tag_field="type"):
    time: datetime | UnsetType = UNSET
    time_unix_nano: Annotated[int, Meta(gt=0)] | UnsetType = UNSET
    service: Str256 | UnsetType = UNSET
    attributes: Attributes | UnsetType = UNSET
    resource: Attributes | UnsetType = UNSET
    event_id: EventId | UnsetType = UNSET


class MetricEvent(_Base, kw_only=True, tag="metric"):
    name: Name
    kind: Literal["gauge", "sum", "histogram", "summary"] | UnsetType = UNSET
    value: float | UnsetType | None = UNSET
    unit: Str64 | UnsetType = UNSET
    description: Str1024 | UnsetType = UNSET
    monotonic: bool | UnsetType = UNSET
    temporality: Literal["cumulative", "delta"] | UnsetType = UNSET
    start_time: datetime | UnsetType = UNSET
    count: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    sum: float | UnsetType = UNSET
    min: float | UnsetType = UNSET
    max: float | UnsetType = UNSET
    bounds: list[float] | UnsetType = UNSET
    bucket_counts: list[Annotated[int, Meta(ge=0)]] | UnsetType = UNSET
    quantiles: list[tuple[float, float]] | UnsetType = UNSET


class LogEvent(_Base, kw_only=True, tag="log"):
    body: str | dict[str, Any] | list[Any]
    severity: Str32 | Annotated[int, Meta(ge=0, le=24)] | UnsetType = UNSET
    trace_id: HexTraceId | UnsetType = UNSET
    span_id: HexSpanId | UnsetType = UNSET
    event_name: Str256 | UnsetType = UNSET


class SpanEventIn(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    name: Name
    time: datetime
    attributes: Attributes | UnsetType = UNSET


class SpanLinkIn(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    trace_id: HexTraceId
    span_id: HexSpanId
    attributes: Attributes | UnsetType = UNSET


class SpanEvent(_Base, kw_only=True, tag="span"):
    trace_id: HexTraceId
    span_id: HexSpanId
    parent_span_id: HexSpanId | UnsetType = UNSET
    name: Name
    kind: Literal["internal", "server", "client", "producer", "consumer"] | UnsetType = UNSET
    start_time: datetime
    end_time: datetime | UnsetType = UNSET
    duration_ms: Annotated[float, Meta(ge=0)] | UnsetType = UNSET
    status: Literal["unset", "ok", "error"] | UnsetType = UNSET
    status_message: Str1024 | UnsetType = UNSET
    events: Annotated[list[SpanEventIn], Meta(max_length=128)] | UnsetType = UNSET
    links: Annotated[list[SpanLinkIn], Meta(max_length=128)] | UnsetType = UNSET


_DECODER = msgspec.json.Decoder(list[MetricEvent | LogEvent | SpanEvent])
_KEEP = (datetime,)  # to_builtins leaves datetimes as they are (the converter takes datetime objects)
# msgspec rounds a fraction of a second past the microsecond, pydantic truncates it: a body with such a time goes
# to pydantic. A dot and seven digits, then a colon and two digits before: only a time (a JSON number has no colon).
_SEVEN_DECIMALS = re.compile(rb"\.[0-9]{7}")
_DIGITS = b"0123456789"


def _sub_microsecond_time(body: bytes) -> bool:
    for match in _SEVEN_DECIMALS.finditer(body):
        at = match.start()
        if at >= 4 and body[at - 3] == 58 and body[at - 1] in _DIGITS and body[at - 2] in _DIGITS:  # 58: ':'
            return True
    return False


def decode(body: bytes) -> list[dict[str, Any]] | None:
    """The events of a batch as pydantic would give them (plain dicts, only the keys present), or None when
    msgspec cannot take the body as it is: then pydantic decides, with its reasons."""
    if _sub_microsecond_time(body):
        return None
    try:
        events: list[dict[str, Any]] = msgspec.to_builtins(_DECODER.decode(body), builtin_types=_KEEP)
    except (msgspec.MsgspecError, RecursionError):
        return None
    return events
