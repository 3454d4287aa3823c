"""The escalation engine: one run per incident (``incident_escalations``), paging the steps of the policy its route
named, as PagerDuty and Grafana OnCall do.

* Start (``on_route_notification``, in the dispatcher's transaction): a route naming a live escalation policy of
  the project notifies about a triggered incident that has no run yet → the run is created with a copy of the
  policy (editing or deleting the policy later never changes it), step 0 pages at once, and the timer is set for
  the next step: ``wait_minutes`` of the step that just paged. After the last step the policy starts again from
  step 0, ``repeat`` more rounds; the last step of the last round leaves the run ``done``. A step whose wait is 0
  is followed at once by the next one. An unknown policy name: a warning and a timeline note, nothing paged.
* Incident events (``on_incident_event``, in the transaction of the incident's change):
  ``incident.acknowledged`` halts the run (no further step, no repeat) and sets the ack timeout (the policy's
  ``ack_timeout_minutes``; none while the incident is snoozed: the snooze's end triggers it); every PagerDuty
  contact point that paged about the incident (a step, or a route's notification: also without a run) gets
  ``acknowledge`` (same dedup_key: the incident id).
  ``incident.triggered`` (unacknowledged, snooze ended, ack timeout) resumes a halted run: the current step pages
  again at once and its timer starts over. ``incident.resolved`` ends the run and sends ``resolve`` to everyone it
  paged (PagerDuty resolves the same dedup_key; Slack, e-mail and webhooks get a resolved message).
* Timers (``tick``): a delay message naming (incident, seq) or the minute sweep. Every move takes the incident's
  row lock, then the run's (the order every incident action uses), checks ``seq`` and ``next_at`` again, and bumps
  ``seq``: a stale or early message, a redelivery, or two overlapping sweeps page once. An ack timeout due while
  halted triggers the incident again through the incidents code (status, an ``ack_timeout`` timeline event,
  ``incident.triggered``), which comes back here and resumes the run.

Paging a step writes delivery records (observai.notify.deliveries_enqueue) keyed
``esc:{incident}:{seq}:{step}:{recipient}:{channel}``: a user gets an e-mail (their address, unless turned off)
and, when set, a Slack message through their Slack contact point mentioning them; a schedule pages whoever is on
call right now (nobody: noted); a contact point gets one message. Each step is an ``escalated`` timeline event
(step, round, who was paged, who could not be). Every entry takes ``now``: the clock is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from observai.db.connection import Cursor, transaction
from observai.escalation import store, timers
from observai.incidents import timeline
from observai.notify.deliveries_enqueue import DeliveryRequest, enqueue
from observai.observability import logger

# At most this many steps page in one move (steps with a 0-minute wait chain); the API refuses a policy that
# would loop without waiting, this only bounds a hand-made row.
MAX_CHAIN = 20 * 6
POLICY_MISSING = "escalation_policy_missing"


# --- start ------------------------------------------------------------------------------------------------------


def on_route_notification(
    cur: Cursor,
    log: Mapping[str, Any],
    receivers: Mapping[str, Any],
    incident: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    """The route's escalation policy starts paging for the incident, once per incident."""
    name = receivers.get("escalation_policy")
    if not name or incident is None or incident.get("status") != "triggered":
        return
    if store.has_run(cur, incident["id"]):
        return
    policy = store.live_policy_by_name(cur, incident["project_id"], name)
    if policy is None or not policy["steps"]:
        logger.warning(
            "route names an unknown escalation policy: nothing paged",
            extra={"policy": name, "route_id": receivers.get("route_id"), "incident_id": str(incident["id"])},
        )
        if not _noted(cur, incident["id"], name):
            timeline.record(
                cur,
                incident,
                kind=POLICY_MISSING,
                at=now,
                details={"policy": name, "route_id": receivers.get("route_id"), "notification_log_id": log.get("id")},
            )
        return
    snapshot = {
        "id": str(policy["id"]),
        "name": policy["name"],
        "steps": policy["steps"],
        "repeat": policy["repeat"],
        "ack_timeout_minutes": policy["ack_timeout_minutes"],
    }
    run = store.insert_run(cur, incident=dict(incident), policy_id=policy["id"], policy=snapshot, now=now)
    if run is None:
        return
    logger.info("escalation started", extra={"incident_id": str(incident["id"]), "policy": policy["name"]})
    _page_from(cur, run, incident, 0, 0, now, reason="triggered")


