"""Unit tests of the checks made where untrusted input enters: text Postgres cannot hold, numbers past its
columns, JSON documents nested too deep, and one item's unforeseen error never failing its request."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from observai.errors import InvalidInput, Unprocessable
from observai.http.untrusted_input import MAX_DEPTH, check_json_body, check_parameters
from observai.telemetry.limits import BIGINT_MAX, check_point_numbers, check_span_times, unforeseen
from observai.text import may_hold_surrogates, storable, storable_text, unstorable_reason, utf8_text


def test_storable_text_replaces_nul_and_lone_surrogates_but_keeps_pairs() -> None:
    assert storable_text("a\x00b") == "a\ufffdb"
    assert storable_text("x\udc00y\ud800") == "x\ufffdy\ufffd"
    assert storable_text("ok \U0001f600 é") == "ok \U0001f600 é"


@given(st.recursive(st.text() | st.integers() | st.none(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)))
def test_storable_documents_always_encode_as_utf8_without_nul(document: object) -> None:
    # Given any JSON-like document (hypothesis' text includes NUL and lone surrogates)
    fixed = storable(document)
    # Then every string in it is UTF-8 encodable and NUL-free
    text = repr(fixed)
    assert "\\x00" not in text
    fixed_text = str(fixed)
    fixed_text.encode("utf-8")


def test_may_hold_surrogates_looks_for_escapes_only() -> None:
    assert may_hold_surrogates(b'{"a":"\\udc00"}') and may_hold_surrogates('"\\uD83D\\uDE00"')
    assert not may_hold_surrogates(b'{"a":"\\u00e9 \\u0000"}')


def test_utf8_text_reports_the_offset_of_the_first_bad_byte() -> None:
    with pytest.raises(InvalidInput) as caught:
        utf8_text(b"abc\xffdef")
    assert caught.value.code == "invalid_utf8" and caught.value.details == {"position": 3}


def test_unstorable_reason_names_the_problem() -> None:
    assert "NUL" in (unstorable_reason("a\x00") or "")
    assert "surrogate" in (unstorable_reason("\udfff") or "")
    assert unstorable_reason("fine é") is None


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        ('{"a": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}", InvalidInput, "too_deep"),
        ("[" * 5000 + "]" * 5000, InvalidInput, "too_deep"),
        ('{"a": NaN}', InvalidInput, "malformed_json"),
        ('{"a": "\\ud800"}', InvalidInput, "malformed_json"),
        ('{"a": "x\\u0000"}', Unprocessable, "validation_error"),
        ('{"a": 9223372036854775808}', Unprocessable, "validation_error"),
        ('{"a": [1, {"b": -9223372036854775809}]}', Unprocessable, "validation_error"),
    ],
    ids=["depth", "very-deep", "nan", "surrogate", "nul", "int-past-bigint", "nested-int-past-bigint"],
)
def test_check_json_body_refuses(body: str, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as caught:
        check_json_body(body)
    assert caught.value.code == code  # type: ignore[attr-defined]


def test_check_json_body_names_the_field() -> None:
    with pytest.raises(Unprocessable) as caught:
        check_json_body('{"queries": [{"metric": "a\\u0000"}], "limit": 18446744073709551616}')
    locs = [d["loc"] for d in caught.value.details]
    assert locs == [["body", "limit"], ["body", "queries", "0", "metric"]]


@pytest.mark.parametrize(
    "body", ['{"a": 1e300, "b": 9223372036854775807, "c": -9223372036854775808}', '{"t": 1e19}', "[]", '"x"']
)
def test_check_json_body_lets_good_documents_through(body: str) -> None:
    check_json_body(body)  # floats of any finite size are fine; integers up to bigint are fine


def test_check_parameters_refuses_nul_in_query_and_path() -> None:
    with pytest.raises(Unprocessable) as caught:
        check_parameters({"queryStringParameters": {"service": "a\x00"}, "pathParameters": {"name": "\udc00"}})
    assert [d["loc"] for d in caught.value.details] == [["query", "service"], ["path", "name"]]
    check_parameters({"queryStringParameters": {"service": "api"}, "pathParameters": None})


def test_check_point_numbers() -> None:
    assert check_point_numbers(1.0, None, ()) is None
    assert "finite" in (check_point_numbers(math.inf, None, ()) or "")
    assert "finite" in (check_point_numbers(None, 1, (1.0, math.nan, None)) or "")
    assert "count" in (check_point_numbers(None, BIGINT_MAX + 1, ()) or "")
    assert "bucket_counts" in (check_point_numbers(None, 1, (), [0, BIGINT_MAX + 1]) or "")
    assert check_point_numbers(None, BIGINT_MAX, (None, None, None), [BIGINT_MAX]) is None


def test_check_span_times() -> None:
    assert check_span_times(10, 20) is None
    assert "before" in (check_span_times(20, 10) or "")
    assert "years" in (check_span_times(0, BIGINT_MAX + 1) or "")


def test_an_unforeseen_error_becomes_the_reason_of_one_item() -> None:
    assert unforeseen(OverflowError("cannot convert float infinity to integer")) == "invalid value: OverflowError"


@pytest.mark.parametrize(("first", "second"), [(0.0, -0.0), (-0.0, 0.0), (1, 1.0), (1, True), (0.0, 0)])
def test_series_ids_of_values_equal_in_python_but_not_in_json_stay_apart(first: object, second: object) -> None:
    # Given two attribute values Python finds equal but JSON spells apart (the fuzzer found 0.0 and -0.0 merged)
    from observai.telemetry.series import _compute, series_id

    # When both series are named, one after the other (the memo holds the first)
    a, b = series_id("m", {"x": first}), series_id("m", {"x": second})
    # Then each gets the id of its own canonical spelling
    assert (a, b) == (_compute("m", {"x": first}), _compute("m", {"x": second}))
    assert a != b
