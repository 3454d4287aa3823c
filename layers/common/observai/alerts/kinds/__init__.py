"""Rule kinds: each turns a rule's condition into samples (labels, value, whether the condition holds) at one
evaluation time. The registry maps a condition's ``kind`` to its evaluator: metric, log, absence and anomaly (the
anomaly detectors' groups or series, ``observai.alerts.kinds.anomaly``); a new kind is one ``register(...)`` and
one model in ``observai.alerts.rule_models.Condition``."""

from __future__ import annotations

from observai.alerts.kinds.base import Observation, RuleKind, Sample, compare, samples

_REGISTRY: dict[str, RuleKind] = {}


def register(kind: RuleKind) -> RuleKind:
    _REGISTRY[kind.name] = kind
    return kind


def get_kind(name: str) -> RuleKind:
    """The evaluator of ``name``; KeyError for a kind nobody registered (the evaluation records it as the rule's
    error)."""
    _load_builtin()
    return _REGISTRY[name]


def kind_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Imported on first use: the modules register themselves, and a Lambda that never evaluates never loads them.
    if {"metric", "log", "absence", "anomaly"} <= _REGISTRY.keys():
        return
    from observai.alerts.kinds import absence, anomaly, log, metric  # noqa: F401


__all__ = ["Observation", "RuleKind", "Sample", "compare", "get_kind", "kind_names", "register", "samples"]