def _noted(cur: Cursor, incident_id: UUID, name: str) -> bool:
    cur.execute(
        "select 1 from public.incident_events where incident_id = %s and kind = %s and details->>'policy' = %s",
        (incident_id, POLICY_MISSING, name),
    )
    return cur.fetchone() is not None


# --- incident events --------------------------------------------------------------------------------------------


def on_incident_event(cur: Cursor, incident: Mapping[str, Any], type: str, now: datetime) -> None:
    """Halt, resume or stop the incident's run (if it has one); tell the channels that follow the incident."""
    run = store.lock_run(cur, incident["id"])
    if run is None:
        if type == "incident.acknowledged" and incident["status"] == "acknowledged":
            _acknowledge_pagerduty(cur, incident, now)  # paged by a route's notification, not escalated
        return
    if type == "incident.resolved" or incident["status"] == "resolved":
        _stop(cur, run, incident, now)
    elif type == "incident.acknowledged":
        _halt(cur, run, incident, now)
    elif type == "incident.triggered" and run["status"] == "halted":
        logger.info("escalation resumed", extra={"incident_id": str(incident["id"])})
        _page_from(cur, run, incident, run["step"], run["round"], now, reason="re-triggered")


def _halt(cur: Cursor, run: dict[str, Any], incident: Mapping[str, Any], now: datetime) -> None:
    if run["status"] == "halted":
        return
    seq = run["seq"] + 1
    timeout = run["policy"].get("ack_timeout_minutes")
    snoozed = incident.get("snoozed_until") is not None
    next_at = now + timedelta(minutes=timeout) if timeout and not snoozed else None
    store.save_run(
        cur, incident["id"], status="halted", step=run["step"], round=run["round"], seq=seq, next_at=next_at, now=now
    )
    timers.arm(incident["id"], seq, next_at, now)
    timeline.record(
        cur,
        incident,
        kind="escalation_halted",
        at=now,
        details={
            "policy": run["policy"]["name"],
            "step": run["step"],
            "round": run["round"],
            "ack_timeout_at": next_at.isoformat() if next_at else None,
        },
    )
    if incident["status"] == "acknowledged":
        _acknowledge_pagerduty(cur, incident, now)
    logger.info("escalation halted", extra={"incident_id": str(incident["id"]), "ack_timeout_at": str(next_at)})


def _acknowledge_pagerduty(cur: Cursor, incident: Mapping[str, Any], now: datetime) -> None:
    """``acknowledge`` to every PagerDuty contact point that paged about the incident (an escalation step or a
    route's notification): same dedup_key, so the incident is acknowledged there too. Once per acknowledgement
    (its time is in the key), whichever path hears of it first."""
    acknowledged_at = incident.get("acknowledged_at") or now
    stamp = int(acknowledged_at.timestamp() * 1_000_000)
    for contact_point_id in store.pagerduty_paged(cur, incident["id"]):
        _enqueue(
            cur,
            incident,
            channel="pagerduty",
            event="acknowledge",
            key=f"esc:{incident['id']}:ack:{stamp}:cp:{contact_point_id}:pagerduty",
            contact_point_id=contact_point_id,
            payload={},
            now=now,
        )


def _stop(cur: Cursor, run: dict[str, Any], incident: Mapping[str, Any], now: datetime) -> None:
    if run["status"] != "done" or run["next_at"] is not None:
        _park(cur, run, incident, "done", now)
    # Keys without the seq: whatever happens next, each recipient hears of the resolution once.
    for recipient in store.paged_recipients(cur, incident["id"]):
        who = f"user:{recipient['user_id']}" if recipient["user_id"] else f"cp:{recipient['contact_point_id']}"
        payload: dict[str, Any] = {"policy": run["policy"]["name"]}
        if recipient["to_address"]:
            payload["to"] = recipient["to_address"]
        _enqueue(
            cur,
            incident,
            channel=recipient["channel"],
            event="resolve",
            key=f"esc:{incident['id']}:resolve:{who}:{recipient['channel']}",
            contact_point_id=recipient["contact_point_id"],
            user_id=recipient["user_id"],
            payload=payload,
            now=now,
        )


