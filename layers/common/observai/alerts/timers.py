"""Group timers as SQS delay messages on the alert timer queue (ALERT_TIMER_QUEUE_URL).

A timer is only a wake-up call: the group's ``next_flush_at`` in Postgres is the truth, and the dispatcher does
nothing for a message that arrives before it (or after another flush moved it). SQS delays a message at most
15 minutes: a later timer is left to the dispatcher's minute sweep, which also catches any message lost. Sending
happens after the commit that set the timer, so the message never names a state that was rolled back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from observai.aws_clients import Timeouts, aws_client
from observai.config import Settings, get_settings
from observai.observability import logger

MESSAGE_VERSION = 1
MAX_DELAY_S = 900
# On the dispatcher's path: quick, and a failure only costs the sweep's minute.
_TIMEOUTS = Timeouts(connect_s=2, read_s=5, max_attempts=2)


def message_body(group_id: UUID, due_at: datetime) -> str:
    return json.dumps({"v": MESSAGE_VERSION, "group_id": str(group_id), "due_at": due_at.isoformat()})


def parse_message(body: str) -> UUID:
    """The group id a timer message names; ValueError when it is not one of ours."""
    try:
        value = json.loads(body)
        if not isinstance(value, dict) or value.get("v") != MESSAGE_VERSION:
            raise ValueError("not an alert timer message")
        return UUID(str(value["group_id"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError("not an alert timer message") from exc


def send_timers(timers: Mapping[UUID, datetime | None], now: datetime, settings: Settings | None = None) -> int:
    """One delay message per group due within 15 minutes; the number sent. Never raises: the sweep is the net."""
    settings = settings or get_settings()
    if not settings.alert_timer_queue_url or not timers:
        return 0
    sent = 0
    for group_id, due_at in timers.items():
        if due_at is None:
            continue
        delay = max(0, math.ceil((due_at - now).total_seconds()))
        if delay > MAX_DELAY_S:
            continue
        params: dict[str, Any] = {
            "QueueUrl": settings.alert_timer_queue_url,
            "MessageBody": message_body(group_id, due_at),
            "DelaySeconds": delay,
        }
        try:
            aws_client("sqs", _TIMEOUTS).send_message(**params)
            sent += 1
        except Exception as exc:  # the sweep flushes the group within a minute of its time
            logger.warning("alert timer not sent", extra={"group_id": str(group_id), "error": str(exc)})
    return sent
