"""Wake-up messages to an SQS queue, ten to a ``SendMessageBatch`` call, never raising: the webhook and notification
queues' wake-ups are hints (the rows are the truth, and a minute sweep sends whatever has no message), so a failed
call is logged and counted out, not raised into the change that committed. ``is_sqs_event`` tells the workers'
two doors apart: a batch of those messages, or the sweep's schedule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from observai.aws_clients import Timeouts, aws_client
from observai.observability import logger

MAX_DELAY_S = 900  # SQS's delay limit
BATCH = 10  # SQS's batch limit
# On the path of a committed change and of the workers: quick; a failure costs the sweep's minute at most.
_TIMEOUTS = Timeouts(connect_s=2, read_s=5, max_attempts=2)


def send_delayed(queue_url: str, messages: Sequence[tuple[str, int]], *, what: str) -> int:
    """Send each ``(body, delay_s)`` (the delay clamped to 0..900 s); the number SQS took. ``what`` names them in
    the warning logged for those it did not."""
    sent = 0
    client = None
    for start in range(0, len(messages), BATCH):
        chunk = messages[start : start + BATCH]
        entries = [
            {"Id": str(i), "MessageBody": body, "DelaySeconds": max(0, min(MAX_DELAY_S, int(delay)))}
            for i, (body, delay) in enumerate(chunk)
        ]
        try:
            client = client or aws_client("sqs", _TIMEOUTS)
            result = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            sent += len(result.get("Successful") or [])
            if result.get("Failed"):
                logger.warning(f"{what} not sent", extra={"failed": len(result["Failed"])})
        except Exception as exc:  # the sweep sends them within a minute of their time
            logger.warning(f"{what} not sent", extra={"count": len(chunk), "error": str(exc)})
    return sent


def is_sqs_event(event: Any) -> bool:
    """An SQS event source's batch (a wake-up queue), rather than EventBridge Scheduler's minute."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        return False
    return all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
