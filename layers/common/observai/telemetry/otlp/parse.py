"""An OTLP/HTTP request body (binary protobuf or OTLP/JSON) to its Export*ServiceRequest message.

OTLP/JSON is the proto3 JSON mapping with the OTLP deviations (opentelemetry-proto
docs/specification.md, "JSON Protobuf Encoding"): trace and span ids are case-insensitive hex
strings, not base64; enums are integers; unknown fields are ignored; keys are lowerCamelCase;
64-bit integers may be strings or numbers. A document in the canonical forms is built by the messages'
constructors (``json_build``), or before that, at C speed, written as protobuf bytes (``json_wire``); for any
other, we rewrite the hex ids to base64 and let
``json_format.ParseDict`` do the rest (and say what is wrong). Both encodings share one message → model path.

Lenient on purpose, as receivers usually are: the proto field names (snake_case) are accepted as
well as lowerCamelCase (ParseDict takes both; the Collector's own JSON reader does too), and an id
that is not hex is handed to ParseDict as base64 (the standard protobuf JSON form some exporters
send); its byte length is then checked per item like any other id.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from observai.errors import InvalidInput
from observai.telemetry.model import Signal
from observai.telemetry.otlp import json_wire
from observai.telemetry.otlp.json_build import build_request
from observai.text import may_hold_surrogates, storable

Encoding = Literal["protobuf", "json"]

REQUEST_TYPES: dict[Signal, type[Message]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
}

_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id")
_SPAN_ID_KEYS = (*_ID_KEYS, "parentSpanId", "parent_span_id")
_METRIC_DATA_KEYS = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")


def parse_request(signal: Signal, body: bytes, encoding: Encoding) -> Any:
    """The request message for ``signal``; InvalidInput, with the reason, when the body does not decode."""
    message = REQUEST_TYPES[signal]()
    if encoding == "protobuf":
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise InvalidInput(f"the body is not a valid protobuf {message.DESCRIPTOR.name}: {exc}") from None
        return message
    if encoding != "json":
        raise InvalidInput(f"unsupported OTLP encoding {encoding!r}")
    transcoded = json_wire.to_protobuf(signal, body)  # the canonical forms, in C
    if transcoded is not None:
        message.ParseFromString(transcoded)
        return message
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidInput("the body is not UTF-8 JSON") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"the body must be a JSON object (an OTLP {message.DESCRIPTOR.name})")
    if may_hold_surrogates(body):  # a lone surrogate is no protobuf string: U+FFFD, as in every telemetry text
        document = storable(document)
    built = build_request(REQUEST_TYPES[signal], document)  # the canonical forms, at C speed
    if built is not None:
        return built
    hex_ids_to_base64(signal, document)
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidInput(f"the body is not a valid OTLP/JSON {message.DESCRIPTOR.name}: {exc}") from None
    except (RecursionError, ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        # ParseDict's guards are not exhaustive for every wrong shape; none of these is ever a 500.
        raise InvalidInput(f"the body is not a valid OTLP/JSON {message.DESCRIPTOR.name}: {exc!r}") from None
    return message


def hex_ids_to_base64(signal: Signal, document: dict[str, Any]) -> None:
    """Rewrite, in place, the hex trace/span ids of an OTLP/JSON document to protobuf JSON's base64.

    Walks only the places ids live (spans and their links, log records, exemplars); a node of the
    wrong shape is left alone for ParseDict to refuse with its path.
    """
    if signal is Signal.TRACES:
        for span in _children(document, ("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans",)):
            _convert_ids(span, _SPAN_ID_KEYS)
            for link in _list(span, ("links",)):
                _convert_ids(link, _ID_KEYS)
    elif signal is Signal.LOGS:
        for record in _children(
            document, ("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records")
        ):
            _convert_ids(record, _ID_KEYS)
    else:
        for metric in _children(
            document, ("resourceMetrics", "resource_metrics"), ("scopeMetrics", "scope_metrics"), ("metrics",)
        ):
            for key in _METRIC_DATA_KEYS:
                data = metric.get(key)
                if isinstance(data, dict):
                    for point in _list(data, ("dataPoints", "data_points")):
                        for exemplar in _list(point, ("exemplars",)):
                            _convert_ids(exemplar, _ID_KEYS)


def _list(node: dict[str, Any], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in keys:
        items = node.get(key)
        if isinstance(items, list):
            out.extend(item for item in items if isinstance(item, dict))
    return out


def _children(document: dict[str, Any], *levels: tuple[str, ...]) -> list[dict[str, Any]]:
    nodes = [document]
    for keys in levels:
        nodes = [child for node in nodes for child in _list(node, keys)]
    return nodes


def _convert_ids(node: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = node.get(key)
        if isinstance(value, str) and value:
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                continue  # not hex: ParseDict reads it as base64, the plain protobuf JSON form
            node[key] = base64.b64encode(raw).decode("ascii")


__all__ = ["REQUEST_TYPES", "Encoding", "hex_ids_to_base64", "parse_request"]
