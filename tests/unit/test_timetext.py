"""Dates and date-times are RFC 3339 text: a number (which pydantic reads as Unix time) is refused."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from observai.timetext import AwareDateTimeText, DateText, DateTimeText
from pydantic import TypeAdapter, ValidationError


@pytest.mark.parametrize("value", [0, 0.5, "0", "0.5", "1700000000", " 1e9 ", "-3", ".5"])
@pytest.mark.parametrize("kind", [DateTimeText, AwareDateTimeText, DateText])
def test_a_number_is_not_a_date(kind: object, value: object) -> None:
    with pytest.raises(ValidationError, match="RFC 3339"):
        TypeAdapter(kind).validate_python(value)


def test_text_still_parses() -> None:
    assert TypeAdapter(DateTimeText).validate_python("2026-01-02T03:04:05Z") == datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    assert TypeAdapter(AwareDateTimeText).validate_python("2026-01-02T03:04:05+00:00").tzinfo is not None
    assert TypeAdapter(DateText).validate_python("2026-01-02") == date(2026, 1, 2)
    with pytest.raises(ValidationError):
        TypeAdapter(AwareDateTimeText).validate_python("2026-01-02T03:04:05")  # still needs an offset
