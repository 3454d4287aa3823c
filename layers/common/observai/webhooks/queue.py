"""Delivery wake-ups on the webhook delivery queue (WEBHOOK_QUEUE_URL): one SQS message per webhook message due
within SQS's 15-minute delay limit.

A queue message is only a wake-up call: the webhook message's row (status, next_attempt_at, lease) is the truth,
so a redelivered, early or duplicate queue message is a no-op at claim time. Sending happens after the commit that
made the row due, so a message never names a rolled-back state; a later retry (or a lost message) is left to the
minute sweep, which delivers every message whose next_attempt_at has passed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from observai.config import Settings, get_settings
from observai.sqs_batches import MAX_DELAY_S, send_delayed

MESSAGE_VERSION = 1


def message_body(message_id: UUID) -> str:
    return json.dumps({"v": MESSAGE_VERSION, "webhook_message_id": str(message_id)})


def parse_message(body: str) -> UUID:
    """The webhook message id a queue message names; ValueError when it is not one of ours."""
    try:
        value = json.loads(body)
        if not isinstance(value, dict) or value.get("v") != MESSAGE_VERSION:
            raise ValueError("not a webhook delivery message")
        return UUID(str(value["webhook_message_id"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError("not a webhook delivery message") from exc


def send_wakeups(due: Iterable[tuple[UUID, datetime]], now: datetime, settings: Settings | None = None) -> int:
    """One (delay) message per webhook message due within 15 minutes, ten to a batch call; the number sent. Never
    raises: the sweep delivers whatever has no message."""
    settings = settings or get_settings()
    if not settings.webhook_queue_url:
        return 0
    messages: list[tuple[str, int]] = []
    for message_id, due_at in due:
        delay = max(0, math.ceil((due_at - now).total_seconds()))
        if delay <= MAX_DELAY_S:
            messages.append((message_body(message_id), delay))
    return send_delayed(settings.webhook_queue_url, messages, what="webhook wake-ups")
