"""Routing: alert transitions → notification groups, with their timers.

``route_transitions`` claims the transitions not routed yet (``FOR UPDATE SKIP LOCKED`` in id order, at most
``limit``: overlapping runs split the work, a crashed run leaves its rows for the next), and for each to firing or
resolved:

* firing: walks the project's policy tree to the routes the alert takes; in each, finds or creates the group of
  its group_by values and adds the alert;
* resolved: the groups that hold the alert;

and sets each touched group's timer (``next_flush_at``): a new group (or one that resolved and forms again) flushes
``group_wait`` after its first alert; a group that has notified flushes a change at
``max(last_flush_at + group_interval, now)``; a timer already earlier stays. The transitions are marked routed in
the same transaction. After the commit the timers go to SQS (observai.alerts.timers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import ValidationError

from observai.alerts import routing_store
from observai.alerts.policy import Policy, ResolvedRoute
from observai.alerts.policy_models import PolicyDocument
from observai.alerts.timers import send_timers
from observai.db.connection import Cursor, transaction
from observai.observability import logger

DEFAULT_LIMIT = 1000


@dataclass
class RoutingReport:
    claimed: int = 0
    placed: int = 0  # (alert, group) placements of firing alerts
    groups: int = 0  # groups whose timer was set
    timers: dict[UUID, datetime | None] = field(default_factory=dict)
    timers_sent: int = 0
    more_pending: bool = False


def project_policy(cur: Cursor, project_id: UUID, cache: dict[UUID, Policy] | None = None) -> Policy:
    """The project's policy (its stored document, else the default one)."""
    if cache is not None and project_id in cache:
        return cache[project_id]
    row = routing_store.get_policy(cur, project_id)
    document = PolicyDocument()
    if row is not None:
        try:
            document = PolicyDocument.model_validate(row["policy"])
        except ValidationError as exc:
            # A stored document the code no longer reads must not stop routing for every tenant: the default
            # policy routes this project's alerts (everything still notifies) until the policy is saved again.
            logger.error(
                "stored notification policy unreadable: routing with the default",
                extra={"project_id": str(project_id), "errors": exc.error_count()},
            )
    policy = Policy.of(document)
    if cache is not None:
        cache[project_id] = policy
    return policy


@dataclass(frozen=True)
class _Placement:
    org_id: UUID
    project_id: UUID
    route: ResolvedRoute
    group_key: str
    group_labels: dict[str, str]
    instance_id: UUID
    firing: bool


def route_transitions(now: datetime, limit: int = DEFAULT_LIMIT) -> RoutingReport:
    """Route one bounded batch of transitions (a transaction), then send the timers it set."""
    with transaction() as cur:
        report = route_batch(cur, now, limit)
    report.timers_sent = send_timers(report.timers, now)
    return report


def route_batch(cur: Cursor, now: datetime, limit: int) -> RoutingReport:
    # An instance deleted since (its rule was deleted) has nothing left to notify: its transitions are only marked.
    cur.execute(
        "select t.id, t.org_id, t.project_id, t.instance_id, t.labels, t.from_state, t.to_state,"
        " exists (select 1 from public.alert_instances i where i.id = t.instance_id) as alive"
        " from public.alert_transitions t where t.routed_at is null order by t.id limit %s for update of t skip locked",
        (limit,),
    )
    transitions = cur.fetchall()
    report = RoutingReport(claimed=len(transitions), more_pending=len(transitions) == limit)
    if not transitions:
        return report
    policies: dict[UUID, Policy] = {}
    placements: list[_Placement] = []
    resolved_instances: list[UUID] = []
    for row in transitions:
        if not row["alive"]:
            continue
        if row["to_state"] == "firing":
            policy = project_policy(cur, row["project_id"], policies)
            labels: Mapping[str, str] = row["labels"]
            for route in policy.routes_for(labels):
                placements.append(
                    _Placement(
                        org_id=row["org_id"],
                        project_id=row["project_id"],
                        route=route,
                        group_key=route.group_key(labels),
                        group_labels=route.group_labels(labels),
                        instance_id=row["instance_id"],
                        firing=True,
                    )
                )
        elif row["to_state"] == "resolved" or row["from_state"] == "firing":
            # Stopped firing (resolved; or inactive, should a rule be disabled): a change for its groups.
            resolved_instances.append(row["instance_id"])

    # Groups are locked in one order (project, key) by every router, so two overlapping runs never deadlock.
    touched: dict[UUID, datetime | None] = {}
    for placement in sorted(placements, key=lambda p: (str(p.project_id), p.group_key)):
        group_id, due = _upsert_group(cur, placement, now)
        cur.execute(
            "insert into public.notification_group_alerts (group_id, instance_id, org_id, project_id, added_at)"
            " values (%s, %s, %s, %s, %s) on conflict (group_id, instance_id) do nothing",
            (group_id, placement.instance_id, placement.org_id, placement.project_id, now),
        )
        touched[group_id] = due
        report.placed += 1
    if resolved_instances:
        touched.update(_touch_groups_of(cur, resolved_instances, now, policies))

    cur.execute(
        "update public.alert_transitions set routed_at = %s where id = any(%s)",
        (now, [row["id"] for row in transitions]),
    )
    report.groups = len(touched)
    report.timers = touched
    return report