# --- paging -----------------------------------------------------------------------------------------------------


def _after(policy: Mapping[str, Any], step: int, round: int) -> tuple[int, int] | None:
    """The step after (step, round): the next one, step 0 of the next round, or None after the last round."""
    if step + 1 < len(policy["steps"]):
        return step + 1, round
    if round < int(policy.get("repeat") or 0):
        return 0, round + 1
    return None


def _page_from(
    cur: Cursor, run: dict[str, Any], incident: Mapping[str, Any], step: int, round: int, now: datetime, *, reason: str
) -> None:
    """Page (step, round), then the steps that follow without a wait; leave the run active with its timer (the
    paged step's wait), or done after the last step of the last round. Each page bumps seq."""
    policy = run["policy"]
    steps = policy["steps"]
    seq = run["seq"]
    step = min(step, len(steps) - 1)
    for _ in range(MAX_CHAIN):
        seq += 1
        _page_step(cur, run, incident, step, round, seq, now, reason=reason)
        following = _after(policy, step, round)
        if following is None:
            store.save_run(cur, incident["id"], status="done", step=step, round=round, seq=seq, next_at=None, now=now)
            return
        wait = int(steps[step].get("wait_minutes") or 0)
        if wait > 0:
            next_at = now + timedelta(minutes=wait)
            store.save_run(
                cur, incident["id"], status="active", step=step, round=round, seq=seq, next_at=next_at, now=now
            )
            timers.arm(incident["id"], seq, next_at, now)
            return
        step, round = following
        reason = "escalated"
    # A hand-made policy looping without waits: stop here, and go on in a minute.
    next_at = now + timedelta(minutes=1)
    store.save_run(cur, incident["id"], status="active", step=step, round=round, seq=seq, next_at=next_at, now=now)
    timers.arm(incident["id"], seq, next_at, now)


@dataclass
class _Paged:
    paged: list[dict[str, Any]] = field(default_factory=list)
    unreached: list[dict[str, Any]] = field(default_factory=list)
    deliveries: int = 0


def _page_step(
    cur: Cursor,
    run: dict[str, Any],
    incident: Mapping[str, Any],
    step: int,
    round: int,
    seq: int,
    now: datetime,
    *,
    reason: str,
) -> None:
    policy = run["policy"]
    outcome = _Paged()
    base = {"policy": policy["name"], "step": step, "round": round, "reason": reason}
    for target in policy["steps"][step].get("targets", []):
        kind, target_id = target.get("type"), _uuid(target.get("id"))
        if target_id is None:
            outcome.unreached.append({"type": kind, "id": target.get("id"), "why": "invalid id"})
        elif kind == "user":
            _page_user(cur, run, incident, target_id, step, seq, base, outcome, now, via=None)
        elif kind == "schedule":
            from observai.oncall.resolve import on_call

            user_id = on_call(cur, target_id, now)
            if user_id is None:
                outcome.unreached.append({"type": "schedule", "id": str(target_id), "why": "nobody is on call"})
            else:
                _page_user(cur, run, incident, user_id, step, seq, base, outcome, now, via=target_id)
        elif kind == "contact_point":
            _page_contact_point(cur, run, incident, target_id, step, seq, base, outcome, now)
        else:
            outcome.unreached.append({"type": kind, "id": str(target_id), "why": "unknown target type"})
    timeline.record(
        cur,
        incident,
        kind="escalated",
        at=now,
        details={**base, "seq": seq, "paged": outcome.paged, "unreached": outcome.unreached},
    )
    logger.info(
        "escalation step paged",
        extra={
            "incident_id": str(incident["id"]),
            "step": step,
            "round": round,
            "seq": seq,
            "deliveries": outcome.deliveries,
            "unreached": len(outcome.unreached),
        },
    )


