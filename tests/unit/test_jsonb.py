"""jsonb values for COPY: the fast (orjson) encoding stores exactly what the json-module encoding stores."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from observai.db.jsonb import jsonb_binary, jsonb_dumps

_text = st.lists(st.sampled_from(["a", "é", "\x00", "\\", "u0000", '"', "null", "\U0001f600"]), max_size=6).map("".join)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _strict(data: bytes) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"not JSON: {token}")

    return json.loads(data, parse_constant=refuse)


@given(st.dictionaries(_text, _values, max_size=6) | st.lists(_values, max_size=4))
def test_binary_form_stores_what_the_json_module_form_stores(value: Any) -> None:
    # Given any attribute-like document (NUL, NaN/Infinity, big integers, escapes included)
    # When it is encoded in jsonb's binary form
    encoded = jsonb_binary(value)
    # Then it is version 1, strict JSON without NUL escapes, equal to the json-module encoding
    assert encoded[:1] == b"\x01"
    document = _strict(encoded[1:])
    assert b"\\u0000" not in encoded.replace(b"\\\\", b"")
    assert document == _strict(jsonb_dumps(value).encode())


def test_non_finite_numbers_and_nul_are_made_storable() -> None:
    # Given NaN, infinities and NUL in keys and values
    value = {"nan": math.nan, "inf": [math.inf, -math.inf], "k\x00": "v\x00", "null": None}
    # When encoded
    document = _strict(jsonb_binary(value)[1:])
    # Then they become strings and U+FFFD, a real null stays null
    assert document == {"nan": "NaN", "inf": ["Infinity", "-Infinity"], "k\ufffd": "v\ufffd", "null": None}


def test_integer_keys_and_huge_integers_are_kept() -> None:
    # Given what orjson refuses: a non-string key and an integer past 64 bits
    # When encoded
    document = _strict(jsonb_binary({1: 2**70})[1:])
    # Then the json-module path stores them
    assert document == {"1": 2**70}
