"""Traces: one trace as a span tree with its logs, trace search, and per-service request statistics."""
