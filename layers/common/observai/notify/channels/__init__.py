"""The paging channels: each renders a ``Message`` for its receiver and sends it once (no retry: the delivery
worker retries by the ``SendResult``).

``send(kind, config, message, settings=...)`` is the one entry point. ``config`` is the contact point's channel
configuration with its secret opened (observai.notify.contact_points.channel_config): ``{"addresses": [...]}``
(email), ``{"url": ...}`` (slack), ``{"routing_key": ..., "severity_map": {...}}`` (pagerduty),
``{"endpoint_id", "org_id", "project_id"}`` (webhook). A receiver's failure is a ``SendResult``, never an exception.

HTTP goes through the webhook engine's sender (observai.webhooks.sender.post): the SSRF guard, a connection to the
checked address, no redirects, ``notify_timeout_s``; loopback only with ``notify_allow_loopback`` in the local and
test stages. Each channel's module is imported on first use (boto3 only for e-mail).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from observai.config import Settings
from observai.notify.message import Message, SendResult

KINDS = ("email", "slack", "pagerduty", "webhook")


def send(kind: str, config: Mapping[str, Any], message: Message, *, settings: Settings) -> SendResult:
    """Send ``message`` through the channel ``kind`` with ``config``: one attempt, its result."""
    if kind not in KINDS:
        return SendResult(ok=False, error=f"unknown channel kind {kind!r}")
    module = importlib.import_module(f"observai.notify.channels.{kind}")
    result: SendResult = module.send(config, message, settings=settings)
    return result
