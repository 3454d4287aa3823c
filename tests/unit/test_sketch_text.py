"""Sketch entries to JSON: the C pass (``_sketch_text``) writes the bytes the Python reference writes, for any
entries, and refuses entries out of order instead of guessing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from observai.metrics import rollup_pass, sketch_text


@pytest.fixture
def python_path() -> Iterator[None]:
    """sketch_text without its C module, as on a machine where it is not built."""
    built = sketch_text._c
    sketch_text._c = None
    try:
        yield
    finally:
        sketch_text._c = built


def _entries(rows: list[tuple[int, int, int, int]]) -> tuple[Any, Any, Any, Any]:
    ordered = sorted(rows)
    return (
        np.array([r[0] for r in ordered], dtype=np.int64), np.array([r[1] for r in ordered], dtype=np.int8),
        np.array([r[2] for r in ordered], dtype=np.int64), np.array([r[3] for r in ordered], dtype=np.int64),
    )  # fmt: skip


# Entries of up to 40 rows: each (row, store, idx) once, 'z' (store 3) at idx 0; indexes and counts to int64's ends.
_ENTRY_KEYS = st.tuples(st.integers(0, 40), st.integers(1, 3), st.integers(-(2**63), 2**63 - 1)).map(
    lambda k: (k[0], k[1], 0 if k[1] == 3 else k[2])
)
_ENTRIES = st.dictionaries(_ENTRY_KEYS, st.integers(-(2**63), 2**63 - 1), max_size=200).map(
    lambda d: _entries([(*k, n) for k, n in d.items()])
)


def test_the_c_module_is_built() -> None:
    # Given the package as make install leaves it / Then the fast path is the one the job takes
    assert sketch_text._c is not None


def test_sketch_json_encodes_each_rows_stores() -> None:
    # Given entries of three rows: both stores and zeros, zeros only, the negative store only
    entries = _entries([(0, 1, -3, 1), (0, 1, 7, 2), (0, 2, 2, 3), (0, 3, 0, 4), (2, 3, 0, 5), (5, 2, 1, 6),
                        (5, 2, 4, 7)])  # fmt: skip

    # When they are encoded, in Python and in C
    rows, texts = sketch_text.sketch_json(*entries)
    c_rows, blob, offsets = sketch_text.texts(*entries)

    # Then each row's text is Sketch's encoding, the same bytes both ways
    assert rows == [0, 2, 5] == c_rows.tolist()
    assert [json.loads(t) for t in texts] == [
        {"p": {"-3": 1, "7": 2}, "n": {"2": 3}, "z": 4},
        {"p": {}, "n": {}, "z": 5},
        {"p": {}, "n": {"1": 6, "4": 7}, "z": 0},
    ]
    assert blob == "".join(texts).encode() and offsets.tolist() == [0, *np.cumsum([len(t) for t in texts])]


@settings(max_examples=300, deadline=None)
@given(entries=_ENTRIES, first=st.integers(-(2**40), 2**40))
def test_given_any_entries_when_encoded_in_c_then_the_bytes_are_the_python_ones(entries: Any, first: int) -> None:
    # Given any sorted entries / When they are encoded by both paths
    rows, texts = sketch_text.sketch_json(*entries)
    c_rows, blob, offsets = sketch_text.texts(*entries)
    c_lines = sketch_text.lines(*entries, first)

    # Then the rows, the texts and the COPY lines are the same
    assert c_rows.tolist() == rows
    bounds = offsets.tolist()
    assert [blob[bounds[k] : bounds[k + 1]].decode() for k in range(len(rows))] == texts
    assert c_lines == "".join(f"{r + first}\t{t}\tf\n" for r, t in zip(rows, texts, strict=True)).encode()


@settings(max_examples=100, deadline=None)
@given(entries=_ENTRIES, data=st.data())
def test_given_any_texts_when_padded_in_c_then_the_column_is_the_python_one(entries: Any, data: Any) -> None:
    # Given the texts of any entries, some of them picked (repeats allowed), and a width that holds them all
    rows, blob, offsets = sketch_text.texts(*entries)
    picks = data.draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), max_size=30)) if len(rows) else []
    widest = max((int(offsets[k + 1] - offsets[k]) for k in picks), default=0)
    width = data.draw(st.integers(widest + 1, widest + 70))

    # When they are laid out in C and in Python
    c_column = sketch_text.padded(blob, offsets, picks, width, b"\x01")
    built = sketch_text._c
    sketch_text._c = None
    try:
        python_column = sketch_text.padded(blob, offsets, picks, width, b"\x01")
    finally:
        sketch_text._c = built

    # Then both are the version byte, the text and spaces, width bytes each
    assert c_column.dtype == np.dtype(f"S{width}") and c_column.tobytes() == python_column.tobytes()
    raw = c_column.tobytes()
    for j, k in enumerate(picks):
        value = raw[j * width : (j + 1) * width]
        assert value == (b"\x01" + blob[offsets[k] : offsets[k + 1]]).ljust(width, b" ")


@pytest.mark.parametrize(
    "rows",
    [
        [(0, 2, 1, 1), (0, 1, 5, 1)],  # the 'n' store before 'p'
        [(0, 1, 5, 1), (0, 1, 5, 2)],  # one index twice
        [(0, 1, 7, 1), (0, 1, 5, 1)],  # indexes descending
        [(0, 3, 0, 1), (0, 3, 0, 2)],  # two zero counts
        [(3, 1, 1, 1), (1, 1, 1, 1)],  # rows descending
        [(0, 4, 1, 1)],  # no such store
    ],
)
def test_given_entries_out_of_order_when_encoded_in_c_then_it_refuses(rows: list[tuple[int, ...]]) -> None:
    # Given entries in an order the encoding cannot take (built as given, not sorted)
    entries = tuple(np.array([r[i] for r in rows], dtype=np.int8 if i == 1 else np.int64) for i in range(4))

    # When they are encoded in C / Then ValueError, for the texts and the lines alike
    with pytest.raises(ValueError, match="order"):
        sketch_text.texts(*entries)
    with pytest.raises(ValueError, match="order"):
        sketch_text.lines(*entries, 1)


def test_given_texts_when_padded_narrower_than_a_text_then_both_paths_refuse(python_path: None) -> None:
    # Given a text of 20 bytes
    blob, offsets = b"x" * 20, np.array([0, 20], dtype=np.int64)

    # When it is padded to 20 (the prefix makes it 21) / Then ValueError
    with pytest.raises(ValueError):
        sketch_text.padded(blob, offsets, [0], 20, b"\x01")


def test_given_a_text_when_padded_narrower_in_c_then_it_refuses() -> None:
    blob, offsets = b"x" * 20, np.array([0, 20], dtype=np.int64)
    with pytest.raises(ValueError, match="wider"):
        sketch_text.padded(blob, offsets, [0], 20, b"\x01")
    with pytest.raises(ValueError, match="wider"):
        sketch_text.padded(blob, offsets, [1], 64, b"\x01")  # no text 1


def test_jsonb_sketches_give_every_row_its_encoding_padded_to_a_width_of_its_size() -> None:
    # Given rows of one entry counted once (positive, negative index, the negative store, zeros), one counted twice,
    # one of several entries, one of 300 entries, and rows with no entry
    wide = 300
    row = np.array([0, 1, 2, 3, 4, 6, 6, 6, 7, 9] + [10] * wide, dtype=np.int64)
    store = np.array([1, 1, 2, 3, 1, 1, 2, 3, 1, 1] + [1] * wide, dtype=np.int8)
    idx = np.array([138, -2000, 5, 0, 7, -3, 2, 0, 138, 2**31 - 1, *range(wide)], dtype=np.int64)
    n = np.array([1, 1, 1, 1, 2, 1, 3, 4, 1, 1] + [7] * wide, dtype=np.int64)
    size = 11
    level = rollup_pass.Level(
        resolution=60, sid=np.zeros(size, dtype=np.int64), bucket=np.zeros(size, dtype=np.int64),
        count=np.ones(size, dtype=np.int64), sum=np.zeros(size), min=np.zeros(size), max=np.zeros(size),
        last=np.zeros(size), last_time=np.zeros(size, dtype=np.int64), increase=np.zeros(size),
        nulls=np.zeros(size, dtype=np.int32), fresh=np.ones(size, dtype=np.bool_), e_row=row, e_store=store,
        e_idx=idx, e_n=n,
    )  # fmt: skip
    expected: dict[int, dict] = {}
    for r, st_, i, c in zip(row.tolist(), store.tolist(), idx.tolist(), n.tolist(), strict=True):
        sketch = expected.setdefault(r, {"p": {}, "n": {}, "z": 0})
        if st_ == 3:
            sketch["z"] = c
        else:
            sketch["p" if st_ == 1 else "n"][str(i)] = c

    # When they are laid out for the binary COPY
    blob, offsets, text_of, widths = rollup_pass._jsonb_sketches(level)

    # Then the rows with entries have one: the sketch's JSON
    assert [t >= 0 for t in text_of.tolist()] == [True, True, True, True, True, False, True, True, False, True, True]
    for i, sketch in expected.items():
        k = int(text_of[i])
        text = blob[offsets[k] : offsets[k + 1]]
        assert json.loads(text) == sketch, i
        # And jsonb's form (the version byte, then the JSON) is padded to a power of two from 32, at most twice
        # its size, with spaces
        size_i = len(text) + 1
        assert widths[i] >= max(32, size_i) and widths[i] & (widths[i] - 1) == 0, i
        assert widths[i] == 32 or widths[i] < 2 * size_i, i
        (padded,) = sketch_text.padded(blob, offsets, [k], int(widths[i]), b"\x01")
        assert padded == (b"\x01" + text).ljust(int(widths[i]), b" ").rstrip(b"\x00"), i
    assert widths[5] == widths[8] == 0 and widths[10] > 2048 > widths[0]
    # And the text form is the same JSON
    assert rollup_pass._sketch_texts(level) == {
        i: blob[offsets[int(text_of[i])] : offsets[int(text_of[i]) + 1]] for i in expected
    }
