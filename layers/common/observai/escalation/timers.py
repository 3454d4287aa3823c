"""Escalation timers as SQS delay messages on the escalation timer queue (ESCALATION_QUEUE_URL).

A timer is only a wake-up call naming (incident_id, seq): the run's ``next_at`` and ``seq`` in Postgres are the
truth. A message for an older seq (the run moved since) or one arriving before ``next_at`` does nothing (an early
one re-arms itself). SQS delays a message at most 15 minutes: a longer wait is re-armed in 15-minute hops, and the
minute sweep (EscalateFunction) moves any run whose time has passed, so a lost message costs at most a minute.
Messages leave after the commit that set the timer (``after_commit``), never for a state that was rolled back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from observai.config import Settings, get_settings
from observai.db.connection import after_commit
from observai.observability import logger

MESSAGE_VERSION = 1
MAX_DELAY_S = 900


@dataclass(frozen=True)
class Timer:
    incident_id: UUID
    seq: int


def message_body(incident_id: UUID, seq: int, due_at: datetime) -> str:
    return json.dumps(
        {
            "v": MESSAGE_VERSION,
            "kind": "escalation",
            "incident_id": str(incident_id),
            "seq": seq,
            "due_at": due_at.isoformat(),
        }
    )


def parse_message(body: str) -> Timer:
    """The (incident_id, seq) a timer message names; ValueError when it is not one of ours."""
    try:
        value = json.loads(body)
        if not isinstance(value, dict) or value.get("v") != MESSAGE_VERSION or value.get("kind") != "escalation":
            raise ValueError("not an escalation timer message")
        seq = value["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("not an escalation timer message")
        return Timer(UUID(str(value["incident_id"])), seq)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError("not an escalation timer message") from exc


def arm(incident_id: UUID, seq: int, due_at: datetime | None, now: datetime) -> None:
    """Send the timer once the running transaction commits (a delay of at most 15 minutes: a later one arrives
    early and re-arms). Nothing when no queue is configured: the sweep alone moves the runs."""
    if due_at is None:
        return
    after_commit(lambda: send(incident_id, seq, due_at, now))


def send(incident_id: UUID, seq: int, due_at: datetime, now: datetime, settings: Settings | None = None) -> bool:
    """One delay message; never raises (the minute sweep is the safety net)."""
    settings = settings or get_settings()
    if not settings.escalation_queue_url:
        return False
    delay = min(MAX_DELAY_S, max(0, math.ceil((due_at - now).total_seconds())))
    params: dict[str, Any] = {
        "QueueUrl": settings.escalation_queue_url,
        "MessageBody": message_body(incident_id, seq, due_at),
        "DelaySeconds": delay,
    }
    try:
        from observai.aws_clients import Timeouts, aws_client

        aws_client("sqs", Timeouts(connect_s=2, read_s=5, max_attempts=2)).send_message(**params)
        return True
    except Exception as exc:  # the sweep moves the run within a minute of its time
        logger.warning("escalation timer not sent", extra={"incident_id": str(incident_id), "error": str(exc)})
        return False
