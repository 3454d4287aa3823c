"""OTLP/HTTP responses: Export*ServiceResponse (with partial_success when items were rejected) and the
google.rpc.Status body every 4xx/5xx carries, in the request's encoding.

The Status message (code = 1, message = 2, details = 3) is written by hand: google.rpc.status_pb2 lives
in googleapis-common-protos, which the Lambda layer does not need for anything else.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from observai.telemetry.model import Batch, Signal
from observai.telemetry.otlp.parse import Encoding

RESPONSE_TYPES: dict[Signal, Any] = {
    Signal.TRACES: ExportTraceServiceResponse,
    Signal.LOGS: ExportLogsServiceResponse,
    Signal.METRICS: ExportMetricsServiceResponse,
}
REJECTED_FIELDS = {
    Signal.TRACES: "rejected_spans",
    Signal.LOGS: "rejected_log_records",
    Signal.METRICS: "rejected_data_points",
}
CONTENT_TYPES: dict[str, str] = {"protobuf": "application/x-protobuf", "json": "application/json"}

MAX_SUMMARY_CHARS = 1000
MAX_PART_CHARS = 200  # one rejection's share of the summary
_NOUNS = {Signal.TRACES: "span", Signal.LOGS: "log record", Signal.METRICS: "data point", None: "event"}


def encode_export_response(signal: Signal, *, rejected: int, message: str | None, encoding: Encoding) -> bytes:
    """The Export<signal>ServiceResponse body.

    partial_success is set when items were rejected, or, with rejected = 0, to carry a warning
    message (both as the spec allows); otherwise it is left unset, as a full success requires.
    """
    response = RESPONSE_TYPES[signal]()
    if rejected > 0 or message:
        partial = response.partial_success
        setattr(partial, REJECTED_FIELDS[signal], max(0, rejected))
        partial.error_message = message or ""
        if not rejected:
            partial.SetInParent()
    if encoding == "protobuf":
        return bytes(response.SerializeToString())
    return json.dumps(json_format.MessageToDict(response), separators=(",", ":")).encode()


def encode_status(code: int, message: str, encoding: Encoding) -> bytes:
    """A google.rpc.Status body (gRPC-style code, developer-facing message) for an error response."""
    if encoding == "json":
        document: dict[str, Any] = {}
        if code:
            document["code"] = code
        if message:
            document["message"] = message
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    out = bytearray()
    if code:
        out.append(0x08)  # field 1 (code), varint
        out += _varint(code & 0xFFFF_FFFF_FFFF_FFFF)  # int32: negatives as ten-byte two's complement
    if message:
        text = message.encode("utf-8")
        out.append(0x12)  # field 2 (message), length-delimited
        out += _varint(len(text))
        out += text
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def summarise_rejections(batch: Batch, *, max_chars: int = MAX_SUMMARY_CHARS) -> str:
    """A short English summary of the rejected items, e.g. "2 spans rejected: span 0: name is empty; ..."

    Empty when nothing was rejected; cut at ``max_chars`` with a count of what was left out.
    """
    rejected = batch.rejected
    if not rejected:
        return ""
    signals = {r.signal for r in rejected}
    noun = _NOUNS[signals.pop()] if len(signals) == 1 else "event"
    head = f"{len(rejected)} {noun}{'' if len(rejected) == 1 else 's'} rejected: "
    parts: list[str] = []
    length = len(head)
    for i, rejection in enumerate(rejected):
        part = _clip(f"{noun} {rejection.index}: {rejection.reason}", MAX_PART_CHARS)
        left_after = len(rejected) - i - 1
        reserve = len(f"; and {left_after} more") if left_after else 0
        if parts and length + 2 + len(part) + reserve > max_chars:
            return head + "; ".join(parts) + f"; and {len(rejected) - i} more"
        parts.append(part)
        length += len(part) + (2 if i else 0)
    return _clip(head + "; ".join(parts), max_chars)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
