"""Data access of alert rules: the rules, their versions, their alert instances and transitions.

Writes run in the service's transaction after the permission check; reads run under the caller's claims (RLS).
Deleted rules (``deleted_at`` set, migration 0020) are hidden from every read of rules and alerts; their versions
and transitions stay readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

# One advisory lock key per project serializes the rule-count check with the insert (a bigint from the id).
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.alert_rules:' || %s::text, 0))"
COLUMNS = (
    "id, org_id, project_id, name, kind, spec, for_s, keep_firing_for_s, interval_s, severity, labels, annotations,"
    " enabled, version, created_by, created_at, updated_at, next_eval_at, last_eval_at, last_eval_lag_ms,"
    " last_eval_duration_ms, last_error, last_error_at"
)
VERSION_COLUMNS = "rule_id, project_id, version, definition, created_by, created_at"
# An alert's last evaluation: its rule's, when that one succeeded. Every evaluation of a rule looks at all its alerts,
# but writes only the rows whose state is pending or firing or changes (an inactive or resolved alert's row keeps
# the time it was last written); a failed evaluation left the alerts as they were.
INSTANCE_COLUMNS = (
    "i.id, i.rule_id, i.rule_version, r.name as rule_name, i.fingerprint, i.labels, i.annotations, i.state, i.value,"
    " i.active_at, i.fired_at, i.resolved_at,"
    " case when r.last_error is null then greatest(i.last_eval_at, r.last_eval_at) else i.last_eval_at end"
    " as last_eval_at, i.updated_at"
)
TRANSITION_COLUMNS = "id, rule_id, rule_version, instance_id, fingerprint, labels, from_state, to_state, value, at"
# The time an alert is listed by: when it became active, else when it resolved, else when it was last evaluated.
_ALERT_SORT = "coalesce(i.active_at, i.resolved_at, i.last_eval_at)"


def lock_project_rules(cur: Cursor, project_id: UUID) -> None:
    cur.execute(_LOCK_SQL, (project_id,))


def count_live(cur: Cursor, project_id: UUID) -> int:
    cur.execute(
        "select count(*) as n from public.alert_rules where project_id = %s and deleted_at is null", (project_id,)
    )
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def regex_error(cur: Cursor, pattern: str) -> str | None:
    """Why Postgres' regex dialect refuses ``pattern`` (the evaluator matches with it), or None when it accepts it.
    In a savepoint, so a refusal leaves the caller's transaction usable."""
    import psycopg

    try:
        with cur.connection.transaction():
            cur.execute("select '' ~ %s as ok", (pattern,))
    except psycopg.errors.InvalidRegularExpression as exc:
        return str(exc.diag.message_primary or exc)
    return None


def insert(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    fields: Mapping[str, Any],
    created_by: UUID | None,
    now: datetime,
) -> dict[str, Any]:
    """The new rule (version 1), due for evaluation at once; raises UniqueViolation for a taken name (the caller
    runs it in a savepoint)."""
    cur.execute(
        "insert into public.alert_rules (org_id, project_id, name, kind, spec, for_s, keep_firing_for_s, interval_s,"
        " severity, labels, annotations, enabled, created_by, next_eval_at)"
        " values (%(org)s, %(project)s, %(name)s, %(kind)s, %(spec)s, %(for_s)s, %(keep_firing_for_s)s,"
        " %(interval_s)s, %(severity)s, %(labels)s, %(annotations)s, %(enabled)s, %(created_by)s, %(now)s)"
        f" returning {COLUMNS}",
        {"org": org_id, "project": project_id, "created_by": created_by, "now": now, **_db_fields(fields)},
    )
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def _db_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: Jsonb(value) if key in ("spec", "labels", "annotations") else value for key, value in fields.items()}


