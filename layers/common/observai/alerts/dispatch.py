"""The dispatcher: flush notification groups when their timer is due, and record what would be sent.

``flush_group(group_id, now)`` runs in one transaction holding the group's row lock (a second dispatcher blocks,
or with ``skip_locked`` skips), and does nothing unless the group's ``next_flush_at`` has come: a redelivered or
early timer message is a no-op. Then:

1. the alerts of the group are split: firing, or not firing any more; each may be muted: silenced (an active
   silence matches it), inhibited (a firing alert of the project matching an inhibition rule's source matchers,
   with the same ``equal`` labels), or the whole route muted by its mute or active time intervals;
2. silences that ``expire_when_resolved`` expire once nothing they match fires any more;
3. the decision, against what the group has announced of each alert and its last notification_log entry:
   ``first`` (firing alerts, none of the group's alerts announced firing), ``changed`` (a firing alert not
   announced before, or a resolution to announce), ``resolved`` (resolutions only), ``repeat`` (nothing new, still
   firing, repeat_interval elapsed since the last notification);
4. when it notifies: the incident (observai.incidents.lifecycle.on_group_flush), the notification_log row with
   seq = flush_seq + 1 (unique per group: the fence against any double notification), and a ``notification``
   event on the incident's timeline;
5. the next timer: repeat_interval while something fires, the end of the silences muting its alerts, the next
   group_interval tick while inhibited or in a mute interval (never sooner than group_interval after the last
   flush); none, and the group resolved, once its alerts are all resolved and announced.

Resolved alerts that were never announced firing leave the group silently; one announced firing that resolved
while silenced is announced once the silence ends (``notify_resolved_after_silence``), else leaves silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from observai.alerts import routing_store
from observai.alerts.matchers import Matcher, all_match
from observai.alerts.policy import Inhibitor, Policy, ResolvedRoute
from observai.alerts.policy_models import Reason
from observai.alerts.routing import project_policy, route_transitions
from observai.alerts.timers import send_timers
from observai.db.connection import Cursor, transaction
from observai.incidents import lifecycle, timeline
from observai.incidents.lifecycle import GroupAlert
from observai.notify import hooks
from observai.observability import logger


@dataclass
class FlushResult:
    group_id: UUID
    outcome: str  # notified, nothing_new, muted, not_due, locked, gone, duplicate
    reason: Reason | None = None
    seq: int | None = None
    log_id: int | None = None
    incident_id: UUID | None = None
    next_flush_at: datetime | None = None
    firing: int = 0
    resolved: int = 0


@dataclass
class _Member:
    row: dict[str, Any]
    firing: bool
    silenced_until: datetime | None = None  # the end of the last silence muting it
    inhibited: bool = False

    @property
    def muted(self) -> bool:
        return self.silenced_until is not None or self.inhibited

    @property
    def instance_id(self) -> UUID:
        return UUID(str(self.row["instance_id"]))

    def alert(self) -> GroupAlert:
        row = self.row
        return GroupAlert(
            instance_id=row["instance_id"],
            rule_id=row["rule_id"],
            rule_version=row["rule_version"],
            fingerprint=row["fingerprint"],
            labels=row["labels"],
            annotations=row["annotations"] or {},
            value=row["value"],
            fired_at=row["fired_at"],
            resolved_at=row["resolved_at"],
        )


def flush_group(
    group_id: UUID, now: datetime, *, skip_locked: bool = False, policies: dict[UUID, Policy] | None = None
) -> FlushResult:
    """Flush one group if due (its own transaction); its next timer goes to SQS after the commit. ``policies``: a
    cache of the projects' policies for a sweep's many flushes (seconds: a policy saved meanwhile applies at the
    next sweep)."""
    try:
        with transaction() as cur:
            result = flush_in(cur, group_id, now, skip_locked=skip_locked, policies=policies)
    except psycopg.errors.UniqueViolation:
        # Another dispatcher recorded this seq first (the row lock makes this all but impossible): it notified.
        logger.warning("notification already recorded by another dispatcher", extra={"group_id": str(group_id)})
        return FlushResult(group_id, "duplicate")
    if result.next_flush_at is not None and result.outcome not in ("not_due", "locked", "gone"):
        send_timers({group_id: result.next_flush_at}, now)
    return result


def flush_in(
    cur: Cursor,
    group_id: UUID,
    now: datetime,
    *,
    skip_locked: bool = False,
    policies: dict[UUID, Policy] | None = None,
) -> FlushResult:
    cur.execute(
        f"select {routing_store.GROUP_COLUMNS} from public.notification_groups where id = %s for update"
        + (" skip locked" if skip_locked else ""),
        (group_id,),
    )
    group = cur.fetchone()
    if group is None:
        return FlushResult(group_id, "locked" if skip_locked and _exists(cur, group_id) else "gone")
    if group["status"] != "active" or group["next_flush_at"] is None or group["next_flush_at"] > now:
        return FlushResult(group_id, "not_due", next_flush_at=group["next_flush_at"])

    policy = project_policy(cur, group["project_id"], policies)
    route = policy.route(group["route_id"])
    interval = timedelta(seconds=route.group_interval_s)
    muted_why = policy.muted_by_time(route, now)
    if muted_why is not None:
        # Nothing leaves the route now; look again at the next group_interval tick (as Alertmanager does).
        tick = now + interval
        _set_timer(cur, group_id, tick, now)
        return FlushResult(group_id, "muted", next_flush_at=tick)

    rows = routing_store.alerts_of_groups(cur, [group_id])
    members = [_Member(row, firing=row["state"] == "firing") for row in rows]
    silences = routing_store.active_silences(cur, group["project_id"], now)
    # Every firing alert of the project: the sources of inhibition, and what keeps an expire-when-resolved silence.
    needs_firing = bool(policy.document.inhibit_rules) or any(s["expire_when_resolved"] for s in silences)
    firing_in_project = routing_store.firing_alerts(cur, group["project_id"]) if needs_firing else []
    silences = _expire_resolved_silences(cur, silences, members, firing_in_project, now)
    _mark_muted(members, silences, policy, firing_in_project)

    announce_firing = [m for m in members if m.firing and not m.muted]
    was_announced = [m for m in members if not m.firing and m.row["notified_state"] == "firing"]
    announce_resolved: list[_Member] = []
    leave_silently: list[_Member] = []  # resolved, and nothing to say of them (or nothing allowed)
    for member in members:
        if member.firing:
            continue
        if member.row["notified_state"] != "firing":
            leave_silently.append(member)
        elif member.muted:
            if not policy.document.notify_resolved_after_silence:
                leave_silently.append(member)
            # else: announced once the silence ends
        elif policy.document.send_resolved:
            announce_resolved.append(member)
        else:
            leave_silently.append(member)

    # News is judged by what the group has announced of each alert (notified_state): an alert that left the group
    # once resolved and fires again is new, whatever the last notification said.
    last = _last_log(cur, group_id)
    announced = any(m.row["notified_state"] == "firing" for m in members)
    new_firing = [m for m in announce_firing if m.row["notified_state"] != "firing"]
    reason: Reason | None = None
    if announce_firing and not announced:
        reason = "first"
    elif new_firing or announce_resolved:
        reason = "changed" if announce_firing else "resolved"
    elif announce_firing and last is not None and now >= last["sent_at"] + timedelta(seconds=route.repeat_interval_s):
        reason = "repeat"

    # The incident follows the alerts: muted ones it already holds still count as firing (a silence never resolves
    # an incident), and resolutions leave it even when no notification says so.
    still_firing_muted = [m for m in members if m.firing and m.muted and m.row["notified_state"] == "firing"]
    announced_ids = {m.instance_id for m in was_announced}
    resolved_for_incident = [*announce_resolved, *(m for m in leave_silently if m.instance_id in announced_ids)]
    result = FlushResult(group_id, "nothing_new")
    incident = None
    if reason is not None or resolved_for_incident:
        incident = lifecycle.on_group_flush(
            cur,
            group=group,
            firing=[m.alert() for m in [*announce_firing, *still_firing_muted]],
            resolved=[m.alert() for m in resolved_for_incident],
            now=now,
        )
    if reason is not None:
        result = _notify(cur, group, route, reason, announce_firing, announce_resolved, incident, now)

    _forget(cur, group_id, [*announce_resolved, *leave_silently])
    if announce_firing:
        cur.execute(
            "update public.notification_group_alerts set notified_state = 'firing', notified_at = %s"
            " where group_id = %s and instance_id = any(%s) and notified_state is distinct from 'firing'",
            (now, group_id, [m.instance_id for m in announce_firing]),
        )

    gone = {m.instance_id for m in [*announce_resolved, *leave_silently]}
    remaining = [m for m in members if m.instance_id not in gone]
    last_flush: datetime | None = now if reason is not None else group["last_flush_at"]
    due = _next_timer(route, remaining, announce_firing, last, reason, last_flush, now)
    if not remaining:
        cur.execute(
            "update public.notification_groups set status = 'resolved', next_flush_at = null, updated_at = %s"
            " where id = %s",
            (now, group_id),
        )
    else:
        _set_timer(cur, group_id, due, now)
    result.next_flush_at = due if remaining else None
    return result


def _exists(cur: Cursor, group_id: UUID) -> bool:
    cur.execute("select 1 from public.notification_groups where id = %s", (group_id,))
    return cur.fetchone() is not None


def _set_timer(cur: Cursor, group_id: UUID, due: datetime | None, now: datetime) -> None:
    cur.execute(
        "update public.notification_groups set next_flush_at = %s, updated_at = %s where id = %s",
        (due, now, group_id),
    )


def _silence_matchers(silence: dict[str, Any]) -> list[Matcher]:
    # Stored matchers were validated when saved; not again here, so a rule tightened since never stops a flush.
    return [Matcher.model_construct(**m) for m in silence["matchers"]]


def _expire_resolved_silences(
    cur: Cursor,
    silences: list[dict[str, Any]],
    members: Sequence[_Member],
    firing_in_project: Sequence[tuple[str, dict[str, str]]],
    now: datetime,
) -> list[dict[str, Any]]:
    """Expire the ``expire_when_resolved`` silences that silence a resolved alert of this group and match no alert
    firing in the project any more; the silences still in force."""
    expired = []
    for silence in silences:
        if not silence["expire_when_resolved"]:
            continue
        matchers = _silence_matchers(silence)
        silenced_a_resolved = any(not m.firing and all_match(matchers, m.row["labels"]) for m in members)
        if silenced_a_resolved and not any(all_match(matchers, labels) for _, labels in firing_in_project):
            expired.append(silence["id"])
    if expired:
        routing_store.expire_silences(cur, expired, now)
        logger.info("silences expired: their alerts resolved", extra={"silence_ids": [str(i) for i in expired]})
    return [s for s in silences if s["id"] not in expired]


def _mark_muted(
    members: Sequence[_Member],
    silences: Sequence[dict[str, Any]],
    policy: Policy,
    firing_in_project: Sequence[tuple[str, dict[str, str]]],
) -> None:
    parsed = [(_silence_matchers(s), s["ends_at"]) for s in silences]
    rules = policy.document.inhibit_rules
    inhibitor = Inhibitor(rules, firing_in_project) if rules else None
    for member in members:
        labels = member.row["labels"]
        ends = [end for matchers, end in parsed if all_match(matchers, labels)]
        member.silenced_until = max(ends) if ends else None
        if inhibitor is not None:
            member.inhibited = inhibitor.inhibits(labels, str(member.instance_id))


def _last_log(cur: Cursor, group_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        "select seq, reason, firing, sent_at from public.notification_log where group_id = %s"
        " order by seq desc limit 1",
        (group_id,),
    )
    return cur.fetchone()


def _entry(member: _Member) -> dict[str, Any]:
    row = member.row
    # A snapshot of what the notification says (the notifications issue renders it later, as it was).
    return {
        "instance_id": str(row["instance_id"]),
        "rule_id": str(row["rule_id"]),
        "fingerprint": row["fingerprint"],
        "labels": row["labels"],
        "annotations": row["annotations"] or {},
        "value": row["value"],
        "fired_at": row["fired_at"].isoformat() if row["fired_at"] else None,
        "resolved_at": row["resolved_at"].isoformat() if row["resolved_at"] else None,
    }


def _notify(
    cur: Cursor,
    group: dict[str, Any],
    route: ResolvedRoute,
    reason: Reason,
    firing: Sequence[_Member],
    resolved: Sequence[_Member],
    incident: dict[str, Any] | None,
    now: datetime,
) -> FlushResult:
    seq = group["flush_seq"] + 1
    incident_id = incident["id"] if incident else None
    cur.execute(
        "insert into public.notification_log (org_id, project_id, group_id, seq, incident_id, reason, firing,"
        " resolved, receivers, sent_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
        (
            group["org_id"],
            group["project_id"],
            group["id"],
            seq,
            incident_id,
            reason,
            Jsonb([_entry(m) for m in firing]),
            Jsonb([_entry(m) for m in resolved]),
            Jsonb({"route_id": route.id, **route.receivers}),
            now,
        ),
    )
    log = cur.fetchone()
    assert log is not None
    cur.execute(
        "update public.notification_groups set flush_seq = %s, last_flush_at = %s, updated_at = %s where id = %s",
        (seq, now, now, group["id"]),
    )
    if incident is not None:
        timeline.record(
            cur,
            incident,
            kind="notification",
            at=now,
            details={
                "reason": reason,
                "firing": len(firing),
                "resolved": len(resolved),
                "receivers": route.receivers,
                "route_id": route.id,
                "notification_id": log["id"],
                "seq": seq,
            },
        )
    hooks.on_route_notification(
        cur,
        log={
            "id": log["id"],
            "org_id": group["org_id"],
            "project_id": group["project_id"],
            "group_id": group["id"],
            "seq": seq,
            "reason": reason,
        },
        receivers={"route_id": route.id, **route.receivers},
        incident=incident,
        firing=[_entry(m) for m in firing],
        resolved=[_entry(m) for m in resolved],
        now=now,
    )
    return FlushResult(
        group["id"],
        "notified",
        reason=reason,
        seq=seq,
        log_id=log["id"],
        incident_id=incident_id,
        firing=len(firing),
        resolved=len(resolved),
    )


def _forget(cur: Cursor, group_id: UUID, members: Sequence[_Member]) -> None:
    if members:
        cur.execute(
            "delete from public.notification_group_alerts where group_id = %s and instance_id = any(%s)",
            (group_id, [m.instance_id for m in members]),
        )


def _next_timer(
    route: ResolvedRoute,
    remaining: Sequence[_Member],
    announced_firing: Sequence[_Member],
    last: dict[str, Any] | None,
    reason: Reason | None,
    last_flush: datetime | None,
    now: datetime,
) -> datetime | None:
    candidates: list[datetime] = []
    if announced_firing:
        last_sent = now if reason is not None else (last["sent_at"] if last else now)
        candidates.append(last_sent + timedelta(seconds=route.repeat_interval_s))
    for member in remaining:
        if member.silenced_until is not None:
            candidates.append(member.silenced_until)
        elif member.inhibited:
            candidates.append(now + timedelta(seconds=route.group_interval_s))
    if not candidates:
        return None
    # Never two notifications of a group closer than group_interval.
    floor = last_flush + timedelta(seconds=route.group_interval_s) if last_flush else now
    return max(min(candidates), floor)


@dataclass
class SweepReport:
    routed: int = 0
    due: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    more_pending: bool = False


def sweep(now: datetime, *, route_limit: int = 1000, flush_limit: int = 200) -> SweepReport:
    """The minute's safety net: route what is waiting, then flush the groups whose timer has passed (bounded;
    SKIP LOCKED, so overlapping sweeps and timer messages share the work instead of waiting for each other)."""
    routing = route_transitions(now, route_limit)
    report = SweepReport(routed=routing.claimed, more_pending=routing.more_pending)
    with transaction() as cur:
        cur.execute(
            "select id from public.notification_groups where next_flush_at <= %s order by next_flush_at limit %s",
            (now, flush_limit),
        )
        due = [row["id"] for row in cur.fetchall()]
    report.due = len(due)
    report.more_pending = report.more_pending or len(due) == flush_limit
    policies: dict[UUID, Policy] = {}
    for group_id in due:
        result = flush_group(group_id, now, skip_locked=True, policies=policies)
        report.outcomes[result.outcome] = report.outcomes.get(result.outcome, 0) + 1
    return report


# --- the Lambda side: timer messages (SQS) and the minute sweep ------------------------------------------------


def _flush_from_message(record: Any) -> None:
    from datetime import UTC

    from observai.alerts.timers import parse_message

    try:
        group_id = parse_message(record.body)
    except ValueError:
        logger.error("alert timer message cannot be decoded", extra={"message_id": record.message_id})
        raise
    result = flush_group(group_id, datetime.now(UTC))
    logger.info(
        "alert timer handled",
        extra={"message_id": record.message_id, "group_id": str(group_id), "outcome": result.outcome},
    )


def handle_timer_messages(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The SQS event's partial batch response: a message whose flush failed (the database out) is retried by SQS;
    an early or redelivered one is a no-op."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=_flush_from_message, processor=processor, context=context
    )
    return dict(response)
