"""Alert rules over the API: create, list, read, replace, patch, delete; their versions; their alerts and history.

Who may do what:

* write (create, replace, patch, enable/disable, delete): a person with the member role or above. Rules are
  people's decisions about what wakes someone up, so a program's API key cannot change them;
* read (rules, versions, history, alerts): viewers and up, or an API key bound to the project with ``read``.

Another organization's project, or another project's key, gets 404 (existence is not revealed).

Versions: every change of a rule's definition (anything but ``enabled``) bumps ``version`` and saves the new
definition in ``alert_rule_versions``; a change that alters nothing saves nothing. Versions outlive the rule, so an
incident shows the rule its alerts fired under.

Alerts when a rule changes (decided as Prometheus users expect):

* a changed condition, labels or thresholds: the alerts keep their state; the evaluator runs the rule at once
  (due now) and moves each alert from there (a series the new condition no longer yields resolves then);
* disabling or deleting the rule: its alerts go away at once, in the same transaction: firing → resolved (with a
  transition the router notifies, as for any resolution), pending → inactive (pending alerts were never notified);
* deleting is a soft delete (``deleted_at``, migration 0020): the rule's instances, transitions and versions stay
  for the router, the incidents and the history; the rule disappears from every list and read, and its name is
  free again.

Any change also fences off an evaluation of the rule in flight (``eval_seq`` bumped), so it cannot write results
of the rule as it was over the change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from observai import audit
from observai.alerts import rules_store as store
from observai.alerts.rule_models import (
    AlertInstance,
    AlertTransition,
    Rule,
    RuleDeleted,
    RuleEvaluation,
    RuleIn,
    RulePatch,
    RuleVersion,
)
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, NotFound, Unprocessable, invalid_field
from observai.match_params import match_pairs
from observai.pagination import IdCursor, TimeCursor, decode_cursor, encode_cursor, page, time_cursor_params
from observai.tenancy.access import authorize_configuration, authorize_telemetry

MAX_RULES_PER_PROJECT = 500
DEFAULT_ALERT_STATES = ("pending", "firing")


class NameCursor(BaseModel):
    """Position in the list of rules, ordered by (name, id)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: str = Field(min_length=1, max_length=200)
    id: UUID


@dataclass(frozen=True, slots=True)
class RuleFilters:
    kind: str | None = None
    enabled: bool | None = None
    severity: str | None = None
    name_contains: str | None = None


@dataclass(frozen=True, slots=True)
class AlertFilters:
    states: tuple[str, ...] = DEFAULT_ALERT_STATES
    rule_id: UUID | None = None
    severity: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


# --- rows and definitions ---------------------------------------------------------------------------------------


def definition_of(body: RuleIn) -> dict[str, Any]:
    """What a version saves: the rule's body as the API takes it (durations in seconds), without ``enabled``."""
    return body.model_dump(mode="json", by_alias=True, exclude={"enabled"})


def _columns(body: RuleIn) -> dict[str, Any]:
    return {
        "name": body.name,
        "kind": body.condition.kind,
        "spec": body.condition.model_dump(mode="json", by_alias=True),
        "for_s": body.for_,
        "keep_firing_for_s": body.keep_firing_for,
        "interval_s": body.interval,
        "severity": body.severity,
        "labels": body.labels,
        "annotations": body.annotations,
        "enabled": body.enabled,
    }


def _stored_definition(row: dict[str, Any]) -> dict[str, Any]:
    """The saved rule in the shape of ``definition_of`` (so the two compare), from its row."""
    return {
        "name": row["name"],
        "condition": row["spec"],
        "for": row["for_s"],
        "keep_firing_for": row["keep_firing_for_s"],
        "interval": row["interval_s"],
        "severity": row["severity"],
        "labels": row["labels"],
        "annotations": row["annotations"],
    }


