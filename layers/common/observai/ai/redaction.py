"""What telemetry loses before it leaves for the model: the logs' redaction (``observai.observability.redact_text``:
bearer tokens, JWTs, our ``oai_`` API keys) plus e-mail addresses, AWS access key ids, Google API keys, private key
blocks, the values of ``key=``/``token=``/``secret=``/``password=`` pairs, long opaque hex or base64 strings, and
card numbers (13 to 19 digits, spaces or dashes allowed, only when the Luhn check passes: an order id is kept).
Trace ids in a log line's text are long hex strings and go too; the context cites them by its own ids.

Each kind is replaced by a marker that names it (``[EMAIL]``, ``[CARD]``, ``[REDACTED]``), so the model still
knows something was there.
"""

from __future__ import annotations

import re

from observai.observability import redact_text

REDACTED = "[REDACTED]"
EMAIL = "[EMAIL]"
CARD = "[CARD]"

_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S)
_EMAIL = re.compile(r"(?i)\b[a-z0-9._%+-]{1,64}@(?:[a-z0-9-]{1,63}\.)+[a-z]{2,24}\b")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")
_GOOGLE_KEY = re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")
_VENDOR_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|sk_(?:live|test)_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{20,})"
)
# key=value / "key": "value" / key: value, where the key names a secret: the value goes, the key stays.
_SECRET_PAIR = re.compile(
    r"""(?ix)
    (?P<key>\b[\w.-]*(?:api[_-]?key|apikey|access[_-]?key|secret|token|passw(?:or)?d|passwd|pwd|credential|auth)
        [\w.-]*)
    (?P<sep>["']?\s*[:=]\s*["']?)
    (?P<value>[^\s"',;&}]{4,})
    """
)
# Long opaque strings: 32+ hex characters, or 40+ base64/base64url characters mixing letters and digits.
_LONG_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")
_LONG_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{40,}={0,2}")
# Card numbers start with 2 to 6 (Mastercard's 2-series, Amex, Visa, Mastercard, Discover): an epoch in ms does not.
_CARD_CANDIDATE = re.compile(r"(?<![\d-])[2-6](?:[ -]?\d){12,18}(?![\d-])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return CARD if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


def _long_b64(match: re.Match[str]) -> str:
    text = match.group(0)
    # A long kebab-case name is not a secret: it needs digits and letters of both cases mixed.
    mixed = any(c.isdigit() for c in text) and any(c.islower() for c in text) and any(c.isupper() for c in text)
    return REDACTED if mixed else text


def redact_for_model(text: str) -> str:
    """``text`` as it may leave for the model: secrets and personal data replaced by markers."""
    if not text:
        return text
    text = _PRIVATE_KEY.sub(REDACTED, text)
    text = redact_text(text)
    text = _SECRET_PAIR.sub(lambda m: m.group("key") + m.group("sep") + REDACTED, text)
    text = _EMAIL.sub(EMAIL, text)
    text = _AWS_KEY_ID.sub(REDACTED, text)
    text = _GOOGLE_KEY.sub(REDACTED, text)
    text = _VENDOR_TOKENS.sub(REDACTED, text)
    text = _CARD_CANDIDATE.sub(_card, text)
    text = _LONG_HEX.sub(REDACTED, text)
    return _LONG_B64.sub(_long_b64, text)
