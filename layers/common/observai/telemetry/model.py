"""The decoded, validated form of every signal, whatever format it arrived in (native batch or OTLP).

Decoders produce a ``Batch``; the writer stores it. Times are integer nanoseconds since the Unix
epoch (what OTLP carries; no precision lost); attribute maps are plain JSON-able dicts with string
keys. Trace and span ids are lowercase hex strings (32 and 16 characters), as OTLP/JSON spells them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from observai.telemetry.signal import Signal

Attributes = dict[str, Any]


class MetricType(StrEnum):
    GAUGE = "gauge"
    SUM = "sum"
    HISTOGRAM = "histogram"
    EXPONENTIAL_HISTOGRAM = "exponential_histogram"
    SUMMARY = "summary"


class Temporality(StrEnum):
    CUMULATIVE = "cumulative"
    DELTA = "delta"


@dataclass(slots=True)
class MetricPoint:
    name: str
    type: MetricType
    time_ns: int
    attributes: Attributes  # resource attributes merged under point attributes: the series identity
    unit: str | None = None
    description: str | None = None
    start_time_ns: int | None = None
    value: float | None = None  # gauge and sum
    monotonic: bool | None = None  # sum only
    temporality: Temporality | None = None  # sum and histograms
    # histogram / exponential histogram / summary: count, sum, min, max and the buckets
    count: int | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    # histogram: {"bounds": [...], "counts": [...]}; exponential: {"scale", "zero_count", "zero_threshold",
    # "positive": {"offset", "counts"}, "negative": {...}}; summary: {"quantiles": [[q, v], ...]}
    distribution: dict[str, Any] | None = None
    exemplars: list[dict[str, Any]] | None = None
    flags: int = 0
    event_id: str | None = None
    scope: dict[str, Any] | None = None
    index: int = -1  # position in the request, for rejections found after decoding (series limits)


@dataclass(slots=True)
class LogRecord:
    time_ns: int
    body: str  # a string body as is; structured bodies as compact JSON
    severity_number: int = 0  # OTLP SeverityNumber 0..24
    severity_text: str | None = None
    service: str | None = None
    attributes: Attributes = field(default_factory=dict)
    resource: Attributes = field(default_factory=dict)
    scope: dict[str, Any] | None = None
    observed_time_ns: int | None = None
    trace_id: str | None = None
    span_id: str | None = None
    flags: int = 0
    event_id: str | None = None
    event_name: str | None = None


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    name: str
    start_time_ns: int
    end_time_ns: int
    parent_span_id: str | None = None
    kind: str = "internal"  # internal, server, client, producer, consumer
    service: str | None = None
    status_code: str = "unset"  # unset, ok, error
    status_message: str | None = None
    attributes: Attributes = field(default_factory=dict)
    resource: Attributes = field(default_factory=dict)
    scope: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # [{"time_ns", "name", "attributes"}]
    links: list[dict[str, Any]] = field(default_factory=list)  # [{"trace_id", "span_id", "trace_state", "attributes"}]
    trace_state: str | None = None
    flags: int = 0
    event_id: str | None = None


@dataclass(slots=True)
class Rejection:
    index: int  # position in the request: the event's index (native) or the item's ordinal (OTLP)
    reason: str
    signal: Signal | None = None


@dataclass(frozen=True, slots=True)
class RawRequest:
    """An OTLP request's protobuf bytes (as sent, or serialized from OTLP/JSON), kept beside its pending
    conversion: the writer builds its rows straight from these bytes when it can (``otlp/wire.py``), and the
    records are never made."""

    signal: Signal
    body: bytes
    now_ns: int
    limits: Any  # limits.IngestLimits (not imported here: the model depends on nothing)


@dataclass(slots=True)
class Batch:
    metrics: list[MetricPoint] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # Conversions a decoder left to do, per signal: each step of the iterator converts one more item into this
    # batch (its record appended to the signal's list, or a Rejection to ``rejected``). The writer takes the
    # records through ``records`` as it COPYs them, so converting the next ones overlaps Postgres storing the
    # previous ones; everything else completes the batch first.
    pending: dict[Signal, Iterator[None]] = field(default_factory=dict)
    raw: RawRequest | None = None
    # Signals whose rows were written straight from ``raw``, with their record count: every item was accepted.
    # Their records are still pending (converted only if something needs them: a careful retry, the spool).
    wired: dict[Signal, int] = field(default_factory=dict)

    def records(self, signal: Signal) -> Iterator[Any]:
        """The signal's records in order, converting the pending ones as they are taken (and keeping them)."""
        items: list[Any] = self._items(signal)
        i = 0
        while True:
            if i < len(items):
                yield items[i]
                i += 1
                continue
            pending = self.pending.get(signal)
            if pending is None:
                return
            if next(pending, _DONE) is _DONE:
                del self.pending[signal]

    def complete(self) -> Batch:
        """Run every pending conversion (idempotent); returns the batch."""
        while self.pending:
            signal = next(iter(self.pending))
            for _ in self.pending[signal]:
                pass
            del self.pending[signal]
        return self

    def signals(self) -> set[Signal]:
        """The signals the batch holds records of, or may once its pending conversions run."""
        return {signal for signal in Signal if signal in self.pending or self._items(signal)}

    def _items(self, signal: Signal) -> list[Any]:
        if signal is Signal.METRICS:
            return self.metrics
        return self.logs if signal is Signal.LOGS else self.spans

    def count(self, signal: Signal) -> int:
        """The signal's accepted records (converting pending ones unless their rows were wired)."""
        if signal in self.wired and signal in self.pending:
            return self.wired[signal]
        if signal in self.pending:
            for _ in self.pending.pop(signal):
                pass
        return len(self._items(signal))

    def rejections(self) -> list[Rejection]:
        """Every item refused while decoding (a wired signal has none: its pending records stay unconverted)."""
        for signal in [s for s in self.pending if s not in self.wired]:
            self.count(signal)
        return self.rejected

    @property
    def accepted(self) -> int:
        return sum(self.count(signal) for signal in Signal)

    def counts(self) -> dict[Signal, int]:
        return {signal: self.count(signal) for signal in Signal}


_DONE = object()
