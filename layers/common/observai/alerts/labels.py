"""Alert labels and their fingerprint.

Labels are a flat map of text to text (as in Prometheus): the rule's labels, the result series' labels (its
``group_by`` values, written as text) and the reserved ``alertname`` and ``severity``. The fingerprint names
one alert instance: a hash of the labels in key order, so the order they were built in never matters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

ALERTNAME = "alertname"
SEVERITY = "severity"
RESERVED = frozenset({ALERTNAME, SEVERITY})
FINGERPRINT_HEX = 32


def label_text(value: Any) -> str:
    """A series label value as text: strings as they are, null as "", anything else as its JSON spelling."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def as_labels(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): label_text(value) for key, value in values.items()}


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable hex id of a label set: the same labels in any order give the same fingerprint."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_HEX]


def alert_labels(
    rule_name: str, severity: str, rule_labels: Mapping[str, str], series_labels: Mapping[str, Any]
) -> dict[str, str]:
    """An alert's labels: the series' labels, then the rule's (a rule label wins over a series label of the same
    name, as in Prometheus), then alertname and severity."""
    labels = as_labels(series_labels)
    labels.update(rule_labels)
    labels[ALERTNAME] = rule_name
    labels[SEVERITY] = severity
    return labels
