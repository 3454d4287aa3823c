"""How long a telemetry row is kept: its ``retention_days`` column, set by the writer (migration 0010).

The organization's plan decides, per signal and, for logs, per severity class:

- logs of severity 1-8 (TRACE, DEBUG)             → ``plans.logs_debug_retention_days``
- logs of severity 0 (unset) and 9-12 (INFO)       → ``plans.logs_info_retention_days``
- logs of severity 13-24 (WARN, ERROR, FATAL)      → ``plans.retention_days``
- spans and metric points                          → ``plans.retention_days``

The value is the row's sub-partition (each day partition is LIST-partitioned by it), so retention drops
whole sub-partitions. It is fixed when the row is written: a plan change applies to new rows only.
The same mapping is in SQL in migration 0010 (the copy of the rows stored before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from observai.telemetry.usage import PlanLimits

MAX_SEVERITY = 24


class SeverityClass(StrEnum):
    DEBUG = "debug"  # TRACE and DEBUG
    INFO = "info"  # INFO and unset
    WARN = "warn"  # WARN, ERROR, FATAL


def severity_class(severity_number: int) -> SeverityClass:
    """OTLP SeverityNumber → its retention class; a number outside 0..24 counts as unset (info)."""
    if 1 <= severity_number <= 8:
        return SeverityClass.DEBUG
    if 13 <= severity_number <= MAX_SEVERITY:
        return SeverityClass.WARN
    return SeverityClass.INFO


@dataclass(frozen=True, slots=True)
class RowRetention:
    """``retention_days`` of the rows one organization writes, looked up once per request."""

    logs_by_severity: tuple[int, ...]  # indexed by severity_number 0..24
    spans: int
    metrics: int

    def for_log(self, severity_number: int) -> int:
        if 0 <= severity_number <= MAX_SEVERITY:
            return self.logs_by_severity[severity_number]
        return self.logs_by_severity[0]


@lru_cache(maxsize=64)
def _row_retention(warn_days: int, info_days: int, debug_days: int) -> RowRetention:
    by_class = {SeverityClass.DEBUG: debug_days, SeverityClass.INFO: info_days, SeverityClass.WARN: warn_days}
    return RowRetention(
        logs_by_severity=tuple(by_class[severity_class(n)] for n in range(MAX_SEVERITY + 1)),
        spans=warn_days,
        metrics=warn_days,
    )


def row_retention(limits: PlanLimits) -> RowRetention:
    """The retention_days values of the plan (a few plans, so a few distinct, shared instances)."""
    return _row_retention(limits.retention_days, limits.logs_info_retention_days, limits.logs_debug_retention_days)
