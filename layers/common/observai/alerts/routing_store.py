"""SQL of alert routing: policies, silences, notification groups and their alerts, the notification log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

SILENCE_COLUMNS = (
    "id, org_id, project_id, matchers, starts_at, ends_at, comment, created_by, created_by_key_id,"
    " expire_when_resolved, expired_at, created_at, updated_at"
)
GROUP_COLUMNS = (
    "id, org_id, project_id, route_id, group_key, group_labels, status, next_flush_at, last_flush_at, flush_seq,"
    " incident_id, created_at, updated_at"
)
LOG_COLUMNS = "id, group_id, seq, incident_id, reason, firing, resolved, receivers, sent_at"
# A silence in force at %(now)s.
_ACTIVE = "expired_at is null and starts_at <= %(now)s and ends_at > %(now)s"
_STATUS_SQL = {
    "expired": "(expired_at is not null or ends_at <= %(now)s)",
    "pending": "(expired_at is null and starts_at > %(now)s and ends_at > %(now)s)",
    "active": f"({_ACTIVE})",
}


# --- policies ------------------------------------------------------------------------------------------------


def get_policy(cur: Cursor, project_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        "select project_id, policy, version, updated_by, updated_at from public.notification_policies"
        " where project_id = %s",
        (project_id,),
    )
    return cur.fetchone()


def put_policy(cur: Cursor, *, org_id: UUID, project_id: UUID, policy: dict[str, Any], by: UUID | None) -> dict:
    cur.execute(
        "insert into public.notification_policies (project_id, org_id, policy, version, updated_by, updated_at)"
        " values (%(project)s, %(org)s, %(policy)s, 1, %(by)s, now())"
        " on conflict (project_id) do update set policy = excluded.policy, updated_by = excluded.updated_by,"
        "  updated_at = now(), version = public.notification_policies.version + 1"
        " returning project_id, policy, version, updated_by, updated_at",
        {"project": project_id, "org": org_id, "policy": Jsonb(policy), "by": by},
    )
    row = cur.fetchone()
    assert row is not None
    return row


# --- silences ------------------------------------------------------------------------------------------------


def insert_silence(cur: Cursor, **values: Any) -> dict[str, Any]:
    cur.execute(
        "insert into public.silences (org_id, project_id, matchers, starts_at, ends_at, comment, created_by,"
        " created_by_key_id, expire_when_resolved, created_at, updated_at)"
        " values (%(org_id)s, %(project_id)s, %(matchers)s, %(starts_at)s, %(ends_at)s, %(comment)s, %(created_by)s,"
        "  %(created_by_key_id)s, %(expire_when_resolved)s, %(now)s, %(now)s)"
        f" returning {SILENCE_COLUMNS}",
        {**values, "matchers": Jsonb(values["matchers"])},
    )
    row = cur.fetchone()
    assert row is not None
    return row


def get_silence(cur: Cursor, project_id: UUID, silence_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    cur.execute(
        f"select {SILENCE_COLUMNS} from public.silences where project_id = %s and id = %s"
        + (" for update" if lock else ""),
        (project_id, silence_id),
    )
    return cur.fetchone()


def update_silence(cur: Cursor, silence_id: UUID, changes: dict[str, Any], now: datetime) -> dict[str, Any]:
    allowed = ("matchers", "starts_at", "ends_at", "comment", "expire_when_resolved", "expired_at")
    sets = [f"{name} = %({name})s" for name in allowed if name in changes]
    params = {**changes, "id": silence_id, "now": now}
    if "matchers" in params:
        params["matchers"] = Jsonb(params["matchers"])
    cur.execute(
        f"update public.silences set {', '.join([*sets, 'updated_at = %(now)s'])} where id = %(id)s"
        f" returning {SILENCE_COLUMNS}",
        params,
    )
    row = cur.fetchone()
    assert row is not None
    return row


def list_silences(
    cur: Cursor,
    project_id: UUID,
    *,
    status: str | None,
    now: datetime,
    after_ts: datetime | None,
    after_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    where = f" and {_STATUS_SQL[status]}" if status else ""
    cur.execute(
        f"select {SILENCE_COLUMNS} from public.silences where project_id = %(project)s{where}"
        " and (%(after_ts)s::timestamptz is null or (created_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by created_at desc, id desc limit %(limit)s",
        {"project": project_id, "now": now, "after_ts": after_ts, "after_id": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def active_silences(cur: Cursor, project_id: UUID, now: datetime) -> list[dict[str, Any]]:
    cur.execute(
        f"select {SILENCE_COLUMNS} from public.silences where project_id = %(project)s and {_ACTIVE} order by ends_at",
        {"project": project_id, "now": now},
    )
    return [dict(row) for row in cur.fetchall()]


def expire_silences(cur: Cursor, silence_ids: list[UUID], now: datetime) -> None:
    cur.execute(
        "update public.silences set expired_at = %(now)s, updated_at = %(now)s"
        " where id = any(%(ids)s) and expired_at is null",
        {"ids": silence_ids, "now": now},
    )


# --- groups and the log --------------------------------------------------------------------------------------


def list_groups(
    cur: Cursor, project_id: UUID, *, after_ts: datetime | None, after_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    cur.execute(
        f"select {GROUP_COLUMNS} from public.notification_groups where project_id = %(project)s"
        " and status = 'active'"
        " and (%(after_ts)s::timestamptz is null or (created_at, id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by created_at desc, id desc limit %(limit)s",
        {"project": project_id, "after_ts": after_ts, "after_id": after_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def alerts_of_groups(cur: Cursor, group_ids: list[UUID]) -> list[dict[str, Any]]:
    cur.execute(
        "select ga.group_id, ga.added_at, ga.notified_state, ga.notified_at, i.id as instance_id, i.rule_id,"
        " i.rule_version, i.fingerprint, i.labels, i.annotations, i.state, i.value, i.fired_at, i.resolved_at"
        " from public.notification_group_alerts ga join public.alert_instances i on i.id = ga.instance_id"
        " where ga.group_id = any(%s) order by ga.group_id, i.fingerprint",
        (group_ids,),
    )
    return [dict(row) for row in cur.fetchall()]


def list_log(
    cur: Cursor,
    project_id: UUID,
    *,
    group_id: UUID | None,
    incident_id: UUID | None,
    before_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    cur.execute(
        f"select {LOG_COLUMNS} from public.notification_log where project_id = %(project)s"
        " and (%(group)s::uuid is null or group_id = %(group)s)"
        " and (%(incident)s::uuid is null or incident_id = %(incident)s)"
        " and (%(before)s::bigint is null or id < %(before)s)"
        " order by id desc limit %(limit)s",
        {"project": project_id, "group": group_id, "incident": incident_id, "before": before_id, "limit": limit},
    )
    return [dict(row) for row in cur.fetchall()]


def firing_alerts(cur: Cursor, project_id: UUID) -> list[tuple[str, dict[str, str]]]:
    """Every firing alert of the project (id, labels): the sources of inhibition."""
    cur.execute(
        "select id, labels from public.alert_instances where project_id = %s and state = 'firing'", (project_id,)
    )
    return [(str(row["id"]), row["labels"]) for row in cur.fetchall()]