def _page_user(
    cur: Cursor,
    run: dict[str, Any],
    incident: Mapping[str, Any],
    user_id: UUID,
    step: int,
    seq: int,
    base: dict[str, Any],
    outcome: _Paged,
    now: datetime,
    *,
    via: UUID | None,
) -> None:
    from observai.notify.people import reach

    entry: dict[str, Any] = {"type": "user", "id": str(user_id)}
    if via is not None:
        entry["schedule_id"] = str(via)
    who = reach(cur, incident["org_id"], user_id)
    if who is None:
        outcome.unreached.append({**entry, "why": "not a member of the organization"})
        return
    channels: list[str] = []
    if who.email:
        channels.append("email")
        _count(
            outcome,
            _enqueue(
                cur,
                incident,
                channel="email",
                event="trigger",
                key=f"esc:{incident['id']}:{seq}:{step}:user:{user_id}:email",
                user_id=user_id,
                step=step,
                payload={**base, "to": who.email},
                now=now,
            ),
        )
    if who.slack_contact_point_id is not None:
        channels.append("slack")
        _count(
            outcome,
            _enqueue(
                cur,
                incident,
                channel="slack",
                event="trigger",
                key=f"esc:{incident['id']}:{seq}:{step}:user:{user_id}:slack",
                user_id=user_id,
                contact_point_id=who.slack_contact_point_id,
                step=step,
                payload={**base, **({"mention": who.slack_user_id} if who.slack_user_id else {})},
                now=now,
            ),
        )
    if channels:
        outcome.paged.append({**entry, "channels": channels})
    else:
        outcome.unreached.append({**entry, "why": "no channel: e-mail turned off and no Slack contact point"})


def _page_contact_point(
    cur: Cursor,
    run: dict[str, Any],
    incident: Mapping[str, Any],
    contact_point_id: UUID,
    step: int,
    seq: int,
    base: dict[str, Any],
    outcome: _Paged,
    now: datetime,
) -> None:
    entry: dict[str, Any] = {"type": "contact_point", "id": str(contact_point_id)}
    point = store.live_contact_point(cur, incident["project_id"], contact_point_id)
    if point is None:
        outcome.unreached.append({**entry, "why": "the contact point was deleted"})
        return
    entry["name"] = point["name"]
    if not point["enabled"]:
        outcome.unreached.append({**entry, "why": "the contact point is disabled"})
        return
    _count(
        outcome,
        _enqueue(
            cur,
            incident,
            channel=point["kind"],
            event="trigger",
            key=f"esc:{incident['id']}:{seq}:{step}:cp:{contact_point_id}:{point['kind']}",
            contact_point_id=contact_point_id,
            step=step,
            payload=base,
            now=now,
        ),
    )
    outcome.paged.append({**entry, "channels": [point["kind"]]})


def _enqueue(
    cur: Cursor,
    incident: Mapping[str, Any],
    *,
    channel: str,
    event: str,
    key: str,
    payload: Mapping[str, Any],
    now: datetime,
    contact_point_id: UUID | None = None,
    user_id: UUID | None = None,
    step: int | None = None,
) -> UUID | None:
    return enqueue(
        cur,
        DeliveryRequest(
            org_id=incident["org_id"],
            project_id=incident["project_id"],
            channel=channel,  # type: ignore[arg-type]
            event=event,  # type: ignore[arg-type]
            source="escalation",
            key=key,
            incident_id=incident["id"],
            contact_point_id=contact_point_id,
            user_id=user_id,
            escalation_step=step,
            payload=dict(payload),
        ),
        now,
    )


def _count(outcome: _Paged, delivery_id: UUID | None) -> None:
    if delivery_id is not None:
        outcome.deliveries += 1


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except (TypeError, ValueError):
        return None


# --- timers -----------------------------------------------------------------------------------------------------


def tick(incident_id: UUID, now: datetime, *, seq: int | None = None, skip_locked: bool = False) -> str:
    """Move the incident's run if it is due: the next step (active), or the ack timeout (halted). ``seq``: the one a
    timer message names (another: stale, a no-op). The outcome: escalated, retriggered, resumed, done, snoozed,
    stale, early, idle, gone or locked."""
    with transaction() as cur:
        incident = store.lock_incident(cur, incident_id, skip_locked=skip_locked)
        if incident is None:
            return "locked" if skip_locked else "gone"
        run = store.lock_run(cur, incident_id, skip_locked=skip_locked)
        if run is None:
            return "locked" if skip_locked else "gone"
        if seq is not None and run["seq"] != seq:
            return "stale"
        if run["next_at"] is None:
            return "idle"
        if run["next_at"] > now:
            if seq is not None:  # a hop of a wait longer than SQS's 15 minutes: the next hop
                timers.arm(incident_id, run["seq"], run["next_at"], now)
            return "early"
        return _due(cur, run, incident, now)


