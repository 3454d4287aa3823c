"""Dates and date-times the API takes: RFC 3339 text only.

Pydantic also reads a number (``0.5``, ``"1700000000"``) as Unix time, so ``?to=0.5`` meant 1970; the API documents
text (``format: date-time`` / ``date``) and a number there is a mistake: refused with a validation error (422).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def not_a_number(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("expected RFC 3339 text such as 2026-01-02T03:04:05Z (or 2026-01-02 for a day), not a number")
    return value


DateTimeText = Annotated[datetime, BeforeValidator(not_a_number)]
AwareDateTimeText = Annotated[AwareDatetime, BeforeValidator(not_a_number)]
DateText = Annotated[date, BeforeValidator(not_a_number)]
