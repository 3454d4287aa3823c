"""Fuzz the OTLP/JSON C path (otlp/json_pb.h) against the Python reading: the same message, or the body left to it.

An input is one byte choosing the signal (logs, traces, metrics), then the OTLP/JSON body. For any body: the
sanitizer build must not fault, and when ``json_wire.to_protobuf`` takes it, the bytes must parse as the message
the Python reading of the JSON (json.loads, the messages' constructors, ParseDict) gives
(tests/unit/test_otlp_json_wire.py's oracle).

Run by ``make fuzz`` (tests/fuzz/run.sh), seeds in tests/fuzz/corpus/otlp_json.
"""

from __future__ import annotations

import sys

from tests.fuzz import sanitized

if __name__ == "__main__":  # the fuzzer's run: the sanitizer build (imported, by replay.py: the in-place one)
    sanitized.load()

import atheris
from observai.telemetry.model import Signal

from tests.unit.test_otlp_json_wire import c_reading, python_reading

SIGNALS = (Signal.LOGS, Signal.TRACES, Signal.METRICS)


def test_one_input(data: bytes) -> None:
    signal, body = SIGNALS[(data[0] if data else 0) % 3], data[1:]
    got = c_reading(signal, body)
    if got is not None:
        assert got == python_reading(signal, body), "the C path read the JSON otherwise than the Python reading"


def main() -> None:
    sanitized.check_loaded()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
