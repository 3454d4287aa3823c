"""What the HTTP channels share: the POST through the SSRF guard with the paging settings, the classification of
an answer into a SendResult, and cutting text on a boundary."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from observai.config import Settings
from observai.notify.message import SendResult

USER_AGENT = "ObservAI-Hub-Notifications/1.0"
ELLIPSIS = "…"
_PARTIAL_ENTITY = re.compile(r"&[a-z#0-9]{0,5}$")


def post_json(url: str, payload: dict[str, Any], settings: Settings, now: datetime | None = None) -> Any:
    """One POST of ``payload`` as JSON; the sender's Attempt. The webhook engine's guard and timeout settings are
    replaced by the paging ones (``notify_allow_loopback``, still only in local and test stages;
    ``notify_timeout_s``)."""
    from observai.webhooks import sender

    paging = settings.model_copy(
        update={
            "webhook_allow_loopback": settings.notify_allow_loopback,
            "webhook_timeout_s": settings.notify_timeout_s,
        }
    )
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    return sender.post(url, body=body, headers=headers, now=now or datetime.now(UTC), settings=paging)


def classify(
    attempt: Any,
    *,
    success: tuple[int, ...],
    retryable: frozenset[int] = frozenset({429}),
    disable: dict[int, str] | None = None,
) -> SendResult:
    """The SendResult of an HTTP attempt: ``success`` statuses are ok; 5xx, the ``retryable`` ones and no answer at
    all (timeout, connection) may be tried again; a refusal of the SSRF guard is final; ``disable`` maps statuses
    to the reason the contact point is disabled."""
    status = attempt.status_code
    common: dict[str, Any] = {
        "status_code": status,
        "response_excerpt": attempt.response_excerpt,
        "duration_ms": attempt.duration_ms,
    }
    if status is not None and status in success:
        return SendResult(ok=True, **common)
    if status is None:
        refused = (attempt.error or "").startswith("refused:")
        return SendResult(ok=False, retryable=not refused, error=attempt.error, **common)
    error = attempt.error or f"HTTP {status}"
    if disable and status in disable:
        return SendResult(ok=False, retryable=False, disable_reason=disable[status], error=error, **common)
    again = status >= 500 or status in retryable
    return SendResult(
        ok=False,
        retryable=again,
        retry_after_s=attempt.retry_after_s if again else None,
        error=error,
        **common,
    )


def cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters: cut at the last line break or space in its second half, with an
    ellipsis; never inside an HTML/Slack entity (``&amp;``)."""
    if len(text) <= limit:
        return text
    window = text[: max(0, limit - 1)]
    boundary = max(window.rfind("\n"), window.rfind(" "))
    if boundary >= limit // 2:
        window = window[:boundary]
    window = _PARTIAL_ENTITY.sub("", window.rstrip())
    return window + ELLIPSIS


def one_line(text: str, limit: int) -> str:
    return cut(" ".join(str(text).split()), limit)


def alert_name(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    return str(labels.get("alertname") or alert.get("name") or "alert")


def alert_summary(alert: dict[str, Any]) -> str:
    annotations = alert.get("annotations") or {}
    return str(annotations.get("summary") or annotations.get("description") or "")


def incident_heading(title: str, severity: str, incident: dict[str, Any] | None, event: str) -> str:
    """``[CRITICAL] #12 Title`` (``[RESOLVED]`` for a resolution, ``[TEST]`` for a test)."""
    tag = {"resolve": "RESOLVED", "acknowledge": "ACKNOWLEDGED", "test": "TEST"}.get(event, severity.upper())
    number = f"#{incident['number']} " if incident and incident.get("number") is not None else ""
    return f"[{tag}] {number}{title}"


def is_resolution(event: str, reason: str | None) -> bool:
    """A resolve event, or a route's notification that its alerts resolved."""
    return event == "resolve" or (event == "notify" and reason == "resolved")


def heading_event(event: str, reason: str | None) -> str:
    return "resolve" if is_resolution(event, reason) else event
