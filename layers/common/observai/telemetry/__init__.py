"""Telemetry ingestion: metrics, logs and spans from our batch API and OpenTelemetry OTLP/HTTP."""
