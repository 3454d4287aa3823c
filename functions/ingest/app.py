"""Telemetry ingestion: our batch API and OpenTelemetry OTLP/HTTP (traces, metrics, logs)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.telemetry.ingest_api import IngestSummary, OtlpResponse, ingest_native, otlp_export
from observai.telemetry.model import Signal

app = create_resolver()


@app.post("/v1/ingest", status_code=202, tags=["ingest"])
def ingest_batch(caller: CurrentPrincipal) -> Envelope[IngestSummary]:
    return ok(ingest_native(caller, app.current_event.raw_event))


def _otlp(result: OtlpResponse) -> Response:
    return Response(result.status_code, result.content_type, result.body, headers=result.headers)


# OTLP routes carry protobuf or OTLP/JSON both ways, as the OTLP/HTTP specification says: no envelope,
# no return annotation (the resolver would try to validate the bytes as a model).
@app.post("/v1/traces", tags=["otlp"], summary="OTLP/HTTP traces (ExportTraceServiceRequest)")
def otlp_traces():  # type: ignore[no-untyped-def]
    return _otlp(otlp_export(Signal.TRACES, app.current_event.raw_event))


@app.post("/v1/metrics", tags=["otlp"], summary="OTLP/HTTP metrics (ExportMetricsServiceRequest)")
def otlp_metrics():  # type: ignore[no-untyped-def]
    return _otlp(otlp_export(Signal.METRICS, app.current_event.raw_event))


@app.post("/v1/logs", tags=["otlp"], summary="OTLP/HTTP logs (ExportLogsServiceRequest)")
def otlp_logs():  # type: ignore[no-untyped-def]
    return _otlp(otlp_export(Signal.LOGS, app.current_event.raw_event))


# Bodies are protobuf or gzip: the ingest routes check size, encoding and media type themselves.
lambda_handler = lambda_handler_for(app, guard=False)
