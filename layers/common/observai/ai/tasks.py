"""The AI worker's queue (``ai_tasks``): work enqueued in the transaction of the change that causes it.

* ``enqueue``: one pending task per (incident, kind), idempotent: enqueuing again moves its due time (the latest
  change wins: a debounce) and its reason; a wake-up leaves on the AI task queue after the commit (a hint: the row
  is the truth, and the worker's minute sweep runs whatever is due without one).
* ``on_incident_event``: the incidents' hook (``observai.notify.hooks.on_incident_event``): an incident that
  resolves gets its summary (and its embedding, h-ai-sim's ``embedding`` handler); one acknowledged or triggered
  again gets a debounced ``changed`` summary when it has one already. Only for organizations that opted in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from observai.db.connection import Cursor, after_commit

MESSAGE_VERSION = 1
# A change to an incident that has a summary regenerates it this long after the last change (several alerts firing
# in a burst, an acknowledgment right after: one new summary).
CHANGED_DEBOUNCE_S = 120

TaskKind = Literal["summary", "embedding"]


def message_body(task_id: int) -> str:
    return json.dumps({"v": MESSAGE_VERSION, "ai_task_id": task_id})


def parse_message(body: str) -> int:
    """The task id a queue message names; ValueError when it is not one of ours."""
    try:
        value = json.loads(body)
        if not isinstance(value, dict) or value.get("v") != MESSAGE_VERSION:
            raise ValueError("not an AI task message")
        task_id = value["ai_task_id"]
        if not isinstance(task_id, int) or isinstance(task_id, bool) or not 0 < task_id < 2**63:
            raise ValueError("not an AI task message")
        return task_id
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError("not an AI task message") from exc


def send_wakeups(tasks: list[tuple[int, int]]) -> int:
    """``(task_id, delay_s)`` wake-ups on the AI task queue; never raises (the sweep runs what is due)."""
    from observai.config import get_settings
    from observai.sqs_batches import send_delayed

    try:
        queue_url = get_settings().ai_task_queue_url
    except Exception:  # settings that do not load: the sweep's job
        return 0
    if not queue_url or not tasks:
        return 0
    return send_delayed(queue_url, [(message_body(tid), delay) for tid, delay in tasks], what="AI task wake-ups")


def enqueue(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    incident_id: UUID,
    kind: TaskKind,
    reason: str,
    now: datetime,
    delay_s: int = 0,
) -> None:
    """The incident's pending task of ``kind``, due ``delay_s`` after ``now`` (an existing one is moved to that
    time, takes ``reason``, and may be claimed again: a change during its run is not lost). Its wake-up leaves
    after the commit."""
    due_at = now + timedelta(seconds=max(0, int(delay_s)))
    cur.execute(
        "insert into public.ai_tasks (org_id, project_id, incident_id, kind, reason, due_at, created_at)"
        " values (%s, %s, %s, %s, %s, %s, %s)"
        " on conflict (incident_id, kind) do update set reason = excluded.reason, due_at = excluded.due_at,"
        " attempts = 0, claimed_until = null, last_error = null"
        " returning id",
        (org_id, project_id, incident_id, kind, reason[:100], due_at, now),
    )
    row = cur.fetchone()
    assert row is not None
    task_id, delay = int(row["id"]), max(0, int(delay_s))
    after_commit(lambda: send_wakeups([(task_id, delay)]))


def org_enabled(cur: Cursor, org_id: UUID) -> bool:
    cur.execute("select enabled from public.org_ai_settings where org_id = %s", (org_id,))
    row = cur.fetchone()
    return bool(row and row["enabled"])


def _has_summary(cur: Cursor, incident_id: UUID) -> bool:
    cur.execute("select 1 from public.incident_summaries where incident_id = %s limit 1", (incident_id,))
    return cur.fetchone() is not None


def on_incident_event(cur: Cursor, incident: Mapping[str, Any], type: str, now: datetime) -> None:
    """In the incident's transaction: what its change means for the AI worker (nothing when the organization has not
    opted in)."""
    if type not in ("incident.resolved", "incident.acknowledged", "incident.triggered", "incident.alerts_changed"):
        return
    if not org_enabled(cur, incident["org_id"]):
        return
    ids = {"org_id": incident["org_id"], "project_id": incident["project_id"], "incident_id": incident["id"]}
    if type == "incident.resolved":
        enqueue(cur, **ids, kind="summary", reason="resolved", now=now)
        enqueue(cur, **ids, kind="embedding", reason="resolved", now=now)
    elif _has_summary(cur, incident["id"]):
        enqueue(cur, **ids, kind="summary", reason="changed", now=now, delay_s=CHANGED_DEBOUNCE_S)
