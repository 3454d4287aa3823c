"""The three signals (metrics, logs, traces): a module of its own, so the usage counters and reports that name
them do not import the decoded model's dataclasses (``observai.telemetry.model``, which re-exports it)."""

from __future__ import annotations

from enum import StrEnum


class Signal(StrEnum):
    METRICS = "metrics"
    LOGS = "logs"
    TRACES = "traces"
