"""Incident test helpers: a rule (with its recorded version), alert instances and a notification group arranged as
rows (as the rules API, the evaluator and the router leave them), and a group flush as the dispatcher does it."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb


@dataclass
class Rule:
    id: UUID
    org_id: UUID
    project_id: UUID
    name: str
    severity: str
    version: int = 1
    definition: dict[str, Any] = field(default_factory=dict)


def arrange_rule(
    db: psycopg.Connection[Any], org_id: UUID, project_id: UUID, *, severity: str = "warning", name: str | None = None
) -> Rule:
    """A metric rule and its version 1 in alert_rule_versions."""
    name = name or f"HighLatency-{uuid.uuid4().hex[:6]}"
    spec = {"metric": "http.latency", "aggregation": "p95", "window": 300, "op": ">", "threshold": 0.5}
    row = db.execute(
        "insert into public.alert_rules (org_id, project_id, name, kind, spec, severity)"
        " values (%s, %s, %s, 'metric', %s, %s) returning id",
        (org_id, project_id, name, Jsonb(spec), severity),
    ).fetchone()
    assert row is not None
    rule = Rule(row["id"], org_id, project_id, name, severity)
    rule.definition = {"name": name, "kind": "metric", "spec": spec, "severity": severity, "version": 1}
    db.execute(
        "insert into public.alert_rule_versions (rule_id, version, org_id, project_id, definition)"
        " values (%s, 1, %s, %s, %s)",
        (rule.id, org_id, project_id, Jsonb(rule.definition)),
    )
    return rule


def arrange_alert(
    db: psycopg.Connection[Any],
    rule: Rule,
    *,
    service: str = "checkout",
    severity: str | None = None,
    summary: str | None = None,
    at: datetime,
    **labels: str,
) -> Any:
    """A firing alert instance of the rule; returned as the dispatcher's GroupAlert."""
    from observai.incidents.lifecycle import GroupAlert

    all_labels = {"alertname": rule.name, "severity": severity or rule.severity, "service": service, **labels}
    fingerprint = hashlib.sha256(repr(sorted(all_labels.items())).encode()).hexdigest()[:16]
    annotations = {"summary": summary} if summary else {}
    row = db.execute(
        "insert into public.alert_instances (org_id, project_id, rule_id, rule_version, fingerprint, labels,"
        " annotations, state, value, active_at, fired_at, last_true_at, last_eval_at)"
        " values (%s, %s, %s, 1, %s, %s, %s, 'firing', 0.9, %s, %s, %s, %s) returning id",
        (
            rule.org_id,
            rule.project_id,
            rule.id,
            fingerprint,
            Jsonb(all_labels),
            Jsonb(annotations),
            at,
            at,
            at,
            at,
        ),
    ).fetchone()
    assert row is not None
    return GroupAlert(
        instance_id=row["id"],
        rule_id=rule.id,
        rule_version=1,
        fingerprint=fingerprint,
        labels=all_labels,
        annotations=annotations,
        value=0.9,
        fired_at=at,
    )


def resolved(alert: Any, at: datetime) -> Any:
    """The same alert as the dispatcher passes it once resolved."""
    from dataclasses import replace

    return replace(alert, resolved_at=at)


def arrange_group(db: psycopg.Connection[Any], org_id: UUID, project_id: UUID, **labels: str) -> UUID:
    row = db.execute(
        "insert into public.notification_groups (org_id, project_id, route_id, group_key, group_labels)"
        " values (%s, %s, '0', %s, %s) returning id",
        (org_id, project_id, uuid.uuid4().hex, Jsonb(labels or {"alertname": "HighLatency"})),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def flush(group_id: UUID, *, firing: list[Any], resolved: list[Any] | None = None, now: datetime) -> Any:
    """One flush of the group as the dispatcher does it: the group row locked, on_group_flush, one transaction."""
    from observai.db.connection import transaction
    from observai.incidents.lifecycle import on_group_flush

    with transaction() as cur:
        cur.execute("select * from public.notification_groups where id = %s for update", (group_id,))
        group = cur.fetchone()
        assert group is not None
        return on_group_flush(cur, group=group, firing=firing, resolved=resolved or [], now=now)
