"""The small HTML pages of the acknowledge/resolve links: self-contained (one inline style, allowed by its hash in
a strict Content-Security-Policy; no script, no image, no external asset), every text escaped."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from html import escape
from typing import Any

_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:36rem;margin:3rem auto;"
    "padding:0 1rem;color:#1f2328;line-height:1.5}"
    "h1{font-size:1.35rem}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}"
    "dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}"
    "button{font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#1f6feb;color:#fff;"
    "cursor:pointer}"
    ".note{color:#59636e;font-size:.9rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

# No script may run, nothing may be loaded, the form may post only back here, no one may frame the page.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}
HTML_CONTENT_TYPE = "text/html; charset=utf-8"

_VERBS = {"acknowledge": "Acknowledge", "resolve": "Resolve"}


@dataclass(frozen=True)
class Page:
    """What a link answers: the HTTP status, a heading, a sentence, the incident when known, and whether the
    confirm button is shown (only the GET of a link that can still act)."""

    status: int
    heading: str
    message: str
    incident: dict[str, Any] | None = None
    action: str | None = None
    confirm: bool = False


def render(page: Page) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="robots" content="noindex, nofollow">',
        f"<title>{escape(page.heading)} · ObservAI</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(page.heading)}</h1>",
        f"<p>{escape(page.message)}</p>",
    ]
    if page.incident is not None:
        incident = page.incident
        rows = [
            ("Incident", f"#{incident.get('number')}"),
            ("Title", str(incident.get("title") or "")),
            ("Status", str(incident.get("status") or "")),
            ("Severity", str(incident.get("severity") or "")),
        ]
        parts.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>")
    if page.confirm and page.action in _VERBS:
        verb = _VERBS[page.action]
        parts.append(f'<form method="post"><button type="submit">{escape(verb)} incident</button></form>')
        parts.append('<p class="note">Nothing changes until you press the button.</p>')
    parts.append("</body></html>")
    return "\n".join(parts)
