"""Per-request and per-event ingestion limits, shared by every decoder.

Per-request limits refuse the whole request (413/400); per-event limits reject one event with its
reason and let the rest through (partial success).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_body_bytes: int = 6 * 1024 * 1024  # as sent (compressed or not); API Gateway's own cap is 10 MB
    max_decompressed_bytes: int = 32 * 1024 * 1024  # a gzip bomb stops here, without inflating the rest
    max_events: int = 10_000  # per request
    max_attributes: int = 128  # per attribute map
    max_key_length: int = 256
    max_value_length: int = 8192  # characters of a string attribute value
    max_body_length: int = 65_536  # characters of a log body
    max_name_length: int = 512  # metric and span names
    max_past_s: int = 7 * 86_400  # older events are rejected (partitions exist for this window)
    max_future_s: int = 3_600  # clock skew allowance


DEFAULT_LIMITS = IngestLimits()


def now_ns() -> int:
    return time.time_ns()


def check_time(time_ns: int, now: int, limits: IngestLimits = DEFAULT_LIMITS, what: str = "timestamp") -> str | None:
    """The reason an event's time is refused, or None."""
    if time_ns <= 0:
        return f"{what} is missing or zero"
    if time_ns < now - limits.max_past_s * NS_PER_S:
        return f"{what} is more than {limits.max_past_s // 86_400} days in the past"
    if time_ns > now + limits.max_future_s * NS_PER_S:
        return f"{what} is more than {limits.max_future_s // 60} minutes in the future"
    return None


def check_attributes(
    attributes: dict[str, Any], limits: IngestLimits = DEFAULT_LIMITS, what: str = "attributes"
) -> str | None:
    """The reason an attribute map is refused (too many keys, a key or value too long), or None."""
    if not attributes:
        return None
    if len(attributes) > limits.max_attributes:
        return f"{what}: {len(attributes)} keys, more than {limits.max_attributes}"
    max_key, max_value, max_items = limits.max_key_length, limits.max_value_length, limits.max_attributes
    for key, value in attributes.items():  # hot loop: every attribute of every event
        if len(key) > max_key:
            return f"{what}: key longer than {max_key} characters"
        kind = value.__class__
        if kind is str:
            if len(value) > max_value:
                return f"{what}.{key[:64]}: value longer than {max_value} characters"
        elif (kind is list or kind is dict) and len(value) > max_items:
            return f"{what}.{key[:64]}: more than {max_items} items"
    return None


BIGINT_MAX = 2**63 - 1  # counts are stored (and summed by the rollups) as Postgres bigint


NOT_FINITE = "must be a finite number (NaN and infinities are not stored)"


def check_point_numbers(
    value: float | None, count: int | None, stats: tuple[float | None, ...], bucket_counts: Any = ()
) -> str | None:
    """The reason a metric point's numbers are refused, or None. A value that is not a finite number (NaN,
    ±Infinity, or 1e400, which parses as infinity) would be stored but never shown by a query: it is refused
    instead of being accepted and dropped. A count past what a bigint holds could not be stored at all.
    (``x - x != 0`` is true exactly for NaN and the infinities, and cheaper than math.isfinite: hot path.)"""
    if value is not None and value - value != 0:
        return f"value: {NOT_FINITE}"
    if count is not None and count > BIGINT_MAX:
        return f"count: larger than {BIGINT_MAX}"
    for name, stat in zip(("sum", "min", "max"), stats, strict=False):
        if stat is not None and stat - stat != 0:
            return f"{name}: {NOT_FINITE}"
    if bucket_counts and max(bucket_counts) > BIGINT_MAX:
        return f"bucket_counts: a count larger than {BIGINT_MAX}"
    return None


def check_span_times(start_ns: int, end_ns: int) -> str | None:
    """The reason a span's times are refused, or None: its duration is stored in nanoseconds as a bigint."""
    if end_ns < start_ns:
        return "end_time is before start_time"
    if end_ns - start_ns > BIGINT_MAX:
        return f"duration: longer than {BIGINT_MAX // (NS_PER_S * 86_400 * 365)} years"
    return None


UNFORESEEN = (ArithmeticError, ValueError, TypeError)


def unforeseen(exc: Exception) -> str:
    """The reason for an item whose conversion failed in a way no check foresaw (an overflow, a type the model let
    through): that one item is rejected, never the whole request; logged, to add the check it deserves."""
    from observai.observability import logger

    logger.warning("ingest item rejected by an unforeseen error", extra={"error": repr(exc)[:300]})
    return f"invalid value: {type(exc).__name__}"
