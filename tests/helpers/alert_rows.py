"""Alert rows arranged directly, as the evaluator would write them (rules, instances, transitions not yet routed),
for the routing and dispatch tests; and the notification rows read back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from observai.alerts.labels import fingerprint
from psycopg.types.json import Jsonb


@dataclass
class AlertBoard:
    """One project's alerts: ``fire`` and ``resolve`` write the instance and its transition, as the evaluator does."""

    db: psycopg.Connection[Any]
    org_id: UUID
    project_id: UUID
    rules: dict[str, UUID] = field(default_factory=dict)

    def rule(self, name: str, severity: str = "warning") -> UUID:
        if name not in self.rules:
            row = self.db.execute(
                "insert into public.alert_rules (org_id, project_id, name, kind, spec, severity)"
                " values (%s, %s, %s, 'metric', '{}', %s) returning id",
                (self.org_id, self.project_id, name, severity),
            ).fetchone()
            assert row is not None
            self.rules[name] = row["id"]
        return self.rules[name]

    def _transition(self, instance: dict[str, Any], from_state: str, to_state: str, at: datetime) -> None:
        self.db.execute(
            "insert into public.alert_transitions (org_id, project_id, rule_id, rule_version, instance_id,"
            " fingerprint, labels, from_state, to_state, value, at) values (%s, %s, %s, 1, %s, %s, %s, %s, %s, 1, %s)",
            (
                self.org_id,
                self.project_id,
                instance["rule_id"],
                instance["id"],
                instance["fingerprint"],
                Jsonb(instance["labels"]),
                from_state,
                to_state,
                at,
            ),
        )

    def fire(self, at: datetime, alertname: str = "HighLatency", **labels: str) -> UUID:
        """The alert with these labels goes firing (a new instance, or the existing one again)."""
        severity = labels.pop("severity", "warning")
        full = {**labels, "alertname": alertname, "severity": severity}
        rule_id = self.rule(alertname, severity)
        fp = fingerprint(full)
        row = self.db.execute(
            "insert into public.alert_instances (org_id, project_id, rule_id, rule_version, fingerprint, labels,"
            " annotations, state, value, active_at, fired_at, last_true_at, last_eval_at)"
            " values (%(org)s, %(project)s, %(rule)s, 1, %(fp)s, %(labels)s, %(ann)s, 'firing', 1, %(at)s, %(at)s,"
            "  %(at)s, %(at)s)"
            " on conflict (rule_id, fingerprint) do update set state = 'firing', fired_at = %(at)s,"
            "  resolved_at = null, last_eval_at = %(at)s"
            " returning id, rule_id, fingerprint, labels, (xmax = 0) as created",
            {
                "org": self.org_id,
                "project": self.project_id,
                "rule": rule_id,
                "fp": fp,
                "labels": Jsonb(full),
                "ann": Jsonb({"summary": f"{alertname} on {labels.get('service', 'all')}"}),
                "at": at,
            },
        ).fetchone()
        assert row is not None
        self._transition(row, "pending" if row["created"] else "resolved", "firing", at)
        return UUID(str(row["id"]))

    def resolve(self, instance_id: UUID, at: datetime) -> None:
        row = self.db.execute(
            "update public.alert_instances set state = 'resolved', resolved_at = %s, last_eval_at = %s"
            " where id = %s returning id, rule_id, fingerprint, labels",
            (at, at, instance_id),
        ).fetchone()
        assert row is not None
        self._transition(row, "firing", "resolved", at)

    # --- reading back ---------------------------------------------------------------------------------------

    def log(self) -> list[dict[str, Any]]:
        """The project's notification log, oldest first."""
        return self.db.execute(
            "select l.*, g.group_labels, g.route_id from public.notification_log l"
            " join public.notification_groups g on g.id = l.group_id where l.project_id = %s order by l.id",
            (self.project_id,),
        ).fetchall()

    def groups(self) -> list[dict[str, Any]]:
        return self.db.execute(
            "select * from public.notification_groups where project_id = %s order by created_at, id",
            (self.project_id,),
        ).fetchall()

    def group(self, **group_labels: str) -> dict[str, Any]:
        (group,) = [g for g in self.groups() if all(g["group_labels"].get(k) == v for k, v in group_labels.items())]
        return group

    def put_policy(self, policy: dict[str, Any]) -> None:
        self.db.execute(
            "insert into public.notification_policies (project_id, org_id, policy) values (%s, %s, %s)"
            " on conflict (project_id) do update set policy = excluded.policy",
            (self.project_id, self.org_id, Jsonb(policy)),
        )

    def silence(self, matchers: list[dict[str, str]], starts_at: datetime, ends_at: datetime, **extra: Any) -> UUID:
        row = self.db.execute(
            "insert into public.silences (org_id, project_id, matchers, starts_at, ends_at, expire_when_resolved)"
            " values (%s, %s, %s, %s, %s, %s) returning id",
            (
                self.org_id,
                self.project_id,
                Jsonb(matchers),
                starts_at,
                ends_at,
                bool(extra.get("expire_when_resolved", False)),
            ),
        ).fetchone()
        assert row is not None
        return UUID(str(row["id"]))


def new_board(db: psycopg.Connection[Any], label: str = "Alerting") -> AlertBoard:
    from tests.helpers.ingest import make_project

    project = make_project(scopes=("read",), label=f"{label} {uuid.uuid4().hex[:4]}")
    return AlertBoard(db, project.org_id, project.project_id)
