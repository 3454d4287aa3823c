"""E-mail: Amazon SES v2 ``SendEmail`` from ``settings.notify_email_sender``, a text and an HTML body.

At most 50 recipients a message (SES's limit): more addresses make several messages, and a retry after one failed
sends only those SES had not accepted (``SendResult.progress``, kept on the delivery). The bodies carry the text,
the incident's facts, the alerts (at most 50 listed) and the links: the incident page and the signed acknowledge
and resolve links (each opens a confirmation page; only its button acts, so a mail scanner following links changes
nothing). Everything that came from a user or an alert is HTML-escaped in the HTML body.

Throttling (``TooManyRequestsException``, ``LimitExceededException``), SES's 5xx and network failures are retryable;
a rejected message, an unverified sender or a paused account are not. No sender configured: not sent, not retried.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping, Sequence
from typing import Any

from observai.aws_clients import Timeouts, aws_client
from observai.config import Settings
from observai.notify.channels._common import (
    alert_name,
    alert_summary,
    cut,
    heading_event,
    incident_heading,
    one_line,
)
from observai.notify.message import Message, SendResult

MAX_RECIPIENTS = 50
SUBJECT_MAX = 200
TEXT_MAX = 20_000
MAX_ALERTS = 50
RETRYABLE_CODES = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceError",
        "InternalServerError",
        "RequestTimeout",
    }
)
# One attempt: the delivery worker retries by the result (botocore's own retries would hide the throttling).
_TIMEOUTS = Timeouts(connect_s=2, read_s=10, max_attempts=1)


def subject(message: Message) -> str:
    return one_line(
        incident_heading(
            message.title, message.severity, message.incident, heading_event(message.event, message.reason)
        ),
        SUBJECT_MAX,
    )


def _facts(message: Message) -> list[tuple[str, str]]:
    incident = message.incident or {}
    facts = [("Severity", message.severity)]
    for key, label in (("status", "Status"), ("service", "Service")):
        if incident.get(key):
            facts.append((label, str(incident[key])))
    if message.reason:
        facts.append(("Reason", message.reason))
    return facts


def _alert_lines(message: Message) -> list[str]:
    lines = []
    for alert in message.alerts[:MAX_ALERTS]:
        labels = alert.get("labels") or {}
        label_text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
        line = f"{alert_name(alert)} ({alert.get('state') or 'firing'})"
        if label_text:
            line += f" {label_text}"
        summary = alert_summary(alert)
        if summary:
            line += f": {summary}"
        lines.append(one_line(line, 500))
    if len(message.alerts) > MAX_ALERTS:
        lines.append(f"and {len(message.alerts) - MAX_ALERTS} more")
    return lines


_LINK_LABELS = (("acknowledge", "Acknowledge"), ("resolve", "Resolve"), ("incident", "Open the incident"))


def text_body(message: Message) -> str:
    parts = [subject(message), "", cut(message.text.strip(), TEXT_MAX)] if message.text.strip() else [subject(message)]
    parts += ["", *(f"{label}: {value}" for label, value in _facts(message))]
    alerts = _alert_lines(message)
    if alerts:
        parts += ["", "Alerts:", *(f"- {line}" for line in alerts)]
    links = [(label, message.links[name]) for name, label in _LINK_LABELS if message.links.get(name)]
    if links:
        parts += ["", *(f"{label}: {url}" for label, url in links)]
    return "\n".join(parts) + "\n"


def html_body(message: Message) -> str:
    e = html.escape
    out = [
        '<!doctype html><html><body style="font-family:sans-serif">',
        f"<h2>{e(subject(message))}</h2>",
    ]
    if message.text.strip():
        out.append(f'<p style="white-space:pre-wrap">{e(cut(message.text.strip(), TEXT_MAX))}</p>')
    out.append("<table>")
    out += [f'<tr><th align="left">{e(label)}</th><td>{e(value)}</td></tr>' for label, value in _facts(message)]
    out.append("</table>")
    alerts = _alert_lines(message)
    if alerts:
        out.append("<h3>Alerts</h3><ul>")
        out += [f"<li>{e(line)}</li>" for line in alerts]
        out.append("</ul>")
    links = [(label, message.links[name]) for name, label in _LINK_LABELS if message.links.get(name)]
    if links:
        out.append("<p>")
        out.append(" | ".join(f'<a href="{e(url, quote=True)}">{e(label)}</a>' for label, url in links))
        out.append("</p>")
    out.append("</body></html>")
    return "\n".join(out)


def batches(addresses: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(addresses))
    return [unique[i : i + MAX_RECIPIENTS] for i in range(0, len(unique), MAX_RECIPIENTS)]


def classify_error(exc: Exception) -> SendResult:
    """The SendResult of a failed SendEmail: throttling, 5xx and network failures are retryable."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        retryable = code in RETRYABLE_CODES or (isinstance(status, int) and (status >= 500 or status == 429))
        text = f"SES {code}: {error.get('Message') or ''}".strip()[:1000]
        return SendResult(ok=False, status_code=status, retryable=retryable, error=text)
    if isinstance(exc, BotoCoreError):
        return SendResult(ok=False, retryable=True, error=f"SES unreachable: {type(exc).__name__}"[:1000])
    raise exc


def send(config: Mapping[str, Any], message: Message, *, settings: Settings, client: Any = None) -> SendResult:
    """``client``: an SES v2 client (tests point one at a stand-in); the shared one otherwise."""
    import time

    if not settings.notify_email_sender:
        return SendResult(ok=False, retryable=False, error="no sender configured")
    addresses = [str(a) for a in config.get("addresses") or []]
    if not addresses:
        return SendResult(ok=False, retryable=False, error="no recipients")
    started = time.perf_counter()
    client = client or aws_client("sesv2", _TIMEOUTS)
    content = {
        "Simple": {
            "Subject": {"Data": subject(message), "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": text_body(message), "Charset": "UTF-8"},
                "Html": {"Data": html_body(message), "Charset": "UTF-8"},
            },
        }
    }
    ids: list[str] = []
    parts = batches(addresses)
    done = min(max(0, message.resume_from), len(parts))  # accepted by SES in earlier attempts: not sent again
    for batch in parts[done:]:
        try:
            answer = client.send_email(
                FromEmailAddress=settings.notify_email_sender,
                Destination={"ToAddresses": batch},
                Content=content,
            )
        except Exception as exc:
            failed = classify_error(exc)
            sent = done + len(ids)
            failed = dataclasses.replace(failed, progress=sent)  # a retry resumes after the accepted messages
            if sent:
                failed = dataclasses.replace(
                    failed, error=f"{failed.error} (after {sent} of {len(parts)} messages were sent)"[:1000]
                )
            return _timed(failed, started)
        ids.append(str(answer.get("MessageId") or ""))
    result = SendResult(ok=True, status_code=200, response_excerpt=" ".join(ids)[:1024], progress=len(parts))
    return _timed(result, started)


def _timed(result: SendResult, started: float) -> SendResult:
    import time

    return dataclasses.replace(result, duration_ms=max(0, round((time.perf_counter() - started) * 1000)))
