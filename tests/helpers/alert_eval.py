"""Alert evaluation test helpers: telemetry rows written directly (service role), and rules inserted as the rules
API stores them (``spec``: the condition as JSON)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from tests.helpers.ingest import IngestProject


def add_series(project: IngestProject, name: str, attributes: dict[str, Any], type_: str = "gauge") -> int:
    from observai.db.connection import transaction
    from observai.telemetry.series import series_id

    sid = series_id(name, attributes)
    with transaction() as cur:
        cur.execute(
            "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes)"
            " values (%s, %s, %s, %s, %s, %s::jsonb) on conflict do nothing",
            (project.org_id, project.project_id, sid, name, type_, json.dumps(attributes)),
        )
    return sid


def add_points(project: IngestProject, series: int, points: Iterable[tuple[datetime, float]]) -> None:
    from observai.db.connection import transaction

    listed = list(points)
    with transaction() as cur:
        cur.execute(
            "insert into public.metric_points (org_id, project_id, series_id, time, value)"
            " select %s, %s, %s, t, v from unnest(%s::timestamptz[], %s::float8[]) x(t, v)"
            " on conflict do nothing",
            (project.org_id, project.project_id, series, [t for t, _ in listed], [v for _, v in listed]),
        )


def add_logs(project: IngestProject, lines: Iterable[dict[str, Any]]) -> None:
    """Log rows: each a dict of time, and optionally service, severity_number, body, attributes, resource."""
    from observai.db.connection import transaction

    with transaction() as cur:
        for line in lines:
            cur.execute(
                "insert into public.logs (org_id, project_id, time, severity_number, service, body, attributes,"
                " resource) values (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)",
                (
                    project.org_id, project.project_id, line["time"], line.get("severity_number", 9),
                    line.get("service"), line.get("body", "hello"), json.dumps(line.get("attributes", {})),
                    json.dumps(line.get("resource", {})),
                ),
            )  # fmt: skip


def add_span(project: IngestProject, service: str, start: datetime) -> None:
    from observai.db.connection import transaction

    with transaction() as cur:
        cur.execute(
            "insert into public.spans (org_id, project_id, trace_id, span_id, name, kind, service, start_time,"
            " end_time, duration_ns, status_code) values (%s, %s, %s, %s, 'GET /', 'server', %s, %s, %s, 0, 'unset')",
            (project.org_id, project.project_id, uuid.uuid4().hex, uuid.uuid4().hex[:16], service, start, start),
        )


def add_rule(
    project: IngestProject,
    condition: dict[str, Any],
    *,
    name: str | None = None,
    for_s: int = 0,
    keep_firing_for_s: int = 0,
    interval_s: int = 60,
    severity: str = "warning",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    next_eval_at: datetime | None = None,
    enabled: bool = True,
) -> UUID:
    """A rule as the rules API stores it (its condition validated by the rule model first)."""
    from observai.alerts.rule_models import RuleIn
    from observai.db.connection import transaction

    rule = RuleIn.model_validate(
        {"name": name or f"rule {uuid.uuid4().hex[:8]}", "condition": condition, "for": for_s,
         "keep_firing_for": keep_firing_for_s, "interval": interval_s, "severity": severity,
         "labels": labels or {}, "annotations": annotations or {}, "enabled": enabled}
    )  # fmt: skip
    spec = rule.condition.model_dump(mode="json")
    with transaction() as cur:
        cur.execute(
            "insert into public.alert_rules (org_id, project_id, name, kind, spec, for_s, keep_firing_for_s,"
            " interval_s, severity, labels, annotations, enabled, next_eval_at)"
            " values (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, coalesce(%s, now()))"
            " returning id",
            (
                project.org_id, project.project_id, rule.name, spec["kind"], json.dumps(spec), rule.for_,
                rule.keep_firing_for, rule.interval, rule.severity, json.dumps(rule.labels),
                json.dumps(rule.annotations), rule.enabled, next_eval_at,
            ),
        )  # fmt: skip
        row = cur.fetchone()
    assert row is not None
    return row["id"]
