"""Preview a rule: evaluate it now, as the evaluator would, and save nothing (``POST .../alert-rules/preview``).

The caller needs read access to the project's telemetry (viewers and up, or a ``read`` API key of the project);
another tenant's project is a 404. A query that fails (too many series, a regex the database refuses) is not an
error of the request: the preview shows it (``error``), as the rule's evaluation would.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from observai.alerts.labels import alert_labels, fingerprint
from observai.alerts.rule_models import RuleIn
from observai.alerts.templates import render_all
from observai.auth.principal import Principal


class PreviewInstance(BaseModel):
    model_config = ConfigDict(defer_build=True)
    labels: dict[str, str] = Field(description="The alert's labels: the series', the rule's, alertname, severity")
    fingerprint: str
    value: float | None
    active: bool = Field(description="Whether the condition holds for this series now")
    state: str = Field(description="The state a first evaluation would give it (pending, or firing with for 0)")
    annotations: dict[str, str]


class RulePreview(BaseModel):
    model_config = ConfigDict(defer_build=True)
    eval_at: datetime = Field(description="The evaluation time: now, floored to the minute (windows end there)")
    instances: list[PreviewInstance]
    error: str | None = Field(description="Why the rule's query failed (the instances are then empty)")


def preview_rule(principal: Principal, project_id: UUID, rule: RuleIn, now: datetime) -> RulePreview:
    from observai.alerts.evaluation import error_text, floor_minute
    from observai.alerts.kinds import get_kind, samples
    from observai.alerts.states import next_state
    from observai.auth.permissions import Action
    from observai.db.breaker import is_connection_failure
    from observai.db.connection import tenant_transaction
    from observai.tenancy.access import authorize_telemetry

    eval_at = floor_minute(now)
    kind = get_kind(rule.condition.kind)
    error: str | None = None
    results = []
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        # A failed query aborts only its savepoint: the transaction still ends cleanly.
        cur.execute("savepoint preview")
        try:
            results = samples(kind, rule.condition, kind.observe(cur, project_id, rule.condition, eval_at))
        except Exception as exc:
            if is_connection_failure(exc):
                raise
            cur.execute("rollback to savepoint preview")
            error = error_text(exc)
    threshold = getattr(rule.condition, "threshold", None)
    instances = []
    for sample in results:
        labels = alert_labels(rule.name, rule.severity, rule.labels, sample.labels)
        state = next_state(
            None, active=sample.active, value=sample.value, now=eval_at, for_s=rule.for_, keep_firing_for_s=0
        )
        instances.append(
            PreviewInstance(
                labels=labels,
                fingerprint=fingerprint(labels),
                value=sample.value,
                active=sample.active,
                state=state.state,
                annotations=render_all(
                    rule.annotations, value=sample.value, labels=labels, threshold=threshold, rule=rule.name
                ),
            )
        )
    instances.sort(key=lambda i: sorted(i.labels.items()))
    return RulePreview(eval_at=eval_at, instances=instances, error=error)