def _upsert_group(cur: Cursor, placement: _Placement, now: datetime) -> tuple[UUID, datetime | None]:
    route = placement.route
    cur.execute(
        "insert into public.notification_groups as g (org_id, project_id, route_id, group_key, group_labels, status,"
        " next_flush_at, created_at, updated_at)"
        " values (%(org)s, %(project)s, %(route)s, %(key)s, %(labels)s, 'active', %(first_due)s, %(now)s, %(now)s)"
        " on conflict (project_id, group_key) do update set"
        "  status = 'active', updated_at = %(now)s,"
        "  next_flush_at = case"
        # Forming (again): group_wait after the first alert; later alerts never push the flush back.
        "   when g.status = 'resolved' or g.last_flush_at is null"
        "    then least(case when g.status = 'active' then g.next_flush_at end, %(first_due)s)"
        # Notified already: the change goes out at the group's next group_interval tick.
        "   else least(g.next_flush_at, greatest(g.last_flush_at + %(interval)s, %(now)s)) end"
        " returning id, next_flush_at",
        {
            "org": placement.org_id,
            "project": placement.project_id,
            "route": route.id,
            "key": placement.group_key,
            "labels": Jsonb(placement.group_labels),
            "first_due": now + timedelta(seconds=route.group_wait_s),
            "interval": timedelta(seconds=route.group_interval_s),
            "now": now,
        },
    )
    row = cur.fetchone()
    assert row is not None
    return row["id"], row["next_flush_at"]


def _touch_groups_of(
    cur: Cursor, instance_ids: list[UUID], now: datetime, policies: dict[UUID, Policy]
) -> dict[UUID, datetime | None]:
    """A resolution is a change of every active group holding the alert: bring its flush forward."""
    cur.execute(
        "select g.id, g.project_id, g.route_id, g.created_at, g.last_flush_at, g.next_flush_at"
        " from public.notification_groups g"
        " where g.status = 'active' and g.id in"
        "  (select group_id from public.notification_group_alerts where instance_id = any(%s))"
        " order by g.project_id, g.group_key for update of g",
        (instance_ids,),
    )
    return _bring_forward(cur, cur.fetchall(), now, policies)


def _bring_forward(
    cur: Cursor, groups: list[dict[str, Any]], now: datetime, policies: dict[UUID, Policy]
) -> dict[UUID, datetime | None]:
    touched: dict[UUID, datetime | None] = {}
    for group in groups:
        route = project_policy(cur, group["project_id"], policies).route(group["route_id"])
        if group["last_flush_at"] is None:  # nothing notified yet: no sooner than group_wait after it formed
            tick = max(group["created_at"] + timedelta(seconds=route.group_wait_s), now)
        else:
            tick = max(group["last_flush_at"] + timedelta(seconds=route.group_interval_s), now)
        due = min(group["next_flush_at"], tick) if group["next_flush_at"] else tick
        if due != group["next_flush_at"]:
            cur.execute(
                "update public.notification_groups set next_flush_at = %s, updated_at = %s where id = %s",
                (due, now, group["id"]),
            )
        touched[group["id"]] = due
    return touched


def changed_silences(cur: Cursor, project_id: UUID, now: datetime) -> dict[UUID, datetime | None]:
    """What the project's silences mute has changed (one expired, edited): each active group flushes at its next
    tick, as after any change, instead of at the end its timer was waiting for."""
    cur.execute(
        "select id, project_id, route_id, created_at, last_flush_at, next_flush_at from public.notification_groups"
        " where project_id = %s and status = 'active' order by group_key for update",
        (project_id,),
    )
    return _bring_forward(cur, cur.fetchall(), now, {})


def placements_for(policy: Policy, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Where an alert with ``labels`` would go (route ids and group labels): for previews and tests."""
    return [
        {"route_id": route.id, "group_key": route.group_key(labels), "group_labels": route.group_labels(labels)}
        for route in policy.routes_for(labels)
    ]
