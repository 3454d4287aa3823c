"""OTLP/JSON request bodies to protobuf bytes, in C (``json_pb.h``, part of the ``_wire`` extension): the fast
path of an OTLP/JSON request.

An OTLP/JSON body is read once, guided by a schema built here from the request messages' descriptors, and written
as the same Export*ServiceRequest in the protobuf binary encoding. From there on the request is a protobuf
request: the writer builds its rows straight from those bytes (``wire.py``), or the Python path parses them
(``decode.py``). About 1 µs a span, where the Python reading (``json.loads``, then ``json_build``, then the
messages' constructors and ``SerializeToString``) took about 35.

It takes only the canonical forms, with the meaning ``json_build`` gives them (and ``json_format.ParseDict``
after it); for any other body it answers None and ``parse.parse_request`` reads the JSON in Python, with its
errors (tests/unit/test_otlp_json_wire.py holds both to the same messages and the same rows).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from observai.telemetry.model import Signal
from observai.telemetry.otlp.wire import _wire

_T = FieldDescriptor
# The kinds of json_pb.h (K_*), in its order.
_KINDS = {
    _T.TYPE_STRING: 0,
    _T.TYPE_BYTES: 1,  # base64: left to the Python path (only AnyValue.bytes_value is bytes, and rare)
    _T.TYPE_BOOL: 3,
    _T.TYPE_DOUBLE: 4,
    _T.TYPE_INT32: 5,
    _T.TYPE_SINT32: 6,
    _T.TYPE_UINT32: 7,
    _T.TYPE_INT64: 8,
    _T.TYPE_SINT64: 9,
    _T.TYPE_UINT64: 10,
    _T.TYPE_FIXED32: 11,
    _T.TYPE_SFIXED32: 12,
    _T.TYPE_FIXED64: 13,
    _T.TYPE_SFIXED64: 14,
    _T.TYPE_ENUM: 15,
    _T.TYPE_MESSAGE: 16,
}
_HEX = 2
_UNSUPPORTED = 17  # float, groups, maps: none in OTLP; the Python path would take them
_REPEATED, _PRESENCE = 1, 2
# Bytes fields OTLP/JSON spells as hex (json_build._HEX_IDS).
_HEX_IDS = frozenset({"trace_id", "span_id", "parent_span_id"})


def available() -> bool:
    return _wire is not None


def schema_of(descriptor: Descriptor) -> tuple[tuple[tuple[Any, ...], ...], ...]:
    """The messages reachable from ``descriptor`` (it first), each a tuple of its fields as json_pb.h reads them."""
    order: list[Descriptor] = [descriptor]
    index = {descriptor.full_name: 0}
    messages: list[tuple[tuple[Any, ...], ...]] = []
    i = 0
    while i < len(order):
        fields = []
        for field in order[i].fields:
            kind = _KINDS.get(field.type, _UNSUPPORTED)
            sub = -1
            if field.type == _T.TYPE_BYTES and field.name in _HEX_IDS:
                kind = _HEX
            elif field.type == _T.TYPE_MESSAGE:
                message = field.message_type
                if message.GetOptions().map_entry:
                    kind = _UNSUPPORTED
                else:
                    if message.full_name not in index:
                        index[message.full_name] = len(order)
                        order.append(message)
                    sub = index[message.full_name]
            flags = (_REPEATED if field.is_repeated else 0) | (_PRESENCE if field.has_presence else 0)
            oneof = field.containing_oneof
            enums = tuple(field.enum_type.values_by_number) if field.type == _T.TYPE_ENUM else ()
            fields.append(
                (
                    field.json_name,
                    field.name,
                    field.number,
                    kind,
                    flags,
                    -1 if oneof is None else oneof.index,
                    sub,
                    enums,
                )
            )
        messages.append(tuple(fields))
        i += 1
    return tuple(messages)


@cache
def _schema(signal: Signal) -> Any:
    from observai.telemetry.otlp.parse import REQUEST_TYPES

    assert _wire is not None
    return _wire.json_schema(schema_of(REQUEST_TYPES[signal].DESCRIPTOR))


def to_protobuf(signal: Signal, body: bytes) -> bytes | None:
    """The OTLP/JSON request ``body`` as protobuf bytes, or None when the Python path must read it."""
    if _wire is None:
        return None
    result: bytes | None = _wire.json_to_protobuf(_schema(signal), body)
    return result
