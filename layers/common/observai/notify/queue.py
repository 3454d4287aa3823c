"""Delivery wake-ups on the notification queue (NOTIFY_QUEUE_URL): one SQS message per notification delivery.

A queue message is only a wake-up call: the delivery's row (status, next_attempt_at, lease) is the truth, so a
redelivered, early or duplicate message is a no-op at claim time (observai.notify.deliveries). Wake-ups leave after
the commit that made the row due (``after_commit``); a lost one, or a retry beyond SQS's 15-minute delay, is left
to the minute sweep, which sends every delivery whose ``next_attempt_at`` has passed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from observai.aws_clients import Timeouts, aws_client
from observai.config import Settings, get_settings
from observai.observability import logger

MESSAGE_VERSION = 1
MAX_DELAY_S = 900
BATCH = 10
# On the path of the change that pages (after its commit) and of the worker: quick; a failure costs the sweep's
# minute at most.
_TIMEOUTS = Timeouts(connect_s=2, read_s=5, max_attempts=2)


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
        delay = max(0, min(MAX_DELAY_S, int(delay_s)))
        unique = list(dict.fromkeys(delivery_ids))
    except Exception as exc:  # settings that do not load: the sweep's job, as for a failed send
        logger.warning("notification wake-ups not sent", extra={"error": exc.__class__.__name__})
        return 0
    sent = 0
    client = None
    for start in range(0, len(unique), BATCH):
        chunk = unique[start : start + BATCH]
        entries: list[dict[str, Any]] = [
            {"Id": str(i), "MessageBody": message_body(did), "DelaySeconds": delay} for i, did in enumerate(chunk)
        ]
        try:
            client = client or aws_client("sqs", _TIMEOUTS)
            result = client.send_message_batch(QueueUrl=settings.notify_queue_url, Entries=entries)
            sent += len(result.get("Successful") or [])
            if result.get("Failed"):
                logger.warning("notification wake-ups not sent", extra={"failed": len(result["Failed"])})
        except Exception as exc:  # the sweep sends them within a minute of their time
            logger.warning("notification wake-ups not sent", extra={"count": len(chunk), "error": str(exc)})
    return sent
