"""What every rule kind gives the evaluator: one Sample per result series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Sample:
    """One result series of a rule at one evaluation: its labels (the series' group_by values, as the query gave
    them), its value (None when there is none, e.g. an absence), and whether the rule's condition holds for it."""

    labels: dict[str, Any]
    value: float | None
    active: bool
