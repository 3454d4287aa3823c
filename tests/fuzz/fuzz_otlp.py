"""Fuzz the OTLP fast path (otlp/_wire.c) against the Python path: the same rows, or the request left to Python.

An input is one byte choosing the signal (logs, traces, metrics) and the limits (the defaults, or small ones that
make every length and count limit reachable), then the request body. For any body: the sanitizer build must not
fault, and when ``wire_rows`` takes the request, decode.py must accept every item of it and the writer's row
builders must give the same rows, log volume counts and series (tests/unit/test_otlp_wire.py's oracle). When the
Python path refuses the body (InvalidInput, PayloadTooLarge) or rejects an item, the fast path must not take it.

Run by ``make fuzz`` (tests/fuzz/run.sh), seeds in tests/fuzz/corpus/otlp.
"""

from __future__ import annotations

import sys

from tests.fuzz import sanitized

if __name__ == "__main__":  # the fuzzer's run: the sanitizer build (imported, by replay.py: the in-place one)
    sanitized.load()

import atheris
from observai.errors import InvalidInput, PayloadTooLarge
from observai.telemetry import writer
from observai.telemetry.limits import DEFAULT_LIMITS, IngestLimits
from observai.telemetry.model import Signal
from observai.telemetry.otlp.decode import decode_otlp
from observai.telemetry.series import series_id

from tests.unit.test_otlp_wire import NOW, assert_same_rows, fast_rows

SIGNALS = (Signal.LOGS, Signal.TRACES, Signal.METRICS)
SMALL_LIMITS = IngestLimits(
    max_events=6,
    max_attributes=3,
    max_key_length=5,
    max_value_length=8,
    max_body_length=12,
    max_name_length=6,
    max_past_s=3_600,
    max_future_s=60,
)


def split(data: bytes) -> tuple[Signal, IngestLimits, bytes]:
    head = data[0] if data else 0
    return SIGNALS[head % 3], SMALL_LIMITS if head & 0x80 else DEFAULT_LIMITS, data[1:]


def python_takes_it_whole(signal: Signal, body: bytes, limits: IngestLimits) -> bool:
    """decode.py accepts the body and every item in it, and the writer would write each item once."""
    try:
        batch = decode_otlp(signal, body, encoding="protobuf", now_ns=NOW, limits=limits)
    except (InvalidInput, PayloadTooLarge):
        return False
    if batch.rejected:
        return False
    if signal is Signal.METRICS:
        keys, types = set(), {}
        for p in batch.metrics:
            sid = series_id(p.name, p.attributes)
            keys.add((sid, writer.pg_time(p.time_ns)))
            types.setdefault(sid, set()).add(p.type.value)
        return len(keys) == len(batch.metrics) and all(len(t) == 1 for t in types.values())
    return True


def test_one_input(data: bytes) -> None:
    signal, limits, body = split(data)
    if python_takes_it_whole(signal, body, limits):
        assert_same_rows(signal, body, limits)  # or the fast path left it to Python: both fine
    else:
        assert fast_rows(signal, body, limits) is None, "the fast path took a request the Python path refuses"


def main() -> None:
    sanitized.check_loaded()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
