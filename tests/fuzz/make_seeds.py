"""Write the seed corpus of the fuzz harnesses (tests/fuzz/corpus): python -m tests.fuzz.make_seeds.

otlp: the tests' OTLP requests (every field, every metric type, a few of each item), each for the default limits
and for the small ones (fuzz_otlp.split), so that mutations start from requests the fast path takes.
otlp_json: the same requests as OTLP/JSON (fuzz_otlp_json: the signal byte, then the JSON), in the spellings the
C path takes (lowerCamelCase, proto names, upper-case hex, 64-bit integers as numbers).
rows, otlp_messages: fuzz data for FuzzedDataProvider has no structure to start from: a few fixed pseudo-random
inputs (and, for otlp_messages, the empty one: every choice the usual, a one-item request).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from opentelemetry.proto.trace.v1 import trace_pb2

from tests.helpers.otlp_payloads import (
    S,
    any_value,
    key_values,
    logs_request,
    many_logs_request,
    many_points_request,
    many_spans_request,
    metrics_request,
    traces_request,
)
from tests.unit.test_otlp_wire import (
    NOW,
    SPAN,
    TRACE,
    a_log,
    a_point,
    a_span,
    gauge,
    logs_body,
    metrics_body,
    spans_body,
)

CORPUS = Path(__file__).parent / "corpus"


def otlp_bodies() -> list[tuple[int, bytes]]:
    """(signal byte: 0 logs, 1 traces, 2 metrics; body)"""
    return [
        (0, logs_request(NOW).SerializeToString()),
        (0, many_logs_request(3, NOW).SerializeToString()),
        (0, logs_body(a_log(attributes=key_values({"k": [1, "a", {"n": 2.5}], "b": b"\x00\xff"})))),
        (0, logs_body(a_log(trace_id=TRACE, span_id=SPAN, flags=1, body=any_value({"m": [True, None]})))),
        (1, traces_request(NOW).SerializeToString()),
        (1, many_spans_request(3, NOW, attributes_per_span=3).SerializeToString()),
        (
            1,
            spans_body(
                a_span(
                    events=[
                        trace_pb2.Span.Event(name="e", time_unix_nano=NOW - 5 * S, attributes=key_values({"x": 1}))
                    ],
                    links=[trace_pb2.Span.Link(trace_id=TRACE, span_id=SPAN, trace_state="a=1")],
                    status=trace_pb2.Status(code=2, message="boom"),
                )
            ),
        ),
        (2, metrics_request(NOW).SerializeToString()),
        (2, many_points_request(4, NOW).SerializeToString()),
        (2, metrics_body(gauge(a_point(), a_point(as_int=7, time_unix_nano=NOW - 9 * S)))),
    ]


def otlp_json_bodies() -> list[tuple[int, bytes]]:
    import json

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.helpers.otlp_payloads import to_otlp_dict
    from tests.unit.test_otlp_json_build import _int64_as_numbers

    types = (ExportLogsServiceRequest, ExportTraceServiceRequest, ExportMetricsServiceRequest)
    out = []
    for signal, body in otlp_bodies():
        message = types[signal].FromString(body)
        for document in (
            to_otlp_dict(message),
            to_otlp_dict(message, snake_case=True),
            _int64_as_numbers(to_otlp_dict(message, upper_hex=True)),
        ):
            out.append((signal, json.dumps(document, ensure_ascii=False).encode()))
    # Escapes the C path must join or leave: surrogate pairs, lone surrogates, NUL beside them (traces).
    from tests.unit.test_otlp_json_wire import ODD_BODIES

    out += [(1, body) for name, body in ODD_BODIES.items() if "surrogate" in name or "NUL" in name]
    return out


def write(folder: Path, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data, usedforsecurity=False).hexdigest()).write_bytes(data)


def main() -> None:
    for signal, body in otlp_bodies():
        write(CORPUS / "otlp", bytes([signal]) + body)
        write(CORPUS / "otlp", bytes([0x80 | signal]) + body)
    for signal, body in otlp_json_bodies():
        write(CORPUS / "otlp_json", bytes([signal]) + body)
    noise = random.Random(11)  # fixed: the same seeds on every run
    for size in (16, 64, 256, 1024, 4096):
        write(CORPUS / "rows", noise.randbytes(size))
    write(CORPUS / "otlp_messages", b"")
    for size in (8, 32, 128, 512, 2048):
        write(CORPUS / "otlp_messages", noise.randbytes(size))


if __name__ == "__main__":
    main()
