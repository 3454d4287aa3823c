"""What every rule kind gives the evaluator: one Sample per result series.

A kind reads its data once per *shared query* (``share_key``: the rules of a project whose conditions differ only
in their comparison read the same rows) and judges each rule's condition on what it read (``observe`` then
``judge``). It reads through the cursor it is given: a transaction under the rule's project tenancy, so Row Level
Security limits it to that project's rows whatever its SQL says.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from observai.db.connection import Cursor


@dataclass(frozen=True, slots=True)
class Sample:
    """One result series of a rule at one evaluation: its labels (the series' group_by values, as the query gave
    them), its value (None when there is none, e.g. an absence), and whether the rule's condition holds for it."""

    labels: dict[str, Any]
    value: float | None
    active: bool


@dataclass(frozen=True, slots=True)
class Observation:
    """One result series as the kind's query read it, before any rule's comparison: labels and value."""

    labels: dict[str, Any]
    value: float | None


class RuleKind(Protocol):
    """A rule kind's evaluator (``observai.alerts.kinds.register``)."""

    name: str

    def share_key(self, condition: Any) -> Hashable:
        """Equal keys (within a project and an evaluation time): one ``observe`` serves every such condition."""
        ...

    def observe(self, cur: Cursor, project_id: UUID, condition: Any, eval_at: datetime) -> list[Observation]:
        """The result series at ``eval_at`` (a whole minute); raises on a query error (the rule keeps its state)."""
        ...

    def judge(self, condition: Any, observation: Observation) -> bool:
        """Whether the condition holds for this series."""
        ...


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def compare(value: float | None, op: str, threshold: float) -> bool:
    """``value op threshold``; no value never satisfies a comparison."""
    return value is not None and _COMPARE[op](value, threshold)


def samples(kind: RuleKind, condition: Any, observations: list[Observation]) -> list[Sample]:
    return [Sample(o.labels, o.value, kind.judge(condition, o)) for o in observations]
