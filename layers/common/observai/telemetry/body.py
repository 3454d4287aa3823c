"""Request bodies of the ingest routes: base64 (API Gateway's binary bodies), size limits, bounded gzip.

A gzip bomb is refused without inflating it all: decompression stops one byte past the limit.
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Mapping
from typing import Any

from observai.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from observai.telemetry.limits import DEFAULT_LIMITS, IngestLimits

_CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


def header(headers: Mapping[str, str] | None, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return ""


def raw_body(event: Mapping[str, Any], limits: IngestLimits = DEFAULT_LIMITS) -> bytes:
    """The body as sent (still compressed), within the size limit."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        if len(body) * 3 // 4 > limits.max_body_bytes:
            raise _too_large(limits.max_body_bytes, "request body")
        try:
            # base64.b64decode(body, validate=True) without its copy of the text as ASCII bytes first (a2b takes
            # an ASCII str as it is; a non-ASCII one is a ValueError, as there).
            data = binascii.a2b_base64(body, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("The request body is not valid base64") from exc
    else:
        data = body.encode() if isinstance(body, str) else bytes(body)
    if len(data) > limits.max_body_bytes:
        raise _too_large(limits.max_body_bytes, "request body")
    return data


def decoded_body(event: Mapping[str, Any], limits: IngestLimits = DEFAULT_LIMITS) -> bytes:
    """The body after Content-Encoding (gzip, deflate or none), never larger than the decompressed limit."""
    data = raw_body(event, limits)
    encoding = header(event.get("headers"), "content-encoding").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding in ("gzip", "x-gzip"):
        return inflate(data, wbits=16 + zlib.MAX_WBITS, limit=limits.max_decompressed_bytes)
    if encoding == "deflate":
        return inflate(data, wbits=zlib.MAX_WBITS, limit=limits.max_decompressed_bytes)
    raise UnsupportedMediaType(
        f"Unsupported Content-Encoding {encoding!r}: send gzip, deflate or none", code="unsupported_encoding"
    )


def inflate(data: bytes, *, wbits: int, limit: int) -> bytes:
    """Inflate ``data``, at most ``limit`` bytes in total. A gzip body may hold several members (RFC 1952, as
    ``cat a.gz b.gz`` or pigz make them): each is inflated in turn; any other data after the end of the
    stream is refused (400), never silently dropped."""
    out = bytearray()
    pending = data
    while True:
        decompressor = zlib.decompressobj(wbits)
        try:
            while pending:
                out += decompressor.decompress(pending, min(_CHUNK, limit + 1 - len(out)))
                if len(out) > limit:
                    raise _too_large(limit, "decompressed body")
                pending = decompressor.unconsumed_tail
            out += decompressor.flush(limit + 1 - len(out))
        except zlib.error as exc:
            raise InvalidInput("The request body is not valid compressed data", code="bad_compression") from exc
        if len(out) > limit:
            raise _too_large(limit, "decompressed body")
        if not decompressor.eof:
            raise InvalidInput("The compressed request body is truncated", code="bad_compression")
        pending = decompressor.unused_data
        if not pending:
            return bytes(out)
        if wbits <= zlib.MAX_WBITS or not pending.startswith(_GZIP_MAGIC):
            raise InvalidInput("The compressed request body has trailing data", code="bad_compression")


def _too_large(limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"The {what} is larger than {limit} bytes", details={"limit_bytes": limit})
