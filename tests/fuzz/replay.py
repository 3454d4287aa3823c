"""Run fuzz inputs through a harness on the normal in-place build, without sanitizers: to see what a finding is.

    PYTHONPATH=. .venv/bin/python -m tests.fuzz.replay otlp build/fuzz/findings/otlp-crash-...

Prints what the input decodes to (otlp) and the harness's failure, if any, for each file.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path


def main() -> None:
    harness, files = sys.argv[1], sys.argv[2:]
    module = importlib.import_module(f"tests.fuzz.fuzz_{harness}")
    for name in files:
        data = Path(name).read_bytes()
        if harness == "otlp":
            describe_otlp(module, data)
        try:
            module.test_one_input(data)
        except Exception:
            print(f"{name}: FAILS")
            traceback.print_exc()
        else:
            print(f"{name}: passes")


def describe_otlp(module, data: bytes) -> None:  # type: ignore[no-untyped-def]
    from observai.telemetry.otlp.parse import parse_request

    signal, limits, body = module.split(data)
    print(signal, "small limits" if limits is module.SMALL_LIMITS else "default limits")
    try:
        print(parse_request(signal, body, "protobuf"))
    except Exception as exc:
        print("does not parse:", exc)


if __name__ == "__main__":
    main()