def to_rule(row: dict[str, Any]) -> Rule:
    return Rule(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        condition=row["spec"],
        for_=row["for_s"],
        keep_firing_for=row["keep_firing_for_s"],
        interval=row["interval_s"],
        severity=row["severity"],
        labels=row["labels"],
        annotations=row["annotations"],
        enabled=row["enabled"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        evaluation=RuleEvaluation(
            last_eval_at=row["last_eval_at"],
            lag_ms=row["last_eval_lag_ms"],
            duration_ms=row["last_eval_duration_ms"],
            next_eval_at=row["next_eval_at"],
            error=row["last_error"],
            error_at=row["last_error_at"],
        ),
    )


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _rule_not_found(rule_id: UUID) -> NotFound:
    return NotFound("Alert rule not found", details={"rule_id": str(rule_id)})


def _check_regexes(cur: Cursor, body: RuleIn) -> None:
    """The condition's regex filters, against the database's regex dialect (the evaluator matches with it): a
    pattern Python accepts but Postgres refuses is a 422 now, not an evaluation error every minute."""
    for index, query_filter in enumerate(getattr(body.condition, "filters", [])):
        if query_filter.op in ("=~", "!~"):
            reason = store.regex_error(cur, query_filter.value)
            if reason is not None:
                raise invalid_field(
                    ["body", "condition", body.condition.kind, "filters", index, "value"],
                    "invalid_regex",
                    f"not accepted by the database's regex dialect: {reason}",
                )


def _check_detector(cur: Cursor, project_id: UUID, body: RuleIn) -> None:
    """An ``anomaly`` condition naming a detector: it must be one of the project's (not deleted), or the rule would
    never see anything. A 422 at the field, as for any invalid value."""
    detector_id = getattr(body.condition, "detector_id", None)
    if body.condition.kind != "anomaly" or detector_id is None:
        return
    cur.execute(
        "select 1 from public.anomaly_detectors where project_id = %s and id = %s and deleted_at is null",
        (project_id, detector_id),
    )
    if cur.fetchone() is None:
        raise invalid_field(
            ["body", "condition", "anomaly", "detector_id"],
            "unknown_detector",
            "no anomaly detector of this project has this id",
        )


def _conflict_on_name(name: str) -> Conflict:
    return Conflict(
        f"This project already has an alert rule named {name!r}",
        details={"loc": ["body", "name"], "name": name},
    )


# --- writes -----------------------------------------------------------------------------------------------------


def create_rule(principal: Principal, project_id: UUID, body: RuleIn, now: datetime | None = None) -> Rule:
    """Save the rule as version 1, due for evaluation at once."""
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        _check_regexes(cur, body)
        _check_detector(cur, project_id, body)
        store.lock_project_rules(cur, project_id)
        count = store.count_live(cur, project_id)
        if count >= MAX_RULES_PER_PROJECT:
            raise Conflict(
                f"This project has {count} alert rules, the most it may have; delete one first",
                code="rule_limit_reached",
                details={"rules": count, "limit": MAX_RULES_PER_PROJECT},
            )
        try:
            with cur.connection.transaction():
                row = store.insert(
                    cur,
                    org_id=org_id,
                    project_id=project_id,
                    fields=_columns(body),
                    created_by=principal.user_id,
                    now=now,
                )
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict_on_name(body.name) from exc
        store.insert_version(
            cur,
            rule_id=row["id"],
            version=1,
            org_id=org_id,
            project_id=project_id,
            definition=definition_of(body),
            created_by=principal.user_id,
            now=now,
        )
        audit.record(
            cur,
            principal,
            "alert_rule.create",
            org_id=org_id,
            target_type="alert_rule",
            target_id=row["id"],
            details={"project_id": str(project_id), "name": body.name, "kind": body.condition.kind, "version": 1},
        )
    return to_rule(row)


def replace_rule(
    principal: Principal, project_id: UUID, rule_id: UUID, body: RuleIn, now: datetime | None = None
) -> Rule:
    """PUT: the whole rule; fields left out take their defaults."""
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        row = store.get_for_update(cur, project_id, rule_id)
        if row is None:
            raise _rule_not_found(rule_id)
        return _change(cur, principal, org_id, row, body, now or datetime.now(UTC))


def patch_rule(
    principal: Principal, project_id: UUID, rule_id: UUID, body: RulePatch, now: datetime | None = None
) -> Rule:
    """PATCH: the fields given replace theirs (``labels`` and ``annotations`` as wholes); fields left out, or
    null, keep their value. ``{"enabled": false}`` disables the rule."""
    changes = body.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        row = store.get_for_update(cur, project_id, rule_id)
        if row is None:
            raise _rule_not_found(rule_id)
        merged = {**_stored_definition(row), "enabled": row["enabled"], **changes}
        try:
            new = RuleIn.model_validate(merged)
        except ValidationError as exc:
            # Only when the saved rule itself no longer passes today's checks: say which field to send anew.
            raise Unprocessable(
                "The rule as patched is invalid; send the fields named in details",
                code="validation_error",
                details=[
                    {
                        "loc": ["body", *(str(part) for part in error["loc"])],
                        "type": error["type"],
                        "message": error["msg"],
                    }
                    for error in exc.errors()
                ],
            ) from None
        return _change(cur, principal, org_id, row, new, now or datetime.now(UTC))


def _change(cur: Cursor, principal: Principal, org_id: UUID, row: dict[str, Any], new: RuleIn, now: datetime) -> Rule:
    """Save ``new`` over the locked ``row``: a new version when the definition changed, the rule's alerts ended
    when it is disabled, the evaluation rescheduled when it must run again. Audited when anything changed."""
    _check_regexes(cur, new)
    if new.condition.model_dump(mode="json", by_alias=True) != row["spec"]:
        _check_detector(cur, row["project_id"], new)  # a rule whose detector went since keeps working unchanged
    old_definition = _stored_definition(row)
    new_definition = definition_of(new)
    changed = sorted(key for key, value in new_definition.items() if old_definition.get(key) != value)
    toggled = new.enabled != row["enabled"]
    if not changed and not toggled:
        return to_rule(row)
    fields = _columns(new)
    version = row["version"] + 1 if changed else row["version"]
    if changed:
        fields["version"] = version
    # Due now when it changed or came back on; a disabled rule is not evaluated, but the fence still applies.
    reschedule = now if changed or toggled else None
    try:
        with cur.connection.transaction():
            updated = store.update(cur, row["id"], fields, reschedule_at=reschedule)
    except psycopg.errors.UniqueViolation as exc:
        raise _conflict_on_name(new.name) from exc
    if changed:
        store.insert_version(
            cur,
            rule_id=row["id"],
            version=version,
            org_id=org_id,
            project_id=row["project_id"],
            definition=new_definition,
            created_by=principal.user_id,
            now=now,
        )
    ended = _retire(cur, row["id"], now) if toggled and not new.enabled else None
    details: dict[str, Any] = {"project_id": str(row["project_id"]), "name": new.name, "version": version}
    if changed:
        details["changed"] = changed
    if toggled:
        details["enabled"] = new.enabled
    if ended is not None:
        details["ended_alerts"] = ended
    audit.record(
        cur,
        principal,
        "alert_rule.update",
        org_id=org_id,
        target_type="alert_rule",
        target_id=row["id"],
        details=details,
    )
    return to_rule(updated)


def delete_rule(principal: Principal, project_id: UUID, rule_id: UUID, now: datetime | None = None) -> RuleDeleted:
    """Resolve the rule's firing alerts (notified), end its pending ones, and soft-delete it (see the module)."""
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        row = store.get_for_update(cur, project_id, rule_id)
        if row is None:
            raise _rule_not_found(rule_id)
        ended = _retire(cur, rule_id, now)
        store.soft_delete(cur, rule_id, now)
        audit.record(
            cur,
            principal,
            "alert_rule.delete",
            org_id=org_id,
            target_type="alert_rule",
            target_id=rule_id,
            details={
                "project_id": str(project_id),
                "name": row["name"],
                "version": row["version"],
                "ended_alerts": ended,
            },
        )
    return RuleDeleted(id=rule_id, resolved_alerts=ended["resolved"])


# --- reads ------------------------------------------------------------------------------------------------------


def get_rule(principal: Principal, project_id: UUID, rule_id: UUID) -> Rule:
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        row = store.get(cur, project_id, rule_id)
    if row is None:
        raise _rule_not_found(rule_id)
    return to_rule(row)


def list_rules(
    principal: Principal, project_id: UUID, filters: RuleFilters, cursor: str | None, limit: int
) -> tuple[list[Rule], str | None]:
    """The project's rules by name."""
    after = decode_cursor(cursor, NameCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        rows = store.list_page(
            cur,
            project_id,
            kind=filters.kind,
            enabled=filters.enabled,
            severity=filters.severity,
            name_contains=filters.name_contains,
            after_name=after.name if after else None,
            after_id=after.id if after else None,
            limit=limit + 1,
        )
    rows, next_cursor = page(rows, limit, lambda row: NameCursor(name=row["name"], id=row["id"]))
    return [to_rule(row) for row in rows], next_cursor


def _known_rule(cur: Cursor, principal: Principal, project_id: UUID, rule_id: UUID) -> None:
    """Authorized to read, and the rule is (or was, if deleted) the project's."""
    authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
    if not store.rule_known(cur, project_id, rule_id):
        raise _rule_not_found(rule_id)


def _to_version(row: dict[str, Any]) -> RuleVersion:
    return RuleVersion(
        rule_id=row["rule_id"],
        version=row["version"],
        definition=row["definition"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


def list_versions(
    principal: Principal, project_id: UUID, rule_id: UUID, cursor: str | None, limit: int
) -> tuple[list[RuleVersion], str | None]:
    """Newest first; also for a deleted rule."""
    after = decode_cursor(cursor, IdCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        _known_rule(cur, principal, project_id, rule_id)
        rows = store.list_versions(cur, project_id, rule_id, after.before if after else None, limit + 1)
    rows, next_cursor = page(rows, limit, lambda row: IdCursor(before=row["version"]))
    return [_to_version(row) for row in rows], next_cursor


def get_version(principal: Principal, project_id: UUID, rule_id: UUID, version: int) -> RuleVersion:
    """One version as it was saved; also for a deleted rule (an incident shows the rule its alerts fired under)."""
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        row = store.get_version(cur, project_id, rule_id, version)
    if row is None:
        raise NotFound("Alert rule version not found", details={"rule_id": str(rule_id), "version": version})
    return _to_version(row)


def rule_history(
    principal: Principal, project_id: UUID, rule_id: UUID, cursor: str | None, limit: int
) -> tuple[list[AlertTransition], str | None]:
    """Every state change of the rule's alerts, newest first; also for a deleted rule."""
    after = decode_cursor(cursor, IdCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        _known_rule(cur, principal, project_id, rule_id)
        rows = store.list_transitions(cur, project_id, rule_id, after.before if after else None, limit + 1)
    rows, next_cursor = page(rows, limit, lambda row: IdCursor(before=row["id"]))
    return [
        AlertTransition(
            id=row["id"],
            at=row["at"],
            instance_id=row["instance_id"],
            fingerprint=row["fingerprint"],
            labels=row["labels"],
            from_state=row["from_state"],
            to_state=row["to_state"],
            value=_finite(row["value"]),
            rule_version=row["rule_version"],
        )
        for row in rows
    ], next_cursor


def label_matchers(query_params: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``match[label]=value`` query parameters: the alerts whose label equals the value."""
    return tuple(match_pairs(query_params, what="label"))


def list_alerts(
    principal: Principal, project_id: UUID, filters: AlertFilters, cursor: str | None, limit: int
) -> tuple[list[AlertInstance], str | None]:
    """The project's alerts in the given states (default: pending and firing), most recently active first."""
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        rows = store.list_alerts(
            cur,
            project_id,
            states=list(filters.states),
            rule_id=filters.rule_id,
            severity=filters.severity,
            label_equals=dict(filters.labels),
            after_ts=position["after_ts"],
            after_id=position["after_id"],
            limit=limit + 1,
        )
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor: str | None = encode_cursor(TimeCursor(ts=rows[-1]["sort_at"], id=rows[-1]["id"]))
    else:
        next_cursor = None
    return [
        AlertInstance(
            id=row["id"],
            rule_id=row["rule_id"],
            rule_version=row["rule_version"],
            rule_name=row["rule_name"],
            fingerprint=row["fingerprint"],
            labels=row["labels"],
            annotations=row["annotations"],
            state=row["state"],
            value=_finite(row["value"]),
            active_at=row["active_at"],
            fired_at=row["fired_at"],
            resolved_at=row["resolved_at"],
            last_eval_at=row["last_eval_at"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ], next_cursor


def _retire(cur: Cursor, rule_id: UUID, now: datetime) -> dict[str, int]:
    """The rule's alerts end as an evaluation would end them (transitions, alert.resolved events)."""
    from observai.alerts.evaluation import retire_rule  # the evaluator's imports (the query engine) only here

    return retire_rule(cur, rule_id, now=now)