def get_for_update(cur: Cursor, project_id: UUID, rule_id: UUID) -> dict[str, Any] | None:
    """The live rule, locked for the change (an evaluation holding it finishes first)."""
    cur.execute(
        f"select {COLUMNS} from public.alert_rules where project_id = %s and id = %s and deleted_at is null for update",
        (project_id, rule_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def update(cur: Cursor, rule_id: UUID, fields: Mapping[str, Any], *, reschedule_at: datetime | None) -> dict[str, Any]:
    """Set ``fields`` (db column names). ``reschedule_at``: due then, and any evaluation in flight is fenced off
    (``eval_seq`` bumped, its lease dropped) so it cannot write results of the rule as it was."""
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in fields
    ]
    if reschedule_at is not None:
        assignments.append(
            sql.SQL("next_eval_at = %(reschedule_at)s, eval_seq = eval_seq + 1, eval_lease_until = null")
        )
    query = sql.SQL("update public.alert_rules set {} where id = %(rule_id)s returning " + COLUMNS).format(
        sql.SQL(", ").join(assignments)
    )
    cur.execute(query, {**_db_fields(fields), "rule_id": rule_id, "reschedule_at": reschedule_at})
    row = cur.fetchone()
    assert row is not None
    return dict(row)


def soft_delete(cur: Cursor, rule_id: UUID, now: datetime) -> None:
    cur.execute(
        "update public.alert_rules set deleted_at = %s, enabled = false, eval_seq = eval_seq + 1,"
        " eval_lease_until = null where id = %s",
        (now, rule_id),
    )


def insert_version(
    cur: Cursor,
    *,
    rule_id: UUID,
    version: int,
    org_id: UUID,
    project_id: UUID,
    definition: dict[str, Any],
    created_by: UUID | None,
    now: datetime,
) -> None:
    cur.execute(
        "insert into public.alert_rule_versions (rule_id, version, org_id, project_id, definition, created_by,"
        " created_at) values (%s, %s, %s, %s, %s, %s, %s)",
        (rule_id, version, org_id, project_id, Jsonb(definition), created_by, now),
    )


# --- reads (under the caller's claims) ----------------------------------------------------------------------------


def get(cur: Cursor, project_id: UUID, rule_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {COLUMNS} from public.alert_rules where project_id = %s and id = %s and deleted_at is null",
        (project_id, rule_id),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def list_page(
    cur: Cursor,
    project_id: UUID,
    *,
    kind: str | None,
    enabled: bool | None,
    severity: str | None,
    name_contains: str | None,
    after_name: str | None,
    after_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The project's live rules by name (then id), ``limit`` rows after the (name, id) position when given."""
    pattern = None
    if name_contains:
        escaped = name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
    cur.execute(
        f"select {COLUMNS} from public.alert_rules where project_id = %(project)s and deleted_at is null"
        " and (%(kind)s::text is null or kind = %(kind)s)"
        " and (%(enabled)s::boolean is null or enabled = %(enabled)s)"
        " and (%(severity)s::text is null or severity = %(severity)s)"
        " and (%(pattern)s::text is null or name ilike %(pattern)s)"
        " and (%(after_name)s::text is null or (name, id) > (%(after_name)s, %(after_id)s::uuid))"
        " order by name, id limit %(limit)s",
        {
            "project": project_id,
            "kind": kind,
            "enabled": enabled,
            "severity": severity,
            "pattern": pattern,
            "after_name": after_name,
            "after_id": after_id,
            "limit": limit,
        },
    )
    return [dict(row) for row in cur.fetchall()]


def rule_known(cur: Cursor, project_id: UUID, rule_id: UUID) -> bool:
    """Whether the rule is or was the project's (deleted rules keep their versions: every rule has version 1)."""
    cur.execute(
        "select exists (select 1 from public.alert_rule_versions where project_id = %s and rule_id = %s) as known",
        (project_id, rule_id),
    )
    row = cur.fetchone()
    return bool(row and row["known"])


def list_versions(cur: Cursor, project_id: UUID, rule_id: UUID, before: int | None, limit: int) -> list[dict[str, Any]]:
    """Newest first; ``limit`` versions older than ``before`` when given."""
    cur.execute(
        f"select {VERSION_COLUMNS} from public.alert_rule_versions where project_id = %(project)s"
        " and rule_id = %(rule)s and (%(before)s::integer is null or version < %(before)s)"
        " order by version desc limit %(limit)s",
        {"project": project_id, "rule": rule_id, "before": before, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def get_version(cur: Cursor, project_id: UUID, rule_id: UUID, version: int) -> dict[str, Any] | None:
    cur.execute(
        f"select {VERSION_COLUMNS} from public.alert_rule_versions where project_id = %s and rule_id = %s"
        " and version = %s",
        (project_id, rule_id, version),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def list_transitions(
    cur: Cursor, project_id: UUID, rule_id: UUID, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The rule's transitions, newest first; ``limit`` rows with an id below ``before`` when given."""
    cur.execute(
        f"select {TRANSITION_COLUMNS} from public.alert_transitions where project_id = %(project)s"
        " and rule_id = %(rule)s and (%(before)s::bigint is null or id < %(before)s)"
        " order by id desc limit %(limit)s",
        {"project": project_id, "rule": rule_id, "before": before, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def list_alerts(
    cur: Cursor,
    project_id: UUID,
    *,
    states: list[str],
    rule_id: UUID | None,
    severity: str | None,
    label_equals: Mapping[str, str],
    after_ts: datetime | None,
    after_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Alert instances of the project's live rules in ``states``, most recently active first."""
    cur.execute(
        f"select {INSTANCE_COLUMNS}, {_ALERT_SORT} as sort_at from public.alert_instances i"
        " join public.alert_rules r on r.id = i.rule_id and r.project_id = i.project_id and r.deleted_at is null"
        " where i.project_id = %(project)s and i.state = any(%(states)s)"
        " and (%(rule)s::uuid is null or i.rule_id = %(rule)s)"
        " and (%(severity)s::text is null or i.labels ->> 'severity' = %(severity)s)"
        " and i.labels @> %(labels)s"
        f" and (%(after_ts)s::timestamptz is null or ({_ALERT_SORT}, i.id) < (%(after_ts)s, %(after_id)s::uuid))"
        f" order by {_ALERT_SORT} desc, i.id desc limit %(limit)s",
        {
            "project": project_id,
            "states": states,
            "rule": rule_id,
            "severity": severity,
            "labels": Jsonb(dict(label_equals)),
            "after_ts": after_ts,
            "after_id": after_id,
            "limit": limit,
        },
    )
    return [dict(row) for row in cur.fetchall()]
