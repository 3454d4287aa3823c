"""OTLP/JSON documents to request messages, through the messages' own constructors (upb, in C).

``json_format.ParseDict`` walks a document field by field in Python and sets each one on the message: about
100 µs a span. Here the document is normalised in one light pass (field names, hex ids to bytes, 64-bit integers
given as strings) and the whole request built by one constructor call: several times faster. Only the canonical
forms are taken: anything else (an enum by name, a non-hex id, a string where a number
is due, NaN as a string, two fields of one oneof, a field named twice...) makes ``build_request`` answer None,
and ParseDict decides, with its errors. Tests hold both to the same messages (tests/unit/test_otlp_json_build.py).
"""

from __future__ import annotations

import base64
import re
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

_T = FieldDescriptor
_INTEGER_RANGES = {
    _T.TYPE_INT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _T.TYPE_UINT32: (0, 2**32 - 1),
    _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_INT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1),
    _T.TYPE_FIXED64: (0, 2**64 - 1),
}
_DIGITS = re.compile(r"-?[0-9]+\Z")
# Bytes fields OTLP/JSON spells as hex (the specification's deviation from the protobuf JSON mapping).
_HEX_IDS = frozenset({"trace_id", "span_id", "parent_span_id"})
# Messages nested deeper are ParseDict's to refuse (its recursion limit is 100; the constructors have none).
MAX_DEPTH = 64


class _Odd(Exception):
    """A form this builder leaves to ParseDict."""


def build_request(message_type: type[Message], document: Any) -> Message | None:
    """The request ``document`` describes, or None when ParseDict must judge it."""
    try:
        return message_type(**_message(message_type.DESCRIPTOR, document, 0))
    except (_Odd, TypeError, ValueError, OverflowError, RecursionError):
        return None


@cache
def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """Fields by their JSON name and by their proto name (ParseDict takes both)."""
    fields = {field.name: field for field in descriptor.fields}
    fields.update({field.json_name: field for field in descriptor.fields})
    return fields


@cache
def _oneofs(descriptor: Descriptor) -> tuple[frozenset[str], ...]:
    return tuple(frozenset(f.name for f in oneof.fields) for oneof in descriptor.oneofs)


def _message(descriptor: Descriptor, node: Any, depth: int) -> dict[str, Any]:
    if node.__class__ is not dict or depth > MAX_DEPTH:
        raise _Odd
    fields = _fields(descriptor)
    out: dict[str, Any] = {}
    for key, value in node.items():
        field = fields.get(key)
        if field is None or value is None:
            continue  # unknown fields are ignored; null is the default
        if field.name in out:
            raise _Odd  # the same field under both names
        if field.is_repeated:
            if value.__class__ is not list:
                raise _Odd
            out[field.name] = [_value(field, item, depth) for item in value]
        else:
            out[field.name] = _value(field, value, depth)
    for oneof in _oneofs(descriptor):
        if len(oneof.intersection(out)) > 1:
            raise _Odd
    return out


def _value(field: FieldDescriptor, value: Any, depth: int) -> Any:
    kind = field.type
    cls = value.__class__
    if kind == _T.TYPE_MESSAGE:
        return _message(field.message_type, value, depth + 1)
    if kind == _T.TYPE_STRING:
        if cls is not str:
            raise _Odd
        return value
    if kind == _T.TYPE_BOOL:
        if cls is not bool:
            raise _Odd
        return value
    if kind in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        if cls is not float and cls is not int:
            raise _Odd
        return float(value)
    if kind == _T.TYPE_ENUM:
        if cls is not int or field.enum_type.values_by_number.get(value) is None:
            raise _Odd
        return value
    if kind == _T.TYPE_BYTES:
        if cls is not str:
            raise _Odd
        if field.name in _HEX_IDS:
            return bytes.fromhex(value)  # ValueError (not hex: base64, ParseDict's form): None
        # Base64 (bytes_value), decoded exactly as ParseDict decodes it (padding added, URL-safe alphabet too).
        encoded = value.encode()
        return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    bounds = _INTEGER_RANGES.get(kind)
    if bounds is None:
        raise _Odd
    if cls is str and _DIGITS.match(value):
        value = int(value)
    elif cls is not int:
        raise _Odd
    if not bounds[0] <= value <= bounds[1]:
        raise _Odd
    return value
