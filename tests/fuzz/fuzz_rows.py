"""Fuzz the records-to-rows builders (telemetry/_rows.c) against the writer's Python row builders.

The fuzz data is read (atheris.FuzzedDataProvider) as a list of LogRecord or Span whose fields hold what the
decoders can put there, and more: any text (lone surrogates, NUL), integers past their column's range, floats
NaN and infinite, nested attribute maps and lists (deep ones too), keys that are not strings, values JSON has no
form for. For any such list: the sanitizer build must not fault; when ``_rows`` builds the rows they must be the
Python builders' (tests/unit/test_copy_rows.py's oracle); when it raises, the Python builders must raise too.

Run by ``make fuzz`` (tests/fuzz/run.sh), seeds in tests/fuzz/corpus/rows.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tests.fuzz import sanitized

if __name__ == "__main__":  # the fuzzer's run: the sanitizer build (imported, by replay.py: the in-place one)
    sanitized.load()

import atheris
from observai.telemetry import copy_rows
from observai.telemetry.model import LogRecord, Span

from tests.unit.test_copy_rows import (
    NOW,
    ORG,
    PROJECT,
    RETENTION,
    python_logs,
    python_spans,
    same_logs,
    same_spans,
)

TEXTS = ["", "service.name", "checkout", "a\x00b", "ü", "𝄞", "\ud800", '"\\\n\t\x07', "ab" * 16, "cd" * 8]
KINDS = ["internal", "server", "client", "producer", "consumer"]
STATUS = ["unset", "ok", "error"]


class Draw:
    """Values of the records' fields, from the fuzz data."""

    def __init__(self, data: bytes) -> None:
        self.fdp = atheris.FuzzedDataProvider(data)

    def pick(self, n: int) -> int:
        return self.fdp.ConsumeIntInRange(0, n - 1)

    def text(self) -> str:
        if self.fdp.ConsumeBool():
            return TEXTS[self.pick(len(TEXTS))]
        return self.fdp.ConsumeUnicode(self.pick(40))  # any code point, surrogates too

    def optional_text(self) -> str | None:
        return None if self.pick(4) == 0 else self.text()

    def integer(self) -> int:
        """Mostly small, now and then at or past 16, 32, 64 bits (either sign)."""
        which = self.pick(4)
        if which == 0:
            return self.fdp.ConsumeIntInRange(-5, 30)
        if which == 1:
            return NOW + self.fdp.ConsumeIntInRange(-(10**15), 10**15)
        return self.fdp.ConsumeInt(self.pick(10) + 1)  # up to 80 bits, signed

    def time(self) -> int:
        return NOW if self.pick(3) == 0 else self.integer()

    def value(self, depth: int) -> Any:
        which = self.pick(14 if depth < 70 else 9)
        if which == 0:
            return None
        if which == 1:
            return self.fdp.ConsumeBool()
        if which == 2:
            return self.integer()
        if which == 3:
            return self.fdp.ConsumeFloat()  # NaN and ±inf included
        if which in (4, 5):
            return self.text()
        if which == 6:
            return datetime(2026, 1, 2, tzinfo=UTC)
        if which == 7:  # a UUID only near the top: orjson 3.13 overflows its buffer on deep ones (docs/fuzzing.md)
            return uuid.UUID(int=self.pick(1 << 16)) if depth < 8 else None
        if which == 8:
            return {self.integer(): self.text()}  # a key that is not a string
        if which in (9, 10):
            return [self.value(depth + 1) for _ in range(self.pick(4))]
        if which == 11:
            return tuple(self.value(depth + 1) for _ in range(self.pick(3)))
        return self.attributes(depth + 1)

    def attributes(self, depth: int = 0) -> dict[str, Any]:
        return {self.text(): self.value(depth) for _ in range(self.pick(5))}

    def scope(self) -> dict[str, Any] | None:
        if self.pick(3) == 0:
            return None
        return {"name": self.text(), "version": self.optional_text(), "attributes": self.attributes()}

    def log(self, resources: list[dict[str, Any]]) -> LogRecord:
        return LogRecord(
            time_ns=self.time(),
            body=self.text(),
            severity_number=self.integer(),
            severity_text=self.optional_text(),
            service=self.optional_text(),
            attributes=self.attributes(),
            resource=resources[self.pick(len(resources))],
            scope=self.scope(),
            observed_time_ns=None if self.fdp.ConsumeBool() else self.time(),
            trace_id=self.optional_text(),
            span_id=self.optional_text(),
            flags=self.integer(),
            event_id=self.optional_text(),
            event_name=self.optional_text(),
        )

    def span(self, resources: list[dict[str, Any]]) -> Span:
        start = self.time()
        return Span(
            trace_id=self.text(),
            span_id=self.text(),
            name=self.text(),
            start_time_ns=start,
            end_time_ns=start + self.integer() if self.fdp.ConsumeBool() else self.time(),
            parent_span_id=self.optional_text(),
            kind=KINDS[self.pick(len(KINDS))] if self.fdp.ConsumeBool() else self.text(),
            service=self.optional_text(),
            status_code=STATUS[self.pick(len(STATUS))] if self.fdp.ConsumeBool() else self.text(),
            status_message=self.optional_text(),
            attributes=self.attributes(),
            resource=resources[self.pick(len(resources))],
            scope=self.scope(),
            events=[
                {"time_ns": self.time(), "name": self.text(), "attributes": self.attributes()}
                for _ in range(self.pick(3))
            ],
            links=[
                {
                    "trace_id": self.text(),
                    "span_id": self.text(),
                    "trace_state": self.optional_text(),
                    "attributes": self.attributes(),
                }
                for _ in range(self.pick(3))
            ],
            trace_state=self.optional_text(),
            flags=self.integer(),
            event_id=self.optional_text(),
        )


def refused_by_python(build: Any, records: Any) -> bool:
    try:
        build(records)
    except Exception:
        return True
    return False


def test_one_input(data: bytes) -> None:
    draw = Draw(data)
    spans = draw.fdp.ConsumeBool()
    resources = [{}] + [draw.attributes() for _ in range(draw.pick(3))]  # shared by several records, as decoded
    make = draw.span if spans else draw.log
    records = [make(resources) for _ in range(draw.pick(8))]
    try:
        if spans:
            copy_rows.span_payload(records, ORG, PROJECT, 11)
        else:
            copy_rows.log_payload(records, ORG, PROJECT, RETENTION, Counter())
    except Exception as exc:
        python = python_spans if spans else python_logs
        assert refused_by_python(python, records), f"C raised {exc!r}, the Python builders build the rows"
        return
    (same_spans if spans else same_logs)(records)  # None, or the Python builders' rows


def main() -> None:
    sanitized.check_loaded()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
