"""The real OpenTelemetry Python SDK, its OTLP/HTTP exporters pointed at the local runner over HTTP.

Spans, metrics and logs are produced the way an instrumented application produces them (isolated
providers, never the global ones), exported with only an endpoint and an x-api-key header, then found
in the tables: parent links, service.name, metric types and temporality, log severity and trace ids.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

from tests.helpers.ingest import IngestProject, logs_of, make_project, points_of, spans_of

pytestmark = pytest.mark.e2e


class RecordingSpanExporter(OTLPSpanExporter):
    """The real exporter, remembering every export's result."""

    results: list[SpanExportResult]

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        result = super().export(spans)
        self.results.append(result)
        return result


@pytest.fixture
def project(database_url: str) -> IngestProject:
    return make_project(label="OTel SDK")


def _resource(service: str) -> Resource:
    return Resource.create({"service.name": service, "deployment.environment": "e2e", "service.version": "1.0.0"})


def test_sdk_exporters_deliver_spans_metrics_and_logs(
    runner_url: str, database_url: str, project: IngestProject
) -> None:
    service = f"shop-{uuid.uuid4().hex[:6]}"
    resource = _resource(service)
    headers = {"x-api-key": project.key}

    # Given isolated SDK providers whose OTLP/HTTP exporters point at the runner (traces gzip-compressed)
    span_exporter = RecordingSpanExporter(
        endpoint=f"{runner_url}/v1/traces", headers=headers, compression=Compression.Gzip, timeout=10
    )
    span_exporter.results = []
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    metric_reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{runner_url}/v1/metrics", headers=headers, timeout=10),
        export_interval_millis=3_600_000,
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{runner_url}/v1/logs", headers=headers, timeout=10))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's LoggingHandler is deprecated, still shipped
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider)
    app_log = logging.getLogger(f"observai.e2e.{service}")
    app_log.propagate = False
    app_log.setLevel(logging.DEBUG)
    app_log.addHandler(handler)

    # When the application does its work: nested spans with an event and an exception, metrics, logs
    tracer = tracer_provider.get_tracer("shop.checkout", "2.1.0")
    meter = meter_provider.get_meter("shop.metrics", "2.1.0")
    orders = meter.create_counter("shop.orders", unit="{order}", description="Orders placed")
    in_flight = meter.create_up_down_counter("shop.in_flight", unit="{request}")
    latency = meter.create_histogram("shop.latency", unit="ms")

    def queue_depth(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(7, {"queue": "orders"})

    meter.create_observable_gauge("shop.queue.depth", callbacks=[queue_depth], unit="{message}")

    try:
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.route", "/checkout")
            in_flight.add(1, {"route": "/checkout"})
            app_log.info("checkout started for %s", "cart-42", extra={"cart.id": "cart-42"})
            with tracer.start_as_current_span("load cart", kind=SpanKind.CLIENT) as child:
                child.add_event("cache.miss", {"cache.key": "cart:42"})
                latency.record(12.5, {"route": "/checkout"})
                latency.record(250.0, {"route": "/checkout"})
            with pytest.raises(RuntimeError, match="card declined"), tracer.start_as_current_span("charge card"):
                app_log.error("payment failed")
                raise RuntimeError("card declined")
            orders.add(3, {"status": "ok"})
            orders.add(1, {"status": "failed"})
            in_flight.add(-1, {"route": "/checkout"})
            trace_id = format(root.get_span_context().trace_id, "032x")
            root_id = format(root.get_span_context().span_id, "016x")
        app_log.warning("outside any span")

        # And the providers are flushed and shut down
        assert tracer_provider.force_flush(10_000)
        assert metric_reader.force_flush(10_000)
        assert logger_provider.force_flush(10_000)
    finally:
        app_log.removeHandler(handler)
        tracer_provider.shutdown()
        meter_provider.shutdown()
        logger_provider.shutdown()

    # Then every span export succeeded and the spans are in the table with their parent links
    assert span_exporter.results and all(r is SpanExportResult.SUCCESS for r in span_exporter.results)
    spans = {s["name"]: s for s in spans_of(database_url, project.project_id)}
    assert set(spans) == {"POST /checkout", "load cart", "charge card"}
    root_row, child_row, charge_row = spans["POST /checkout"], spans["load cart"], spans["charge card"]
    assert (root_row["trace_id"], root_row["span_id"], root_row["parent_span_id"]) == (trace_id, root_id, None)
    assert (child_row["trace_id"], child_row["parent_span_id"]) == (trace_id, root_id)
    assert (charge_row["trace_id"], charge_row["parent_span_id"]) == (trace_id, root_id)
    assert {s["service"] for s in spans.values()} == {service}
    assert root_row["resource"]["deployment.environment"] == "e2e"
    assert root_row["resource"]["telemetry.sdk.name"] == "opentelemetry"
    assert (root_row["kind"], child_row["kind"], charge_row["kind"]) == ("server", "client", "internal")
    assert root_row["scope"]["name"] == "shop.checkout" and root_row["scope"]["version"] == "2.1.0"
    assert root_row["attributes"] == {"http.route": "/checkout"}
    assert child_row["events"][0]["name"] == "cache.miss"
    assert child_row["events"][0]["attributes"] == {"cache.key": "cart:42"}
    assert charge_row["status_code"] == "error" and "card declined" in (charge_row["status_message"] or "")
    (exception,) = [e for e in charge_row["events"] if e["name"] == "exception"]
    assert exception["attributes"]["exception.type"] == "RuntimeError"
    assert "card declined" in exception["attributes"]["exception.message"]
    assert all(s["duration_ns"] > 0 for s in spans.values())
    assert root_row["start_time"] <= child_row["start_time"] and child_row["end_time"] <= root_row["end_time"]

    # And the metric series have their names, types and semantics (force_flush and shutdown each export a
    # collection, so a cumulative series may hold two points: the latest one per series is checked)
    latest: dict[int, dict[str, Any]] = {}
    for point in points_of(database_url, project.project_id):  # ordered by name, then time
        latest[point["series_id"]] = point
    by_name: dict[str, list[dict[str, Any]]] = {}
    for point in latest.values():
        by_name.setdefault(point["name"], []).append(point)
    assert set(by_name) == {"shop.orders", "shop.in_flight", "shop.latency", "shop.queue.depth"}
    orders_points = {p["attributes"]["status"]: p for p in by_name["shop.orders"]}
    assert {k: p["value"] for k, p in orders_points.items()} == {"ok": 3.0, "failed": 1.0}
    assert all(
        (p["type"], p["monotonic"], p["temporality"], p["unit"]) == ("sum", True, "cumulative", "{order}")
        for p in orders_points.values()
    )
    assert orders_points["ok"]["attributes"]["service.name"] == service
    assert orders_points["ok"]["description"] == "Orders placed"
    (flight,) = by_name["shop.in_flight"]
    assert (flight["type"], flight["monotonic"], flight["value"]) == ("sum", False, 0.0)
    (hist,) = by_name["shop.latency"]
    assert (hist["type"], hist["temporality"], hist["count"], hist["sum"]) == ("histogram", "cumulative", 2, 262.5)
    assert (hist["min"], hist["max"]) == (12.5, 250.0)
    assert sum(hist["distribution"]["counts"]) == 2
    assert len(hist["distribution"]["counts"]) == len(hist["distribution"]["bounds"]) + 1
    (gauge,) = by_name["shop.queue.depth"]
    assert (gauge["type"], gauge["value"], gauge["attributes"]["queue"]) == ("gauge", 7.0, "orders")

    # And the logs have their severity, body, service and trace correlation
    logs = {r["body"]: r for r in logs_of(database_url, project.project_id)}
    assert set(logs) == {"checkout started for cart-42", "payment failed", "outside any span"}
    started, failed, outside = logs["checkout started for cart-42"], logs["payment failed"], logs["outside any span"]
    assert (started["severity_number"], started["severity_text"]) == (9, "INFO")
    assert (failed["severity_number"], failed["severity_text"]) == (17, "ERROR")
    assert (outside["severity_number"], outside["severity_text"]) == (13, "WARN")
    assert (started["trace_id"], started["span_id"]) == (trace_id, root_id)
    assert (failed["trace_id"], failed["span_id"]) == (trace_id, charge_row["span_id"])
    assert outside["trace_id"] is None and outside["span_id"] is None
    assert started["attributes"]["cart.id"] == "cart-42"
    assert {r["service"] for r in logs.values()} == {service}
    assert {r["org_id"] for r in logs.values()} == {project.org_id}
