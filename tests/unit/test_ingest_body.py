"""Ingest request bodies: base64 from API Gateway, size limits, bounded gzip (bombs refused without inflating)."""

from __future__ import annotations

import base64
import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from observai.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from observai.telemetry.body import decoded_body, inflate
from observai.telemetry.limits import IngestLimits

SMALL = IngestLimits(max_body_bytes=64 * 1024, max_decompressed_bytes=256 * 1024)


def event(body: bytes, *, encoding: str | None = None, b64: bool = True) -> dict:
    headers = {"content-encoding": encoding} if encoding else {}
    text = base64.b64encode(body).decode() if b64 else body.decode()
    return {"headers": headers, "body": text, "isBase64Encoded": b64}


def test_plain_and_base64_bodies_pass_through() -> None:
    assert decoded_body(event(b'[{"a":1}]', b64=False), SMALL) == b'[{"a":1}]'
    assert decoded_body(event(b"\x00\x01binary"), SMALL) == b"\x00\x01binary"


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "x-gzip"])
def test_gzip_is_inflated(encoding: str) -> None:
    payload = b'{"hello": "world"}' * 100
    assert decoded_body(event(gzip.compress(payload), encoding=encoding), SMALL) == payload


def test_deflate_is_inflated() -> None:
    payload = b"x" * 5000
    assert decoded_body(event(zlib.compress(payload), encoding="deflate"), SMALL) == payload


def test_a_gzip_bomb_is_refused_without_inflating_it_all() -> None:
    # Given 1 GiB of zeros compressed to about 1 MiB... here 64 MiB → ~64 KiB to keep the test fast
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < SMALL.max_body_bytes
    # When it is read, Then it is a 413 naming the decompressed limit
    with pytest.raises(PayloadTooLarge) as raised:
        decoded_body(event(bomb, encoding="gzip"), SMALL)
    assert "decompressed" in raised.value.message
    assert raised.value.details == {"limit_bytes": SMALL.max_decompressed_bytes}


def test_inflate_stops_just_past_the_limit() -> None:
    # The decompressor is never asked for more than limit + 1 bytes in total.
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(b"a" * 10_001), wbits=16 + zlib.MAX_WBITS, limit=10_000)
    assert len(inflate(gzip.compress(b"a" * 10_000), wbits=16 + zlib.MAX_WBITS, limit=10_000)) == 10_000


def test_oversized_raw_body_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        decoded_body(event(b"x" * (SMALL.max_body_bytes + 1)), SMALL)


@pytest.mark.parametrize(
    "body",
    [b"not gzip at all", gzip.compress(b"truncated" * 100)[:-12]],
    ids=["garbage", "truncated"],
)
def test_broken_gzip_is_400(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        decoded_body(event(body, encoding="gzip"), SMALL)


def test_unknown_content_encoding_is_415() -> None:
    with pytest.raises(UnsupportedMediaType):
        decoded_body(event(b"x", encoding="br"), SMALL)


def test_bad_base64_is_400() -> None:
    with pytest.raises(InvalidInput):
        decoded_body({"headers": {}, "body": "@@not base64@@", "isBase64Encoded": True}, SMALL)


@pytest.mark.parametrize("text", ["QUJD\n", "QU=JD", "QUJ", "QUJDRA==QUJD", " QUJD", "QUJDé", "QUJD\ud800", "Q\x00JD"])
def test_malformed_base64_is_400_like_the_strict_decoder(text: str) -> None:
    # Given a body API Gateway marked base64 that the strict decoder refuses (line breaks, spaces, padding inside
    # or after the data, non-ASCII text, a lone surrogate, NUL)
    with pytest.raises((ValueError, TypeError)):
        base64.b64decode(text, validate=True)
    # Then the body is refused with a 400, never decoded leniently nor a 500
    with pytest.raises(InvalidInput):
        decoded_body({"headers": {}, "body": text, "isBase64Encoded": True}, SMALL)


@given(st.binary(max_size=2048))
def test_base64_bodies_decode_as_the_strict_decoder(payload: bytes) -> None:
    # Given any body as API Gateway encodes it; Then the bytes are exactly what base64.b64decode(validate) gives
    text = base64.b64encode(payload).decode()
    assert decoded_body({"headers": {}, "body": text, "isBase64Encoded": True}, SMALL) == base64.b64decode(
        text, validate=True
    )
