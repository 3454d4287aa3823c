"""Delivery wake-ups on the notification queue (NOTIFY_QUEUE_URL): one SQS message per notification delivery.

A queue message is only a wake-up call: the delivery's row (status, next_attempt_at, lease) is the truth, so a
redelivered, early or duplicate message is a no-op at claim time (observai.notify.deliveries). Wake-ups leave after
the commit that made the row due (``after_commit``); a lost one, or a retry beyond SQS's 15-minute delay, is left
to the minute sweep, which sends every delivery whose ``next_attempt_at`` has passed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from uuid import UUID

from observai.config import Settings, get_settings
from observai.observability import logger
from observai.sqs_batches import send_delayed

MESSAGE_VERSION = 1


def message_body(delivery_id: UUID) -> str:
    return json.dumps({"v": MESSAGE_VERSION, "notification_delivery_id": str(delivery_id)})


def parse_message(body: str) -> UUID:
    """The delivery id a queue message names; ValueError when it is not one of ours."""
    try:
        value = json.loads(body)
        if not isinstance(value, dict) or value.get("v") != MESSAGE_VERSION:
            raise ValueError("not a notification delivery message")
        return UUID(str(value["notification_delivery_id"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError("not a notification delivery message") from exc


def send_wakeups(delivery_ids: Sequence[UUID], delay_s: int = 0, settings: Settings | None = None) -> int:
    """One message per delivery, delayed ``delay_s`` (clamped to SQS's 0..900 s), ten to a batch call; the number
    sent. Never raises: without a queue, or when SQS fails, the minute sweep sends the deliveries when due."""
    try:
        settings = settings or get_settings()
        if not settings.notify_queue_url or not delivery_ids:
            return 0
        delay = int(delay_s)  # clamped to SQS's 0..900 s by send_delayed
        unique = list(dict.fromkeys(delivery_ids))
    except Exception as exc:  # settings that do not load: the sweep's job, as for a failed send
        logger.warning("notification wake-ups not sent", extra={"error": exc.__class__.__name__})
        return 0
    return send_delayed(
        settings.notify_queue_url, [(message_body(did), delay) for did in unique], what="notification wake-ups"
    )
