"""Trace search parameters: durations with units, trace ids, time windows (observai.traces.reads)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from observai.errors import InvalidInput
from observai.traces.reads import check_trace_id, parse_duration_ns, window

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("250ms", 250_000_000),
        ("1.5s", 1_500_000_000),
        ("2m", 120_000_000_000),
        ("1h", 3_600_000_000_000),
        ("800us", 800_000),
        ("800µs", 800_000),
        ("100ns", 100),
        ("42", 42_000_000),  # a bare number is milliseconds
        (" 7 ms ", 7_000_000),
        ("0", 0),
    ],
)
def test_durations_with_units(text: str, ns: int) -> None:
    assert parse_duration_ns(text, "min_duration") == ns


@pytest.mark.parametrize("text", ["fast", "-5ms", "1e3", "5 days", "ms", "1.2.3s", "9" * 30 + "h"])
def test_bad_durations_are_invalid_input_naming_the_parameter(text: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_duration_ns(text, "max_duration")
    assert raised.value.details["loc"] == ["query", "max_duration"]


def test_no_duration_is_none() -> None:
    assert parse_duration_ns(None, "min_duration") is None and parse_duration_ns("", "min_duration") is None


def test_trace_ids_are_32_hex_characters_lowercased() -> None:
    assert check_trace_id("ABCDEF" + "0" * 26) == "abcdef" + "0" * 26
    for bad in ("", "a" * 31, "a" * 33, "g" * 32, "a" * 30 + "-1"):
        with pytest.raises(InvalidInput):
            check_trace_id(bad)


def test_window_defaults_and_bounds() -> None:
    hour, day = timedelta(hours=1), timedelta(days=1)
    # Defaults: to = now, from = to - default
    assert window(None, None, hour, day, now=NOW) == (NOW - hour, NOW)
    assert window(NOW - 3 * hour, None, hour, day, now=NOW) == (NOW - 3 * hour, NOW)
    assert window(None, NOW - day, hour, day, now=NOW) == (NOW - day - hour, NOW - day)
    # Empty, reversed, too long, or without a time zone: refused
    for start, end in ((NOW, NOW), (NOW, NOW - hour), (NOW - 2 * day, NOW), (NOW.replace(tzinfo=None), None)):
        with pytest.raises(InvalidInput):
            window(start, end, hour, day, now=NOW)
