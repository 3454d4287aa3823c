"""Durations as users write them in alerting (Prometheus style): ``30s``, ``5m``, ``1h30m``, ``2d``, or seconds as
a whole number. Stored and returned as whole seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> Any:
    """``"1h30m"`` → 5400; an int is seconds already; anything else is left to the int check (a 422 there)."""
    if isinstance(value, bool):
        raise ValueError("a duration is text such as 30s, 5m, 1h30m, 2d, or whole seconds")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    position, total = 0, 0
    for match in _PART.finditer(text):
        if match.start() != position or match.group(2) == "ms":
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError("a duration is text such as 30s, 5m, 1h30m, 2d, or whole seconds")
    return total


def format_duration(seconds: int) -> str:
    """5400 → ``1h30m``; 0 → ``0s``."""
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# Whole seconds, from a duration text or a number; bounds go beside it: Annotated[DurationS, Field(ge=60)].
DurationS = Annotated[int, BeforeValidator(parse_duration)]
