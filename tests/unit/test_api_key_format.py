"""API key format: oai_ + 32 base62 + 6-character checksum; parse, lookup prefix, constant-time hash compare."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from observai.auth import api_key_format as fmt
from observai.auth.api_key_format import (
    ALPHABET,
    KEY_LENGTH,
    generate_key,
    hash_key,
    hashes_match,
    looks_like_api_key,
    parse_key,
)

KEY_SHAPE = re.compile(r"^oai_[0-9A-Za-z]{38}$")


def test_generate_then_parse_round_trips() -> None:
    # Given a freshly generated key
    generated = generate_key()
    # When parsing it back
    parsed = parse_key(generated.key)
    # Then it parses to the same key and lookup prefix
    assert parsed is not None
    assert parsed == generated
    assert parsed.key == generated.key
    assert parsed.lookup_prefix == generated.lookup_prefix


def test_shape_prefix_and_length() -> None:
    # Given many generated keys
    keys = [generate_key() for _ in range(200)]
    for generated in keys:
        # Then each starts with oai_, is 42 characters of base62 after it, and scanners can spot it
        assert generated.key.startswith("oai_")
        assert len(generated.key) == KEY_LENGTH == 4 + 32 + 6
        assert KEY_SHAPE.match(generated.key), generated.key
        assert looks_like_api_key(generated.key)
        # And the lookup prefix is oai_ plus the first 12 random characters
        assert generated.lookup_prefix == generated.key[:16]
        assert len(generated.lookup_prefix) == 16
    # And they are random (no repeats, no shared lookup prefixes)
    assert len({k.key for k in keys}) == len(keys)
    assert len({k.lookup_prefix for k in keys}) == len(keys)


def test_lookup_prefix_does_not_reveal_the_secret_part() -> None:
    # Given a key
    generated = generate_key()
    # Then the stored prefix is much shorter than the key: 26 random characters stay secret
    assert len(generated.key) - len(generated.lookup_prefix) == 26
    assert generated.key.startswith(generated.lookup_prefix)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_checksum_detects_any_single_character_change(data: st.DataObject) -> None:
    # Given a valid key
    key = generate_key().key
    # When any one character after "oai_" is replaced by a different base62 character
    position = data.draw(st.integers(min_value=4, max_value=len(key) - 1), label="position")
    replacement = data.draw(st.sampled_from([c for c in ALPHABET if c != key[position]]), label="replacement")
    tampered = key[:position] + replacement + key[position + 1 :]
    # Then the key no longer parses (no database lookup needed to reject it)
    assert tampered != key
    assert parse_key(tampered) is None


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_prefix_change_is_rejected(data: st.DataObject) -> None:
    # Given a valid key whose "oai_" prefix gets one character changed
    key = generate_key().key
    position = data.draw(st.integers(min_value=0, max_value=3))
    replacement = data.draw(st.sampled_from([c for c in ALPHABET + "_" if c != key[position]]))
    tampered = key[:position] + replacement + key[position + 1 :]
    # Then it is refused
    assert parse_key(tampered) is None


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "oai_",
        "oai_short",
        "sk_live_" + "a" * 34,
        "OAI_" + "a" * 38,
    ],
)
def test_malformed_strings_do_not_parse(candidate: str) -> None:
    # Given strings that are not keys at all
    # Then parse refuses them
    assert parse_key(candidate) is None


def test_wrong_length_and_bad_alphabet_are_refused() -> None:
    # Given a valid key
    key = generate_key().key
    # When it is truncated, extended, or carries a non-base62 character
    # Then it is refused
    assert parse_key(key[:-1]) is None
    assert parse_key(key + "0") is None
    assert parse_key(key[:10] + "-" + key[11:]) is None
    assert parse_key(key[:10] + "é" + key[11:]) is None


def test_a_made_up_key_with_the_right_shape_fails_the_checksum() -> None:
    # Given a key-shaped string whose checksum was not computed
    body = "oai_" + "A" * 32
    fake = body + "AAAAAA"
    # Then it fails unless the checksum happens to match; with the real checksum it parses
    assert fmt.checksum(body) != "AAAAAA"
    assert parse_key(fake) is None
    assert parse_key(body + fmt.checksum(body)) is not None


def test_hash_is_sha256_of_the_whole_key() -> None:
    # Given a key
    key = generate_key().key
    # Then what is stored is the SHA-256 of the whole key (not the key)
    assert hash_key(key) == hashlib.sha256(key.encode()).digest()
    assert key.encode() not in hash_key(key)


def test_hashes_match_true_and_false(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a key, its stored hash, and another key
    key, other = generate_key().key, generate_key().key
    stored = hash_key(key)
    compared: list[tuple[bytes, bytes]] = []
    real_compare = fmt.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(fmt.hmac, "compare_digest", spy)
    # When comparing (stored hashes come back from Postgres as bytes or memoryview)
    # Then only the right key matches
    assert hashes_match(key, stored) is True
    assert hashes_match(key, memoryview(stored)) is True
    assert hashes_match(other, stored) is False
    assert hashes_match(key, stored[:-1] + bytes([stored[-1] ^ 1])) is False
    # And every comparison went through the constant-time compare
    assert len(compared) == 4