def _due(cur: Cursor, run: dict[str, Any], incident: dict[str, Any], now: datetime) -> str:
    if incident["status"] == "resolved":
        _stop(cur, run, incident, now)
        return "done"
    if run["status"] == "active":
        if incident["status"] != "triggered":  # acknowledged without our hearing of it: halt now
            _halt(cur, run, incident, now)
            return "halted"
        following = _after(run["policy"], run["step"], run["round"])
        if following is None:
            _park(cur, run, incident, "done", now)
            return "done"
        _page_from(cur, run, incident, *following, now, reason="escalated")
        return "escalated"
    if run["status"] == "halted":
        if incident["status"] == "triggered":
            _page_from(cur, run, incident, run["step"], run["round"], now, reason="re-triggered")
            return "resumed"
        snoozed_until = incident.get("snoozed_until")
        if snoozed_until is not None and snoozed_until > now:  # the snooze's end triggers it again
            _park(cur, run, incident, "halted", now)
            return "snoozed"
        _ack_timeout(cur, run, incident, now)
        return "retriggered"
    _park(cur, run, incident, run["status"], now, bump=False)
    return "idle"


def _park(
    cur: Cursor, run: Mapping[str, Any], incident: Mapping[str, Any], status: str, now: datetime, *, bump: bool = True
) -> None:
    """The run stays at its step with no timer (``status``); ``bump`` moves its seq, so a timer set before is stale."""
    store.save_run(
        cur,
        incident["id"],
        status=status,
        step=run["step"],
        round=run["round"],
        seq=run["seq"] + 1 if bump else run["seq"],
        next_at=None,
        now=now,
    )


def _ack_timeout(cur: Cursor, run: dict[str, Any], incident: dict[str, Any], now: datetime) -> None:
    """Acknowledged for longer than the policy allows: triggered again, as the incidents code does (status, timeline,
    incident.triggered), which resumes the run through on_incident_event."""
    from observai.incidents import lifecycle
    from observai.incidents import store as incidents_store

    updated = incidents_store.update(
        cur,
        incident["id"],
        now,
        status="triggered",
        acknowledged_at=None,
        acknowledged_by=None,
        snoozed_until=None,
    )
    timeline.record(
        cur,
        incident,
        kind="ack_timeout",
        at=now,
        details={
            "acknowledged_at": incident["acknowledged_at"].isoformat() if incident.get("acknowledged_at") else None,
            "ack_timeout_minutes": run["policy"].get("ack_timeout_minutes"),
        },
    )
    logger.info("ack timeout: incident triggered again", extra={"incident_id": str(incident["id"])})
    lifecycle.emit_incident_event(cur, updated, "incident.triggered", now, reason="ack timeout")


@dataclass
class SweepReport:
    due: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    more_pending: bool = False


def sweep(now: datetime, *, limit: int = 200) -> SweepReport:
    """The minute's safety net: move every run whose time has passed (timers past SQS's 15 minutes, lost
    messages), at most ``limit``, each in its own transaction with SKIP LOCKED: overlapping sweeps and timer
    messages share the work, and a run moves once."""
    with transaction() as cur:
        due = store.due_runs(cur, now, limit)
    report = SweepReport(due=len(due), more_pending=len(due) == limit)
    for incident_id in due:
        outcome = tick(incident_id, now, skip_locked=True)
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
    return report


def _tick_from_message(record: Any, now: datetime | None = None) -> str:
    from datetime import UTC

    try:
        timer = timers.parse_message(record.body)
    except ValueError:
        logger.error("escalation timer message cannot be decoded", extra={"message_id": record.message_id})
        raise
    outcome = tick(timer.incident_id, now or datetime.now(UTC), seq=timer.seq)
    logger.info(
        "escalation timer handled",
        extra={"message_id": record.message_id, "incident_id": str(timer.incident_id), "outcome": outcome},
    )
    return outcome


def handle_timer_messages(event: dict[str, Any], context: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """The SQS event's partial batch response: a message whose move failed (the database out) is retried by SQS;
    a stale, early or redelivered one is a no-op."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event,
        record_handler=lambda record: _tick_from_message(record, now),
        processor=processor,
        context=context,
    )
    return dict(response)
