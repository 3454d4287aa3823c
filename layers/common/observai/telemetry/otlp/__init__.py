"""OpenTelemetry OTLP/HTTP: request bodies (protobuf or OTLP/JSON) to a ``Batch``, and the responses.

The ingest function imports this package; it loads the opentelemetry-proto message modules once,
at import (cold start), and nothing else heavy.
"""

from __future__ import annotations

from observai.telemetry.otlp.decode import decode_otlp
from observai.telemetry.otlp.encode import CONTENT_TYPES, encode_export_response, encode_status, summarise_rejections
from observai.telemetry.otlp.parse import Encoding

__all__ = [
    "CONTENT_TYPES",
    "Encoding",
    "decode_otlp",
    "encode_export_response",
    "encode_status",
    "summarise_rejections",
]
