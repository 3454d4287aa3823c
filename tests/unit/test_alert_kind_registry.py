"""The rule kind registry (pluggable: the anomaly detection issue registers its kind) and the conditions' checks
that the evaluators rely on."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from observai.alerts import kinds
from observai.alerts.kinds import Observation, compare, get_kind, kind_names, register, samples
from observai.alerts.rule_models import RuleIn
from pydantic import ValidationError


class ThresholdOnLabels:
    """A kind of the test's own: what a plug-in gives the registry."""

    name = "labelled"

    def share_key(self, condition: Any) -> Hashable:
        return condition["limit"]

    def observe(self, cur: Any, project_id: UUID, condition: Any, eval_at: datetime) -> list[Observation]:
        return [Observation({"n": str(n)}, float(n)) for n in range(3)]

    def judge(self, condition: Any, observation: Observation) -> bool:
        return compare(observation.value, ">=", condition["limit"])


@pytest.fixture
def plugged() -> Iterator[ThresholdOnLabels]:
    kind = register(ThresholdOnLabels())
    yield kind
    kinds._REGISTRY.pop(kind.name)


def test_the_built_in_kinds_are_registered() -> None:
    assert kind_names() == ["absence", "anomaly", "log", "metric"]
    assert get_kind("metric").name == "metric" and get_kind("anomaly").name == "anomaly"
    with pytest.raises(KeyError):
        get_kind("anomalous")


def test_a_new_kind_plugs_in(plugged: ThresholdOnLabels) -> None:
    kind = get_kind("labelled")
    judged = samples(kind, {"limit": 2}, kind.observe(None, UUID(int=0), {"limit": 2}, datetime.now()))
    assert [(s.labels["n"], s.active) for s in judged] == [("0", False), ("1", False), ("2", True)]
    assert "labelled" in kind_names()


@pytest.mark.parametrize(
    ("value", "op", "threshold", "holds"),
    [(1.0, ">", 0, True), (0.0, ">", 0, False), (0.0, ">=", 0, True), (1.0, "<", 2, True), (2.0, "<=", 2, True),
     (2.0, "==", 2, True), (2.0, "!=", 2, False), (None, "<", 5, False), (None, "!=", 5, False)],
)  # fmt: skip
def test_comparisons(value: float | None, op: str, threshold: float, holds: bool) -> None:
    assert compare(value, op, threshold) is holds


def test_a_service_absence_must_name_its_service() -> None:
    with pytest.raises(ValidationError) as raised:
        RuleIn.model_validate({"name": "quiet", "condition": {"kind": "absence", "target": "service"}})
    (error,) = raised.value.errors()
    assert error["loc"] == ("condition", "absence", "service")
    ok = RuleIn.model_validate({"name": "q", "condition": {"kind": "absence", "target": "service", "service": "api"}})
    assert ok.condition.service == "api"
