"""Fuzz the OTLP fast path with requests built from the fuzz data: structure-aware, every body parses.

fuzz_otlp mutates bytes, which mostly breaks the wire format; here the fuzz data chooses the fields of well-formed
Export*ServiceRequest messages instead (atheris.FuzzedDataProvider), with the values where the two paths must
agree on a boundary: times at the edges of the accepted window, texts at the length limits, duplicate keys and
ids, every AnyValue kind nested, every metric type with points of every shape, NO_RECORDED_VALUE, enums out of
range. The oracle is fuzz_otlp's (the same rows, or the request left to the Python path).

Run by ``make fuzz`` (tests/fuzz/run.sh), seeds in tests/fuzz/corpus/otlp_messages.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.fuzz import sanitized

if __name__ == "__main__":  # the fuzzer's run: the sanitizer build (imported, by replay.py: the in-place one)
    sanitized.load()

import atheris
from observai.telemetry.limits import DEFAULT_LIMITS
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.fuzz.fuzz_otlp import SMALL_LIMITS
from tests.fuzz.fuzz_otlp import test_one_input as check_request
from tests.unit.test_otlp_wire import NOW, SPAN, TRACE

S = 1_000_000_000
U64 = 2**64 - 1


def edges(n: int) -> list[str]:
    """Texts of n characters and one more (ASCII and two-byte UTF-8): at a length limit and past it."""
    return ["x" * n, "x" * (n + 1), "é" * n, "é" * (n + 1)]


class Draw:
    """Message fields from the fuzz data; ``small``: near the small limits' edges, else the defaults'."""

    def __init__(self, data: bytes) -> None:
        self.fdp = atheris.FuzzedDataProvider(data)
        self.small = self.fdp.ConsumeBool()
        limits = SMALL_LIMITS if self.small else DEFAULT_LIMITS
        self.limits = limits
        self.texts = ["k", "service.name", "", "a.b", "ключ", "\x00", "𝄞", *edges(limits.max_key_length)]
        self.texts += edges(limits.max_name_length)
        self.values = edges(limits.max_value_length) + edges(limits.max_body_length)
        self.times = [
            NOW - 3 * S,
            0,
            NOW - limits.max_past_s * S,
            NOW - limits.max_past_s * S - 1,
            NOW + limits.max_future_s * S,
            NOW + limits.max_future_s * S + 1,
            U64,
        ]

    def pick(self, n: int) -> int:
        return self.fdp.ConsumeIntInRange(0, n - 1)

    def few(self, most: int) -> range:
        """Up to ``most`` items; one when the data has run out (every choice's 0 is the usual one)."""
        return range((self.pick(most + 1) + 1) % (most + 1))

    def text(self) -> str:
        if self.pick(4) == 3:
            return self.fdp.ConsumeUnicodeNoSurrogates(self.pick(12))
        return self.texts[self.pick(len(self.texts))]

    def value_text(self) -> str:
        return self.values[self.pick(len(self.values))] if self.pick(4) == 3 else self.text()

    def time(self) -> int:
        which = self.pick(4)
        if which == 2:
            return NOW + self.fdp.ConsumeIntInRange(-(10**15), 10**13)
        if which == 3:
            return self.fdp.ConsumeIntInRange(0, U64)
        return self.times[self.pick(len(self.times))]

    def id(self, size: int, usual: bytes) -> bytes:
        which = self.pick(5)
        if which == 0:
            return usual[:-1] + bytes([self.pick(256)])  # a few ids: duplicates now and then
        if which == 1:
            return bytes(size)
        if which == 2:
            return self.fdp.ConsumeBytes(self.pick(size + 2))
        return b"" if which == 3 else usual

    def any_value(self, depth: int = 0) -> AnyValue:
        which = self.pick(9 if depth < 6 else 7)
        if which == 0:
            return AnyValue(string_value=self.value_text())
        if which == 1:
            return AnyValue()
        if which == 2:
            return AnyValue(bool_value=self.fdp.ConsumeBool())
        if which == 3:
            return AnyValue(int_value=self.fdp.ConsumeIntInRange(-(2**63), 2**63 - 1))
        if which == 4:
            return AnyValue(double_value=self.fdp.ConsumeFloat())
        if which == 5:
            return AnyValue(bytes_value=self.fdp.ConsumeBytes(self.pick(6)))
        if which == 6:
            return AnyValue(string_value=self.text())
        if which == 7:
            return AnyValue(array_value=ArrayValue(values=[self.any_value(depth + 1) for _ in self.few(4)]))
        return AnyValue(kvlist_value=KeyValueList(values=self.attributes(depth + 1)))

    def attributes(self, depth: int = 0) -> list[KeyValue]:
        many = self.limits.max_attributes + 1 if self.pick(8) == 7 else 4
        return [KeyValue(key=self.text(), value=self.any_value(depth)) for _ in self.few(many)]

    def resource(self) -> Resource | None:
        which = self.pick(4)
        if which == 3:
            return None
        attributes = self.attributes()
        if which < 2:  # mostly a service.name (a string, now and then not)
            service = self.any_value() if which == 1 else AnyValue(string_value=self.text())
            attributes.insert(self.pick(len(attributes) + 1), KeyValue(key="service.name", value=service))
        return Resource(attributes=attributes, dropped_attributes_count=self.pick(3))

    def scope(self) -> InstrumentationScope | None:
        if self.pick(3) == 2:
            return None
        return InstrumentationScope(name=self.text(), version=self.text(), attributes=self.attributes())

    # --- logs ------------------------------------------------------------------------------------------------

    def log(self) -> logs_pb2.LogRecord:
        record = logs_pb2.LogRecord(
            time_unix_nano=self.time(),
            observed_time_unix_nano=self.time() if self.fdp.ConsumeBool() else 0,
            severity_number=[9, *range(-1, 27)][self.pick(29)],  # type: ignore[arg-type]
            severity_text=self.text(),
            attributes=self.attributes(),
            dropped_attributes_count=self.pick(2),
            flags=self.fdp.ConsumeIntInRange(0, 2**32 - 1),
            trace_id=self.id(16, TRACE),
            span_id=self.id(8, SPAN),
            event_name=self.text(),
        )
        if self.pick(4) != 3:
            record.body.CopyFrom(self.any_value())
        return record

    def logs(self) -> ExportLogsServiceRequest:
        return ExportLogsServiceRequest(
            resource_logs=[
                logs_pb2.ResourceLogs(
                    resource=self.resource(),
                    scope_logs=[
                        logs_pb2.ScopeLogs(scope=self.scope(), log_records=[self.log() for _ in self.few(4)])
                        for _ in self.few(2)
                    ],
                )
                for _ in self.few(2)
            ]
        )

    # --- traces ----------------------------------------------------------------------------------------------

    def span(self) -> trace_pb2.Span:
        start = self.time()
        span = trace_pb2.Span(
            trace_id=self.id(16, TRACE),
            span_id=self.id(8, SPAN),
            parent_span_id=self.id(8, SPAN[::-1]),
            trace_state=self.text(),
            name=self.text(),
            kind=[2, *range(-1, 8)][self.pick(10)],  # type: ignore[arg-type]
            start_time_unix_nano=start,
            end_time_unix_nano=min(U64, start + self.pick(3)) if self.fdp.ConsumeBool() else self.time(),
            attributes=self.attributes(),
            flags=self.fdp.ConsumeIntInRange(0, 2**32 - 1),
            events=[
                trace_pb2.Span.Event(time_unix_nano=self.time(), name=self.text(), attributes=self.attributes())
                for _ in self.few(2)
            ],
            links=[
                trace_pb2.Span.Link(
                    trace_id=self.id(16, TRACE),
                    span_id=self.id(8, SPAN),
                    trace_state=self.text(),
                    attributes=self.attributes(),
                    flags=self.pick(600),
                )
                for _ in self.few(2)
            ],
        )
        if self.pick(3) != 2:
            span.status.CopyFrom(trace_pb2.Status(code=self.fdp.ConsumeIntInRange(0, 3), message=self.text()))  # type: ignore[arg-type]
        return span

    def traces(self) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource=self.resource(),
                    scope_spans=[
                        trace_pb2.ScopeSpans(scope=self.scope(), spans=[self.span() for _ in self.few(4)])
                        for _ in self.few(2)
                    ],
                )
                for _ in self.few(2)
            ]
        )

    # --- metrics ---------------------------------------------------------------------------------------------

    def exemplars(self) -> list[metrics_pb2.Exemplar]:
        found = []
        for _ in self.few(2):
            exemplar = metrics_pb2.Exemplar(
                time_unix_nano=self.time(),
                filtered_attributes=self.attributes(),
                trace_id=self.id(16, TRACE),
                span_id=self.id(8, SPAN),
            )
            which = self.pick(3)
            if which == 1:
                exemplar.as_int = self.fdp.ConsumeIntInRange(-(2**63), 2**63 - 1)
            elif which == 2:
                exemplar.as_double = self.fdp.ConsumeFloat()
            found.append(exemplar)
        return found

    def point_base(self) -> dict[str, Any]:
        return {
            "time_unix_nano": self.time() if self.pick(3) == 0 else NOW - self.pick(3) * S,
            "start_time_unix_nano": self.time() if self.fdp.ConsumeBool() else 0,
            "attributes": self.attributes(),
            "flags": [0, 0, 1, 2, 3, 2**31, 2**32 - 1][self.pick(7)],
        }

    def number_point(self) -> metrics_pb2.NumberDataPoint:
        point = metrics_pb2.NumberDataPoint(**self.point_base(), exemplars=self.exemplars())
        which = self.pick(3)
        if which == 0:
            point.as_double = self.fdp.ConsumeFloat()
        elif which == 1:
            point.as_int = self.fdp.ConsumeIntInRange(-(2**63), 2**63 - 1)
        return point

    def optional_stats(self) -> dict[str, float]:
        return {k: self.fdp.ConsumeFloat() for k in ("sum", "min", "max") if self.fdp.ConsumeBool()}

    def temporality(self) -> int:
        return [2, 1, 0, 3][self.pick(4)]

    def metric(self) -> metrics_pb2.Metric:
        name, unit = self.text(), self.text()
        kind = self.pick(5)
        points = self.few(3)
        if kind == 0:
            metric = metrics_pb2.Metric(
                name=name, unit=unit, gauge=metrics_pb2.Gauge(data_points=[self.number_point() for _ in points])
            )
        elif kind == 1:
            metric = metrics_pb2.Metric(
                name=name,
                unit=unit,
                sum=metrics_pb2.Sum(
                    aggregation_temporality=self.temporality(),  # type: ignore[arg-type]
                    is_monotonic=self.fdp.ConsumeBool(),
                    data_points=[self.number_point() for _ in points],
                ),
            )
        elif kind == 2:
            data = []
            for _ in points:
                bounds = [self.fdp.ConsumeFloat() for _ in self.few(3)]
                counts = [self.fdp.ConsumeIntInRange(0, U64) for _ in range(len(bounds) + [1, 0, 2][self.pick(3)])]
                data.append(
                    metrics_pb2.HistogramDataPoint(
                        **self.point_base(),
                        count=self.fdp.ConsumeIntInRange(0, U64),
                        explicit_bounds=bounds,
                        bucket_counts=counts,
                        exemplars=self.exemplars(),
                        **self.optional_stats(),
                    )
                )
            metric = metrics_pb2.Metric(
                name=name,
                unit=unit,
                histogram=metrics_pb2.Histogram(aggregation_temporality=self.temporality(), data_points=data),  # type: ignore[arg-type]
            )
        elif kind == 3:
            buckets = metrics_pb2.ExponentialHistogramDataPoint.Buckets
            data_e = []
            for _ in points:
                point = metrics_pb2.ExponentialHistogramDataPoint(
                    **self.point_base(),
                    count=self.fdp.ConsumeIntInRange(0, U64),
                    scale=self.fdp.ConsumeIntInRange(-(2**31), 2**31 - 1),
                    zero_count=self.fdp.ConsumeIntInRange(0, U64),
                    zero_threshold=self.fdp.ConsumeFloat(),
                    exemplars=self.exemplars(),
                    **self.optional_stats(),
                )
                for side in ("positive", "negative"):
                    if self.fdp.ConsumeBool():
                        getattr(point, side).CopyFrom(
                            buckets(
                                offset=self.fdp.ConsumeIntInRange(-(2**31), 2**31 - 1),
                                bucket_counts=[self.fdp.ConsumeIntInRange(0, U64) for _ in self.few(3)],
                            )
                        )
                data_e.append(point)
            metric = metrics_pb2.Metric(
                name=name,
                unit=unit,
                exponential_histogram=metrics_pb2.ExponentialHistogram(
                    aggregation_temporality=self.temporality(),  # type: ignore[arg-type]
                    data_points=data_e,
                ),
            )
        else:
            quantile = metrics_pb2.SummaryDataPoint.ValueAtQuantile
            data_s = [
                metrics_pb2.SummaryDataPoint(
                    **self.point_base(),
                    count=self.fdp.ConsumeIntInRange(0, U64),
                    sum=self.fdp.ConsumeFloat(),
                    quantile_values=[
                        quantile(quantile=self.fdp.ConsumeFloat(), value=self.fdp.ConsumeFloat()) for _ in self.few(3)
                    ],
                )
                for _ in points
            ]
            metric = metrics_pb2.Metric(name=name, unit=unit, summary=metrics_pb2.Summary(data_points=data_s))
        if self.pick(8) == 7:
            metric.metadata.append(KeyValue(key=self.text(), value=self.any_value()))
        return metric

    def metrics(self) -> ExportMetricsServiceRequest:
        return ExportMetricsServiceRequest(
            resource_metrics=[
                metrics_pb2.ResourceMetrics(
                    resource=self.resource(),
                    scope_metrics=[
                        metrics_pb2.ScopeMetrics(scope=self.scope(), metrics=[self.metric() for _ in self.few(3)])
                        for _ in self.few(2)
                    ],
                )
                for _ in self.few(2)
            ]
        )


def request_bytes(data: bytes) -> bytes:
    """fuzz_otlp's input (signal and limits byte, then the body) for the request the fuzz data builds."""
    draw = Draw(data)
    signal = draw.pick(3)
    message = (draw.logs, draw.traces, draw.metrics)[signal]()
    return bytes([signal | (0x80 if draw.small else 0)]) + message.SerializeToString()


def test_one_input(data: bytes) -> None:
    check_request(request_bytes(data))


def main() -> None:
    sanitized.check_loaded()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
